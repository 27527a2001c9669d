"""The target-side deployment journal: a ``gardien`` schema in each target, written in the apply transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gardien.portable import Key, freeze

SCHEMA = "gardien"

# Kept in the target itself, so that re-apply detection and rollback depend on nothing but the target
# (the ledger may be unreachable); the schema is never part of the managed catalog.
_DDL = """
CREATE SCHEMA IF NOT EXISTS gardien;
CREATE TABLE IF NOT EXISTS gardien.deployment (
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    deployment_id       text PRIMARY KEY,
    changeset_id        text NOT NULL,
    catalog_fingerprint text NOT NULL,
    applied_at          timestamptz NOT NULL,
    release_id          text,
    release_label       text,
    before_images       jsonb NOT NULL,
    crosswalk           jsonb NOT NULL,
    fingerprint_before  jsonb NOT NULL,
    fingerprint_after   jsonb NOT NULL,
    drift               jsonb NOT NULL,
    counts              jsonb NOT NULL,
    rolled_back_at      timestamptz,
    rollback_proof      jsonb
);
"""
# Whole rows after the deployment (gardien.touched.Whole), aligned with before_images, each as the columns
# that differ from the row before (``_after_entry``): what a rollback compares the target with before
# restoring (NULL in journals written before the column existed). Added
# only when missing: ALTER TABLE would lock the journal against every reader until the apply commits.
_AFTER_IMAGES = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'gardien.deployment'::regclass
                   AND attname = 'after_images' AND NOT attisdropped) THEN
        ALTER TABLE gardien.deployment ADD COLUMN after_images jsonb;
    END IF;
END $$;
"""

_COLUMNS = (
    "seq, deployment_id, changeset_id, catalog_fingerprint, applied_at, release_id, release_label, before_images, "
    "crosswalk, fingerprint_before, fingerprint_after, drift, counts, rolled_back_at, rollback_proof, after_images"
)


@dataclass(frozen=True, slots=True)
class BeforeImage:
    """A touched row as it was just before the deployment.

    ``row`` is the whole row as stored (every column as text, gardien.touched.Whole; None: it did not exist)
    and ``after`` the whole row the deployment left (None: none). ``values`` are its managed values in
    portable form, read only from deployments journaled before whole rows were kept (``Deployment.whole``
    false: ``row`` and ``after`` are then None, and ``values`` None means the row did not exist). For a
    whole-row deployment ``values`` is None: the whole row is its before-image (journal ``FORMAT`` 3 no
    longer writes the portable values; format 2 wrote them too, and they are not read).
    """

    key: Key
    id: Any
    values: dict[str, Any] | None
    row: dict[str, str | None] | None = None
    after: dict[str, str | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": list(self.key), "id": self.id, "values": self.values}

    @property
    def existed(self) -> bool:
        """Whether the row existed before the deployment (whichever form the journal kept)."""
        return self.row is not None or self.values is not None


@dataclass(frozen=True, slots=True)
class Deployment:
    seq: int
    deployment_id: str
    changeset_id: str
    catalog_fingerprint: str
    applied_at: datetime
    release_id: str | None
    release_label: str | None
    before_images: dict[str, list[BeforeImage]]
    crosswalk: dict[str, list[tuple[Key, Any]]]
    fingerprint_before: dict[str, Any]
    fingerprint_after: dict[str, Any]
    drift: list[dict[str, Any]]
    counts: dict[str, Any]
    rolled_back_at: datetime | None
    rollback_proof: dict[str, Any] | None
    whole: bool = False  # whole before- and after-images journaled (else portable before-images only)

    @property
    def name(self) -> str:
        """How messages name this deployment: its id and, when known, its release."""
        release = self.release_label or self.release_id
        return f"{self.deployment_id}" + (f" (release {release})" if release else "")

    def touched(self) -> dict[str, set[Key]]:
        return {t: {img.key for img in imgs} for t, imgs in self.before_images.items()}


def ensure_schema(cur: Any) -> None:
    cur.execute(_DDL)
    cur.execute(_AFTER_IMAGES)


# What each before-image entry of a deployment row holds, by journal format (no column says it: the
# entries themselves do, and every format stays readable):
#   1. {key, id, values}                 portable before-images only (no after_images)
#   2. {key, id, values, row} + after    whole rows added (issue 13), portable values kept beside them
#   3. {key, id, row} + after            whole rows only: ``values`` held the same fields a second time
#                                        (foreign keys as natural keys instead of ids); nothing reads them
#                                        for a whole-row rollback, which restores and compares rows
# An entry of format 3 has no "values" member at all (format 1 and 2 always have one, null or not).
FORMAT = 3

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode  # built once


def record(
    cur: Any,
    *,
    deployment_id: str,
    changeset_id: str,
    catalog_fingerprint: str,
    applied_at: datetime,
    before_images: dict[str, list[BeforeImage]],
    crosswalk: dict[str, list[tuple[Key, Any]]],
    fingerprint_before: dict[str, Any],
    fingerprint_after: dict[str, Any],
    drift: list[dict[str, Any]],
    counts: dict[str, Any],
    release_id: str | None = None,
    release_label: str | None = None,
) -> None:
    """Insert one deployment row (the caller's transaction; the schema must exist)."""
    cur.execute(
        "INSERT INTO gardien.deployment (deployment_id, changeset_id, catalog_fingerprint, applied_at, release_id, "
        "release_label, before_images, after_images, crosswalk, fingerprint_before, fingerprint_after, drift, counts) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            deployment_id,
            changeset_id,
            catalog_fingerprint,
            applied_at,
            release_id,
            release_label,
            # BeforeImage.to_dict and [list(key), id], without copying the keys: the encoder renders a tuple
            # exactly as the list of its items.
            _dumps(
                {
                    t: [
                        {"key": i.key if type(i.key) is tuple else list(i.key), "id": i.id, "row": i.row}
                        for i in imgs
                    ]
                    for t, imgs in before_images.items()
                }
            ),
            _dumps({t: [_after_entry(i) for i in imgs] for t, imgs in before_images.items()}),
            _dumps(
                {
                    t: [[k if type(k) is tuple else list(k), v] for k, v in rows]
                    for t, rows in crosswalk.items()
                }
            ),
            _dumps(fingerprint_before),
            _dumps(fingerprint_after),
            _dumps(drift),
            _dumps(counts),
        ),
    )


def _after_entry(image: BeforeImage) -> dict[str, Any] | None:
    """How ``image.after`` is journaled: None (no row after), the whole row when there was none before,
    else only the columns whose text differs from the row before (what the deployment and its triggers
    changed): a few fields instead of a second copy of every row."""
    after, before = image.after, image.row
    if after is None or before is None:
        return after
    return {c: v for c, v in after.items() if before.get(c, _MISSING) != v}


_MISSING = object()


def _after_row(before: dict[str, Any] | None, entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The whole row after the deployment from its journal entry (see ``_after_entry``)."""
    if entry is None or before is None:
        return entry
    return {**before, **entry}


def _row(row: tuple[Any, ...]) -> Deployment:
    (
        seq,
        dep_id,
        cs_id,
        cat_fp,
        applied_at,
        rel_id,
        rel_label,
        images,
        crosswalk,
        fp_before,
        fp_after,
        drift,
        counts,
        rolled_back_at,
        proof,
        afters,
    ) = row
    return Deployment(
        seq=seq,
        deployment_id=dep_id,
        changeset_id=cs_id,
        catalog_fingerprint=cat_fp,
        applied_at=applied_at,
        release_id=rel_id,
        release_label=rel_label,
        before_images={
            t: [
                BeforeImage(
                    freeze(i["key"]),
                    i["id"],
                    None
                    if afters is not None or (values := i.get("values")) is None
                    else {c: freeze(v) if type(v) is list else v for c, v in values.items()},
                    i.get("row"),
                    _after_row(i.get("row"), after),
                )
                for i, after in zip(imgs, (afters or {}).get(t) or [None] * len(imgs), strict=True)
            ]
            for t, imgs in images.items()
        },
        crosswalk={t: [(freeze(k), v) for k, v in rows] for t, rows in crosswalk.items()},
        fingerprint_before=fp_before,
        fingerprint_after=fp_after,
        drift=drift,
        counts=counts,
        rolled_back_at=rolled_back_at,
        rollback_proof=proof,
        whole=afters is not None,
    )


def schema_exists(cur: Any) -> bool:
    cur.execute("SELECT to_regclass('gardien.deployment') IS NOT NULL")
    return bool(cur.fetchone()[0])


def _columns(cur: Any) -> str | None:
    """The select list of a deployment row, or None when there is no journal. A journal written before
    whole rows were kept has no after_images column (until the next apply adds it): read as NULL."""
    cur.execute(
        "SELECT to_regclass('gardien.deployment') IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute "
        "WHERE attrelid = to_regclass('gardien.deployment') AND attname = 'after_images' AND NOT attisdropped)"
    )
    exists, whole = cur.fetchone()
    if not exists:
        return None
    return _COLUMNS if whole else _COLUMNS.replace("after_images", "NULL::jsonb")


def find(cur: Any, deployment_id: str) -> Deployment | None:
    if (columns := _columns(cur)) is None:
        return None
    cur.execute(f"SELECT {columns} FROM gardien.deployment WHERE deployment_id = %s", (deployment_id,))  # noqa: S608
    row = cur.fetchone()
    return _row(row) if row else None


def active_for_changeset(cur: Any, changeset_id: str) -> Deployment | None:
    """The deployment of ``changeset_id`` that is still in effect (not rolled back), if any."""
    if (columns := _columns(cur)) is None:
        return None
    cur.execute(
        f"SELECT {columns} FROM gardien.deployment WHERE changeset_id = %s AND rolled_back_at IS NULL "  # noqa: S608
        "ORDER BY seq DESC LIMIT 1",
        (changeset_id,),
    )
    row = cur.fetchone()
    return _row(row) if row else None


def later_active(cur: Any, deployment: Deployment) -> list[Deployment]:
    """Deployments made after ``deployment`` and not rolled back, oldest first."""
    cur.execute(
        f"SELECT {_columns(cur)} FROM gardien.deployment WHERE seq > %s AND rolled_back_at IS NULL ORDER BY seq",  # noqa: S608
        (deployment.seq,),
    )
    return [_row(r) for r in cur.fetchall()]


def history(cur: Any) -> list[Deployment]:
    """Every deployment recorded in this target, oldest first."""
    if (columns := _columns(cur)) is None:
        return []
    cur.execute(f"SELECT {columns} FROM gardien.deployment ORDER BY seq")  # noqa: S608
    return [_row(r) for r in cur.fetchall()]


def mark_rolled_back(cur: Any, *, deployment_id: str, at: datetime, proof: dict[str, Any]) -> None:
    cur.execute(
        "UPDATE gardien.deployment SET rolled_back_at = %s, rollback_proof = %s WHERE deployment_id = %s",
        (at, _dumps(proof), deployment_id),
    )

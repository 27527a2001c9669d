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


# The forms of the before-images (and after-images) of a deployment row, by journal format. No column says
# which: the JSON itself does, and every format stays readable.
#   1. before_images {table: [{key, id, values}]}, no after_images: portable before-images only.
#   2. before_images {table: [{key, id, values, row}]}, after_images {table: [entry]} (issue 13): whole rows
#      added, the portable values kept beside them (the same fields a second time, foreign keys as natural
#      keys instead of ids; a whole-row rollback never reads them).
#   3. before_images {table: {"columns": [...], "images": [[key, id, row values in that column order] or
#      [key, null, null]]}}, after_images {table: [entry]}: whole rows only, each as a JSON array (the column
#      names once per table instead of once per row: half the text, and PostgreSQL parses arrays into jsonb
#      in a third of the time it takes for objects).
# An after_images entry (formats 2 and 3) is null (no row after), the whole row when there was none
# before (format 2: an object; format 3: an array in the before-images' column order), else the columns
# whose text differs from the row before (an object), see ``_after_entry``.
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
            # Keys are not copied: the encoder renders a tuple exactly as the list of its items.
            _dumps({t: _compact(imgs) for t, imgs in before_images.items()}),
            _dumps(
                {
                    t: [_after_entry(i, columns) for i in imgs]
                    for t, imgs in before_images.items()
                    for columns in (_columns_of(imgs),)
                }
            ),
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


def _columns_of(images: list[BeforeImage]) -> list[str]:
    """The columns of the whole rows of one table's images (every row of a table has the same ones: they
    are read by one gardien.touched.Whole each, under locks that keep the table's definition as it is)."""
    for image in images:
        for row in (image.row, image.after):
            if row is not None:
                return list(row)
    return []


def _compact(images: list[BeforeImage]) -> dict[str, Any]:
    """One table's before-images in journal format 3 (see ``FORMAT``)."""
    columns = _columns_of(images)
    out = []
    for i in images:
        row = i.row
        if row is not None and list(row) != columns:
            raise ValueError(f"before-image of {i.key!r} has columns {list(row)}, not {columns}")
        out.append(
            [
                i.key if type(i.key) is tuple else list(i.key),
                i.id,
                None if row is None else list(row.values()),
            ]
        )
    return {"columns": columns, "images": out}


def _after_entry(image: BeforeImage, columns: list[str]) -> dict[str, Any] | list[Any] | None:
    """How ``image.after`` is journaled: None (no row after), the whole row as an array in ``columns``'
    order when there was none before, else only the columns whose text differs from the row before (what
    the deployment and its triggers changed): a few fields instead of a second copy of every row."""
    after, before = image.after, image.row
    if after is None:
        return None
    if before is None:
        if list(after) != columns:
            raise ValueError(f"after-image of {image.key!r} has columns {list(after)}, not {columns}")
        return list(after.values())
    return {c: v for c, v in after.items() if before.get(c, _MISSING) != v}


_MISSING = object()


def _after_row(
    before: dict[str, Any] | None, entry: dict[str, Any] | list[Any] | None, columns: list[str] | None
) -> dict[str, Any] | None:
    """The whole row after the deployment from its journal entry (see ``_after_entry``)."""
    if entry is None:
        return None
    if type(entry) is list:
        return dict(zip(columns or (), entry, strict=True))
    if before is None:  # format 2: the whole row as an object
        return entry
    return {**before, **entry}


def _images(table: Any, afters: list[Any] | None) -> list[BeforeImage]:
    """One table's before-images (and after-images) as journaled, in any format (``FORMAT``)."""
    if type(table) is dict:  # format 3
        columns = table["columns"]
        return [
            BeforeImage(freeze(k), i, None, row, _after_row(row, after, columns))
            for (k, i, values), after in zip(
                table["images"], afters or [None] * len(table["images"]), strict=True
            )
            for row in (None if values is None else dict(zip(columns, values, strict=True)),)
        ]
    return [
        BeforeImage(
            freeze(i["key"]),
            i["id"],
            None
            if afters is not None or (values := i.get("values")) is None
            else {c: freeze(v) if type(v) is list else v for c, v in values.items()},
            i.get("row"),
            _after_row(i.get("row"), after, None),
        )
        for i, after in zip(table, afters or [None] * len(table), strict=True)
    ]


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
        before_images={t: _images(images[t], (afters or {}).get(t) if afters else None) for t in images},
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

"""Drift detection on a target: a row-hash baseline of the managed scope and what changed outside Gardien since.

Design: docs/adr/0005-drift-watch.md. The baseline's per-table fingerprints live in the ledger (event
``baseline.recorded``); its row hashes live in the target (``gardien.drift_baseline``) so the comparison runs
inside PostgreSQL, and the ledger's fingerprints prove those row hashes were not altered. Deployments and
rollbacks made by Gardien since the baseline are read from the target's journal and are not drift.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from gardien import journal
from gardien.catalog import Catalog
from gardien.errors import LedgerError
from gardien.fingerprint import ScopeFingerprint, TableFingerprint, scope_fingerprint
from gardien.portable import RowSql, key_text
from gardien.rowhash import SCHEME, RowHasher, id_sql, layout_sql, row_hash_hex

# Taken by every baseline write so two watchers never interleave their snapshot rows.
_BASELINE_LOCK_KEY = 7_364_211_905_412_337_001

_DDL = """
CREATE SCHEMA IF NOT EXISTS gardien;
CREATE TABLE IF NOT EXISTS gardien.drift_baseline (
    tbl text NOT NULL,
    k   text NOT NULL,
    h   text NOT NULL
);
CREATE INDEX IF NOT EXISTS drift_baseline_tbl_k ON gardien.drift_baseline (tbl, k);
"""

# The fingerprints' own row hashes (gardien.rowhash, computed on the client, as 32 hex digits), so sums
# over the stored hashes equal them. They are loaded by id into a temp table and joined to each row's
# portable key in SQL.
_HASHES_DDL = """
CREATE TEMP TABLE IF NOT EXISTS gardien_row_hashes (id bigint PRIMARY KEY, h text NOT NULL) ON COMMIT DROP
"""
_SNAPSHOT_SQL = """
INSERT INTO gardien.drift_baseline (tbl, k, h)
SELECT {name}, {key}::text, x.h FROM {src} JOIN pg_temp.gardien_row_hashes AS x ON x.id = {pk} WHERE {live}
"""

_STORED_FINGERPRINTS_SQL = """
SELECT tbl, count(*),
       coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text,
       coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text
FROM gardien.drift_baseline GROUP BY tbl
"""

# Rows whose hash differs from the baseline's, minus the keys Gardien itself changed since the baseline.
_ROWS_SQL = """
WITH now AS (
  SELECT {key}::text AS k, x.h AS h FROM {src} JOIN pg_temp.gardien_row_hashes AS x ON x.id = {pk} WHERE {live}
), base AS (
  SELECT k, h FROM gardien.drift_baseline WHERE tbl = {name}
), differing AS (
  SELECT coalesce(now.k, base.k) AS k,
         CASE WHEN base.k IS NULL THEN 'added' WHEN now.k IS NULL THEN 'removed' ELSE 'changed' END AS change
  FROM now FULL JOIN base ON base.k = now.k
  WHERE now.h IS DISTINCT FROM base.h
    AND NOT (coalesce(now.k, base.k)::jsonb = ANY({explained}::jsonb[]))
)
SELECT k, change, count(*) OVER () FROM differing ORDER BY k COLLATE "C" LIMIT {limit}
"""


@dataclass(frozen=True, slots=True)
class Baseline:
    """The last released state of one environment: its fingerprints and the journal head at that moment."""

    environment: str
    fingerprint: ScopeFingerprint
    catalog_fingerprint: str
    row_hash: str  # which row-hash SQL made the stored hashes (see hash_scheme)
    journal_seq: int  # highest journal seq at baseline time (0: no deployment yet)
    active: tuple[str, ...]  # journal deployment ids in effect at baseline time

    def to_payload(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "fingerprint": self.fingerprint.to_dict(),
            "catalog_fingerprint": self.catalog_fingerprint,
            "row_hash": self.row_hash,
            "journal_seq": self.journal_seq,
            "active": list(self.active),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Baseline:
        try:
            return cls(
                environment=str(payload["environment"]),
                fingerprint=ScopeFingerprint.from_dict(payload["fingerprint"]),
                catalog_fingerprint=str(payload["catalog_fingerprint"]),
                row_hash=str(payload["row_hash"]),
                journal_seq=int(payload["journal_seq"]),
                active=tuple(payload["active"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(
                f"a baseline.recorded event lacks or garbles {exc}; re-establish the baseline "
                "(trigger gardien_drift_watch with rebaseline=true and a reason)."
            ) from exc


@dataclass(frozen=True, slots=True)
class DriftedRow:
    """One row changed outside Gardien: its natural key (portable JSON) and added | removed | changed."""

    key: str
    change: str

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "change": self.change}


@dataclass(frozen=True, slots=True)
class TableDrift:
    """A table whose fingerprint differs from the expected one; ``rows`` lists at most the first N of ``total``."""

    table: str
    total: int
    rows: tuple[DriftedRow, ...]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "table": self.table,
            "total": self.total,
            "rows": [r.to_dict() for r in self.rows],
        }
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class DriftReport:
    """The comparison of one environment with its baseline plus Gardien's own changes since."""

    environment: str
    tables: tuple[TableDrift, ...]
    state_digest: str  # digest of the current scope fingerprint: equal reports describe the same state
    gardien_changes: tuple[str, ...]  # journal deployments deployed or rolled back since the baseline

    @property
    def drifted(self) -> bool:
        return bool(self.tables)

    def summary(self) -> str:
        if not self.tables:
            return f"{self.environment}: no drift"
        parts = []
        for t in self.tables:
            named = ", ".join(f"{r.change} {r.key}" for r in t.rows[:3])
            more = f" (+{t.total - 3} more)" if t.total > 3 else ""
            parts.append(f"{t.table}: {named or t.note or 'rows changed'}{more}")
        rows = sum(t.total for t in self.tables)
        return f"{self.environment}: DRIFT in {len(self.tables)} table(s), {rows} row(s) — " + "; ".join(
            parts
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "state_digest": self.state_digest,
            "tables": [t.to_dict() for t in self.tables],
            "gardien_changes": list(self.gardien_changes),
        }


def ensure_baseline_table(cur: Any) -> None:
    """Create the target-side baseline table (idempotent; the caller's transaction)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_BASELINE_LOCK_KEY,))
    cur.execute(_DDL)


def take_baseline(cur: Any, catalog: Catalog, *, environment: str) -> Baseline:
    """Replace the target's row-hash snapshot with the current managed scope and return the new baseline.

    The caller pinned the session settings (gardien.portable.set_session) and owns the transaction; run it
    in REPEATABLE READ so the journal head and the rows come from one snapshot.
    """
    ensure_baseline_table(cur)
    cur.execute("DELETE FROM gardien.drift_baseline")
    hasher = RowHasher(cur, catalog)
    for table in catalog.tables:
        rs = RowSql.build(catalog, table)
        _load_row_hashes(cur, hasher, table)
        cur.execute(
            sql.SQL(_SNAPSHOT_SQL).format(
                name=sql.Literal(table.name),
                key=rs.key,
                pk=id_sql(sql.SQL("t0.{}").format(sql.Identifier(table.pk)), table.pk_type),
                src=rs.from_clause(),
                live=rs.live_filter(),
            )
        )
    deployments = journal.history(cur)
    return Baseline(
        environment=environment,
        fingerprint=stored_fingerprint(cur, catalog),
        catalog_fingerprint=catalog.fingerprint,
        row_hash=hash_scheme(cur, catalog),
        journal_seq=max((d.seq for d in deployments), default=0),
        active=tuple(d.deployment_id for d in deployments if d.rolled_back_at is None),
    )


def _load_row_hashes(cur: Any, hasher: RowHasher, table: Any) -> None:
    """The live rows' hashes of ``table`` into pg_temp.gardien_row_hashes (id, 32 hex digits)."""
    cur.execute(_HASHES_DDL)
    cur.execute("TRUNCATE pg_temp.gardien_row_hashes")
    buf = io.StringIO()
    for batch in hasher.stream(cur.connection, table, pk=True):
        buf.writelines(f"{i}\t{h}\n" for i, h in zip(batch.pk.tolist(), row_hash_hex(batch.row), strict=True))
    buf.seek(0)
    cur.copy_expert("COPY pg_temp.gardien_row_hashes (id, h) FROM STDIN", buf)


def hash_scheme(cur: Any, catalog: Catalog) -> str:
    """Digest of how row hashes are made for this catalog: stored hashes compare only with hashes made the
    same way (a Gardien upgrade that changes the row hash must re-baseline, not report every row as drifted)."""
    rendered = "\n".join([SCHEME, *(layout_sql(catalog, t).as_string(cur) for t in catalog.tables)])
    return hashlib.sha256(rendered.encode()).hexdigest()


def stored_fingerprint(cur: Any, catalog: Catalog) -> ScopeFingerprint:
    """The scope fingerprint recomputed from the stored row hashes (empty tables count as zero)."""
    cur.execute("SELECT to_regclass('gardien.drift_baseline') IS NOT NULL")
    sums: dict[str, TableFingerprint] = {}
    if cur.fetchone()[0]:
        cur.execute(_STORED_FINGERPRINTS_SQL)
        for name, rows, low, high in cur.fetchall():
            sums[name] = TableFingerprint(table=name, rows=int(rows), low=int(low), high=int(high))
    return ScopeFingerprint(
        tables=tuple(sums.get(t.name, TableFingerprint(t.name, 0, 0, 0)) for t in catalog.tables)
    )


@dataclass(frozen=True, slots=True)
class GardienChanges:
    """What Gardien itself did to the target since a baseline, read from the target's journal."""

    names: tuple[str, ...]
    expected: ScopeFingerprint  # the baseline shifted by those deployments and rollbacks
    explained: dict[str, tuple[str, ...]]  # table → key texts those deployments touched


def gardien_changes(deployments: Iterable[journal.Deployment], baseline: Baseline) -> GardienChanges:
    """Deployments applied after the baseline and rollbacks of deployments in effect at baseline time.

    Fingerprints are sums (gardien.fingerprint), so each deployment still in effect adds its recorded
    ``after - before`` and each rollback of a baseline deployment subtracts it; a deployment both applied and
    rolled back since the baseline nets to zero. Pure: no database access.
    """
    expected = baseline.fingerprint
    names: list[str] = []
    explained: dict[str, set[str]] = {}
    active_at_baseline = set(baseline.active)
    for dep in deployments:
        after = ScopeFingerprint.from_dict(dep.fingerprint_after)
        before = ScopeFingerprint.from_dict(dep.fingerprint_before)
        if dep.seq > baseline.journal_seq:
            if dep.rolled_back_at is None:
                expected = expected.shifted(after, before)
                names.append(dep.name)
            else:
                names.append(f"{dep.name}, rolled back")
        elif dep.deployment_id in active_at_baseline and dep.rolled_back_at is not None:
            expected = expected.shifted(before, after)
            names.append(f"rollback of {dep.name}")
        else:
            continue
        for table, keys in dep.touched().items():
            explained.setdefault(table, set()).update(key_text(k) for k in keys)
    return GardienChanges(
        names=tuple(names),
        expected=expected,
        explained={t: tuple(sorted(k)) for t, k in explained.items()},
    )


def check_drift(cur: Any, catalog: Catalog, *, baseline: Baseline, max_rows: int = 20) -> DriftReport:
    """Compare the target with ``baseline`` plus Gardien's journaled changes since; name drifted rows.

    The caller pinned the session settings and owns the (REPEATABLE READ) transaction. Raises LedgerError
    when the stored row hashes no longer add up to the ledger's baseline fingerprints (altered or lost).
    """
    stored = stored_fingerprint(cur, catalog)
    if stored.restricted(catalog.names) != baseline.fingerprint.restricted(catalog.names):
        tables = ", ".join(stored.differing(baseline.fingerprint.restricted(catalog.names)))
        raise LedgerError(
            f"{baseline.environment}: the drift baseline stored in the target (gardien.drift_baseline) no longer "
            f"matches the ledger's baseline fingerprints (table(s) {tables}): it was altered or lost. Check who "
            "wrote to the gardien schema, then re-establish it: trigger gardien_drift_watch with rebaseline=true "
            "and a reason."
        )
    changes = gardien_changes(journal.history(cur), baseline)
    current = scope_fingerprint(cur, catalog)
    drifted: list[TableDrift] = []
    for name in current.differing(changes.expected.restricted(catalog.names)):
        table = catalog.table(name)
        explained = changes.explained.get(name, ())
        rows, total = _drifted_rows(cur, catalog, table=table, explained=explained, limit=max_rows)
        note = None
        if total == 0:
            # Only rows Gardien deployed since the baseline differ, and not as the journal recorded them.
            note = (
                "rows deployed by Gardien since the baseline were changed afterwards "
                f"(among {len(explained)} row(s) of: {', '.join(changes.names)})"
            )
        drifted.append(TableDrift(table=name, total=total, rows=rows, note=note))
    return DriftReport(
        environment=baseline.environment,
        tables=tuple(drifted),
        state_digest=current.digest,
        gardien_changes=changes.names,
    )


def _drifted_rows(
    cur: Any, catalog: Catalog, *, table: Any, explained: tuple[str, ...], limit: int
) -> tuple[tuple[DriftedRow, ...], int]:
    rs = RowSql.build(catalog, table)
    _load_row_hashes(cur, RowHasher(cur, catalog), table)
    query = sql.SQL(_ROWS_SQL).format(
        name=sql.Literal(table.name),
        key=rs.key,
        pk=id_sql(sql.SQL("t0.{}").format(sql.Identifier(table.pk)), table.pk_type),
        src=rs.from_clause(),
        live=rs.live_filter(),
        # Literals, not parameters: scope filters may render a '%' (LIKE patterns) into the query text.
        explained=sql.Literal(list(explained)),
        limit=sql.Literal(max(limit, 1)),
    )
    cur.execute(query)
    fetched = cur.fetchall()
    total = int(fetched[0][2]) if fetched else 0
    # Keys re-rendered compactly, as gardien.portable.key_text writes them in every other message.
    rows = tuple(DriftedRow(key=key_text(json.loads(k)), change=c) for k, c, _ in fetched[:limit])
    return rows, total

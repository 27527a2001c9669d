"""Order-independent fingerprints of a managed scope in portable form, computed inside PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog
from gardien.portable import RowSql, row_halves

# Each row's portable form is hashed (two seeded 64-bit halves, gardien.portable.row_halves) and the
# halves are summed over the table: an additive multiset hash, independent of row order and physical
# layout, that needs no sort and no memory in Python. Surrogate ids never enter it, so two environments
# with the same configuration and different ids have the same fingerprint. Soft-deleted rows are outside
# the scope (RowSql.live_filter): a row retired by the soft-delete flag means "absent", and one side may
# have retired a row the other never had, so including them would make equal configurations differ.
_TABLE_SQL = """
SELECT count(*), coalesce(sum({h1}), 0)::text, coalesce(sum({h2}), 0)::text FROM ({hashed}) AS s
"""


@dataclass(frozen=True, slots=True)
class TableFingerprint:
    """Row count and the two sums of one table; being sums, fingerprints can be added and subtracted."""

    table: str
    rows: int
    low: int
    high: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.table}:{self.rows}:{self.low}:{self.high}".encode()).hexdigest()

    def shifted(self, after: TableFingerprint, before: TableFingerprint) -> TableFingerprint:
        """This fingerprint plus the effect of a change that took ``before`` to ``after``."""
        return TableFingerprint(
            self.table,
            self.rows + after.rows - before.rows,
            self.low + after.low - before.low,
            self.high + after.high - before.high,
        )

    def to_dict(self) -> dict[str, Any]:
        # Sums as text: they exceed 64 bits on large tables and must survive any JSON reader.
        return {
            "table": self.table,
            "rows": self.rows,
            "low": str(self.low),
            "high": str(self.high),
            "digest": self.digest,
        }


@dataclass(frozen=True, slots=True)
class ScopeFingerprint:
    """Fingerprints of some managed tables and one digest over them."""

    tables: tuple[TableFingerprint, ...]

    @property
    def digest(self) -> str:
        lines = sorted(f"{t.table}:{t.digest}" for t in self.tables)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def table(self, name: str) -> TableFingerprint | None:
        return next((t for t in self.tables if t.table == name), None)

    def restricted(self, names: Iterable[str]) -> ScopeFingerprint:
        wanted = set(names)
        return ScopeFingerprint(tables=tuple(t for t in self.tables if t.table in wanted))

    def shifted(self, after: ScopeFingerprint, before: ScopeFingerprint) -> ScopeFingerprint:
        """Add the effect (``after`` - ``before``) of another change on the tables both cover."""
        out = []
        for t in self.tables:
            a, b = after.table(t.table), before.table(t.table)
            out.append(t.shifted(a, b) if a is not None and b is not None else t)
        return ScopeFingerprint(tables=tuple(out))

    def differing(self, other: ScopeFingerprint) -> list[str]:
        """Names of the tables whose fingerprints differ (or exist on one side only)."""
        names = {t.table for t in self.tables} | {t.table for t in other.tables}
        return sorted(n for n in names if self.table(n) != other.table(n))

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "tables": [t.to_dict() for t in self.tables]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScopeFingerprint:
        return cls(
            tables=tuple(
                TableFingerprint(t["table"], int(t["rows"]), int(t["low"]), int(t["high"]))
                for t in data["tables"]
            )
        )


def table_fingerprint(cur: Any, *, catalog: Catalog, table: BoundTable) -> TableFingerprint:
    """Fingerprint of the live, in-scope rows of one table, in portable form."""
    rs = RowSql.build(catalog, table)
    h1, h2 = row_halves()
    cur.execute(sql.SQL(_TABLE_SQL).format(h1=h1, h2=h2, hashed=rs.hashed()))
    rows, low, high = cur.fetchone()
    return TableFingerprint(table=table.name, rows=int(rows), low=int(low), high=int(high))


def rows_fingerprint(cur: Any, *, catalog: Catalog, ids: dict[str, list[Any]]) -> ScopeFingerprint:
    """Fingerprint of the live, in-scope rows of each table whose primary key is in ``ids[table]``.

    Apply adds the difference of this over the touched rows (after minus before its writes) to the full
    fingerprint taken before: one full scan instead of two. Rows outside the touched set cannot change
    portable form meanwhile (natural keys never change in place), and post-deploy verification recomputes
    the full fingerprint, so a wrong sum would not go unnoticed.
    """
    h1, h2 = row_halves()
    out = []
    for name, table_ids in ids.items():
        table = catalog.table(name)
        rs = RowSql.build(catalog, table)
        # The ids as a literal, not a parameter: a LIKE scope filter's "%" must not read as a placeholder.
        where = sql.SQL("t0.{} = ANY({})").format(sql.Identifier(table.pk), sql.Literal(list(table_ids)))
        cur.execute(sql.SQL(_TABLE_SQL).format(h1=h1, h2=h2, hashed=rs.hashed(where=where)))
        rows, low, high = cur.fetchone()
        out.append(TableFingerprint(table=name, rows=int(rows), low=int(low), high=int(high)))
    return ScopeFingerprint(tables=tuple(out))


def scope_fingerprint(cur: Any, catalog: Catalog, tables: Iterable[str] | None = None) -> ScopeFingerprint:
    """Fingerprint of the managed scope (or of the named tables only), in catalog order.

    The caller must have pinned the session output settings (gardien.portable.set_session).
    """
    wanted = set(catalog.names if tables is None else tables)
    return ScopeFingerprint(
        tables=tuple(
            table_fingerprint(cur, catalog=catalog, table=t) for t in catalog.tables if t.name in wanted
        )
    )

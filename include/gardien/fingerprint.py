"""Order-independent fingerprints of a managed scope in portable form, computed inside PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog
from gardien.portable import RowSql

# Each row's portable text is hashed (md5) and the two 64-bit halves are summed over the table: an
# additive multiset hash, independent of row order and physical layout, that needs no sort and no
# memory in Python. Surrogate ids never enter it, so two environments with the same configuration and
# different ids have the same fingerprint. Soft-deleted rows are outside the scope (RowSql.live_filter):
# a row retired by the soft-delete flag means "absent", and one side may have retired a row the other
# never had, so including them would make equal configurations differ.
_TABLE_SQL = """
SELECT count(*),
       coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text,
       coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text
FROM (SELECT md5(json_build_array({key}, {values})::text) AS h FROM {src} WHERE {live}) AS s
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
    cur.execute(
        sql.SQL(_TABLE_SQL).format(key=rs.key, values=rs.values, src=rs.from_clause(), live=rs.live_filter())
    )
    rows, low, high = cur.fetchone()
    return TableFingerprint(table=table.name, rows=int(rows), low=int(low), high=int(high))


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

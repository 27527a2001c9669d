"""What validation needs to know about a live database: managed tables' columns and foreign keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gardien.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class DbForeignKey:
    """A database foreign key between two tables of the validated schema (composite keys allowed)."""

    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SchemaFacts:
    """Columns of every managed table (in attribute order) and the foreign keys among them."""

    schema: str
    columns: dict[str, tuple[str, ...]]
    foreign_keys: tuple[DbForeignKey, ...]

    def has_table(self, table: str) -> bool:
        return table in self.columns

    def fks_from(self, table: str) -> tuple[DbForeignKey, ...]:
        return tuple(fk for fk in self.foreign_keys if fk.table == table)

    def fks_to(self, table: str) -> tuple[DbForeignKey, ...]:
        return tuple(fk for fk in self.foreign_keys if fk.ref_table == table)

    def single_fk(self, table: str, column: str) -> DbForeignKey | None:
        """The single-column foreign key on ``table.column``, if there is one."""
        for fk in self.fks_from(table):
            if fk.columns == (column,):
                return fk
        return None


_COLUMNS_SQL = """
SELECT c.relname, a.attname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)
ORDER BY c.relname, a.attnum
"""

_FKS_SQL = """
SELECT k.conname, c.relname,
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
       rc.relname,
       ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class rc ON rc.oid = k.confrelid
JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE k.contype = 'f' AND n.nspname = %s AND rn.nspname = %s
  AND c.relname = ANY(%s) AND rc.relname = ANY(%s)
ORDER BY c.relname, k.conname
"""


def read_schema_facts(conn: Any, *, schema: str, tables: list[str] | tuple[str, ...]) -> SchemaFacts:
    """Read columns and foreign keys of ``tables`` in ``schema``.

    Raises ConfigurationError naming every managed table the database lacks. Foreign keys towards
    tables outside the managed list are not returned: the managed scope is what validation sees.
    """
    names = list(tables)
    with conn.cursor() as cur:
        cur.execute(_COLUMNS_SQL, (schema, names))
        columns: dict[str, list[str]] = {}
        for table, column in cur.fetchall():
            columns.setdefault(table, []).append(column)
        cur.execute(_FKS_SQL, (schema, schema, names, names))
        fks = tuple(
            DbForeignKey(
                name=name, table=table, columns=tuple(cols), ref_table=ref, ref_columns=tuple(ref_cols)
            )
            for name, table, cols, ref, ref_cols in cur.fetchall()
        )
    missing = [n for n in names if n not in columns]
    if missing:
        raise ConfigurationError(
            f"schema {schema!r} has no table {', '.join(map(repr, missing))}. "
            "Create it there or remove it from catalog.tables."
        )
    return SchemaFacts(schema=schema, columns={t: tuple(c) for t, c in columns.items()}, foreign_keys=fks)

"""What validation needs to know about a live database: managed tables' columns and foreign keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

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
    # catalog name -> (schema, name in the database), for tables not at ``schema`` under their catalog name
    places: dict[str, tuple[str, str]] | None = None

    def ident(self, table: str) -> sql.Identifier:
        """The table's qualified, quoted name in SQL."""
        return sql.Identifier(*(self.places or {}).get(table, (self.schema, table)))

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
SELECT n.nspname, c.relname, a.attname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS m(nsp, rel) ON m.nsp = n.nspname AND m.rel = c.relname
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
ORDER BY n.nspname, c.relname, a.attnum
"""

_FKS_SQL = """
SELECT k.conname, n.nspname, c.relname,
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
       rn.nspname, rc.relname,
       ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS m(nsp, rel) ON m.nsp = n.nspname AND m.rel = c.relname
JOIN pg_class rc ON rc.oid = k.confrelid
JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE k.contype = 'f'
ORDER BY n.nspname, c.relname, k.conname
"""


def read_schema_facts(conn: Any, *, schema: str, places: dict[str, tuple[str, str]]) -> SchemaFacts:
    """Read columns and foreign keys of the managed tables, ``places``: catalog name -> (schema, table).

    Raises ConfigurationError naming every managed table the database lacks. Foreign keys towards
    tables outside the managed list are not returned: the managed scope is what validation sees.
    """
    named = {place: name for name, place in places.items()}
    pairs = ([s for s, _ in named], [r for _, r in named])
    with conn.cursor() as cur:
        cur.execute(_COLUMNS_SQL, pairs)
        columns: dict[str, list[str]] = {}
        for nsp, rel, column in cur.fetchall():
            columns.setdefault(named[(nsp, rel)], []).append(column)
        cur.execute(_FKS_SQL, pairs)
        fks = tuple(
            DbForeignKey(
                name=name,
                table=named[(nsp, rel)],
                columns=tuple(cols),
                ref_table=named[(ref_nsp, ref)],
                ref_columns=tuple(ref_cols),
            )
            for name, nsp, rel, cols, ref_nsp, ref, ref_cols in cur.fetchall()
            if (ref_nsp, ref) in named
        )
    missing = [f"{s}.{r}" for (s, r), n in named.items() if n not in columns]
    if missing:
        raise ConfigurationError(
            f"the database has no table {', '.join(map(repr, missing))} (schema.table). "
            "Create it there or remove it from catalog.tables."
        )
    return SchemaFacts(
        schema=schema,
        columns={t: tuple(c) for t, c in columns.items()},
        foreign_keys=fks,
        places=dict(places),
    )

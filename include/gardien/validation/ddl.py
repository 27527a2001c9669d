"""Managed tables' DDL read from pg_catalog (no pg_dump): columns, identity, defaults, constraints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from gardien.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class ColumnDef:
    name: str
    type: str
    not_null: bool
    default: str | None
    identity: str  # 'a' (ALWAYS), 'd' (BY DEFAULT) or ''
    generated: str | None  # expression of a STORED generated column
    serial: bool  # default is nextval(...): recreated as an identity in the scratch


@dataclass(frozen=True, slots=True)
class ConstraintDef:
    name: str
    kind: str  # p, u, x, c, f
    definition: str
    ref_table: str | None


@dataclass(frozen=True, slots=True)
class TableDef:
    name: str  # the catalog's name
    columns: tuple[ColumnDef, ...]
    constraints: tuple[ConstraintDef, ...]
    schema: str = "public"
    relname: str = ""  # the name in the database (the catalog's name by default)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.relname or self.name)

    @property
    def copied_columns(self) -> tuple[str, ...]:
        """Columns COPY carries (stored generated columns are recomputed by the scratch)."""
        return tuple(c.name for c in self.columns if c.generated is None)


_COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
       tn.nspname IN ('pg_catalog', 'information_schema')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS m(nsp, rel) ON m.nsp = n.nspname AND m.rel = c.relname
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p')
ORDER BY n.nspname, c.relname, a.attnum
"""

_CONSTRAINTS_SQL = """
SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), rc.relname, rn.nspname
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS m(nsp, rel) ON m.nsp = n.nspname AND m.rel = c.relname
LEFT JOIN pg_class rc ON rc.oid = k.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE k.contype IN ('p', 'u', 'x', 'c', 'f')
ORDER BY n.nspname, c.relname, k.contype, k.conname
"""


def read_table_defs(conn: Any, *, places: dict[str, tuple[str, str]]) -> tuple[list[TableDef], list[str]]:
    """Definitions of the managed tables and notes on what the scratch copy leaves out (FKs to unmanaged
    tables). ``places``: catalog name -> (schema, name in the database).

    Raises ConfigurationError for a missing table or a column of a type the scratch cannot recreate.
    """
    named = {place: name for name, place in places.items()}
    pairs = ([s for s, _ in named], [r for _, r in named])
    tables = list(places)
    with conn.cursor() as cur:
        # With only pg_catalog on the search path the server qualifies every name it renders
        # (REFERENCES public.x, public.seq), so the definitions replay in the scratch database unchanged.
        cur.execute("SET LOCAL search_path = pg_catalog")
        cur.execute(_COLUMNS_SQL, pairs)
        columns: dict[str, list[ColumnDef]] = {}
        problems = []
        for nsp, rel, name, typ, not_null, default, identity, generated, builtin in cur.fetchall():
            table = named[(nsp, rel)]
            if not builtin:
                problems.append(f"{table}.{name} has type {typ}")
            is_generated = generated == "s"
            columns.setdefault(table, []).append(
                ColumnDef(
                    name=name,
                    type=typ,
                    not_null=not_null,
                    default=None if is_generated else default,
                    identity=identity,
                    generated=default if is_generated else None,
                    serial=bool(default and not is_generated and default.startswith("nextval(")),
                )
            )
        cur.execute(_CONSTRAINTS_SQL, pairs)
        constraints: dict[str, list[ConstraintDef]] = {}
        notes = []
        for nsp, rel, name, kind, definition, ref_table, ref_schema in cur.fetchall():
            table = named[(nsp, rel)]
            if kind == "f" and (ref_schema, ref_table) not in named:
                notes.append(
                    f"rehearsal: foreign key {table}.{name} points outside the managed tables; not recreated"
                )
                continue
            constraints.setdefault(table, []).append(ConstraintDef(name, kind, definition, ref_table))
    missing = [f"{s}.{r}" for (s, r), t in named.items() if t not in columns]
    if missing:
        raise ConfigurationError(
            f"the target has no table {', '.join(map(repr, missing))} (schema.table). "
            "Create it there or remove it from catalog.tables."
        )
    if problems:
        raise ConfigurationError(
            "rehearsal recreates built-in column types only: "
            + "; ".join(problems)
            + ". Validate this target without --changeset, or ask for the type to be supported."
        )
    defs = [
        TableDef(
            t, tuple(columns[t]), tuple(constraints.get(t, ())), schema=places[t][0], relname=places[t][1]
        )
        for t in tables
    ]
    return defs, notes


def create_table_sql(table: TableDef) -> sql.Composed:
    """CREATE TABLE with columns, types, NOT NULL, defaults and generated columns; constraints come later."""
    parts = []
    for column in table.columns:
        # The default and generation expressions come from the server's own catalog, not from input text.
        piece = sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(column.type))
        if column.generated is not None:
            piece = sql.SQL("{} GENERATED ALWAYS AS ({}) STORED").format(piece, sql.SQL(column.generated))
        elif column.default is not None and not column.serial:
            piece = sql.SQL("{} DEFAULT {}").format(piece, sql.SQL(column.default))
        if column.not_null or column.identity or column.serial:
            piece = sql.SQL("{} NOT NULL").format(piece)
        parts.append(piece)
    return sql.SQL("CREATE TABLE {} ({})").format(table.ident, sql.SQL(", ").join(parts))


def after_copy_sql(tables: list[TableDef]) -> list[sql.Composed]:
    """Statements run once rows are in: keys, then CHECKs and FKs as NOT VALID, then identities.

    CHECK and FOREIGN KEY are added NOT VALID: rows the target already holds are reported by the suites
    (real data can be dirty, e.g. a disabled trigger), while rows the changeset writes are enforced as they
    would be in the target. It also spares a validation scan per constraint.
    """
    keys, checks, identities = [], [], []
    for table in tables:
        ident = table.ident
        for con in table.constraints:
            definition = con.definition
            if con.kind in {"c", "f"} and not definition.endswith("NOT VALID"):
                definition += " NOT VALID"
            stmt = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                ident, sql.Identifier(con.name), sql.SQL(definition)
            )
            (checks if con.kind in {"c", "f"} else keys).append(stmt)
        for column in table.columns:
            if column.identity or column.serial:
                how = "ALWAYS" if column.identity == "a" else "BY DEFAULT"
                identities.append(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} ADD GENERATED " + how + " AS IDENTITY").format(
                        ident, sql.Identifier(column.name)
                    )
                )
    return keys + checks + identities


def identity_columns(table: TableDef) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if c.identity or c.serial)

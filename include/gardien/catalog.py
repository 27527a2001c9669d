"""The catalog bound to a live database: columns, types, primary and foreign keys read from pg_catalog."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from gardien.coltypes import describe, read_column_types
from gardien.config import CatalogConfig, LogicalReference, SoftDelete, TableConfig
from gardien.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """A single-column database foreign key from a managed column to another managed table's primary key."""

    column: str
    table: str


@dataclass(frozen=True, slots=True)
class BoundTable:
    """One managed table as it really exists: what is compared, how rows are identified and referenced."""

    name: str  # the catalog's name (changesets, journal, suites); SQL uses schema and relname
    schema: str
    pk: str
    pk_identity: bool
    natural_key: tuple[str, ...]
    columns: tuple[str, ...]  # managed columns, compared and carried (natural key included, pk excluded)
    types: dict[str, str]
    fks: dict[str, ForeignKey]
    config: TableConfig
    # format_type of the primary key (read by the local fingerprint; not in the catalog digest)
    pk_type: str = ""
    # columns declared NOT NULL (read by gardien.rowhash; not in the catalog digest)
    not_null: frozenset[str] = frozenset()
    # the table's name in the database (``config.table``; the catalog name by default)
    relname: str = ""
    # every unique column set (primary key, unique constraints and indexes), in index column order
    unique_sets: frozenset[tuple[str, ...]] = frozenset()
    # managed tables this one references by value through a database foreign key to a unique column set
    # other than their primary key (e.g. a name): carried verbatim, ordered like a foreign key
    value_refs: tuple[str, ...] = ()
    # every column's write type: what a value's text is cast to (gardien.coltypes; not in the digest)
    write_types: dict[str, str] = field(default_factory=dict)

    @property
    def soft_delete(self) -> SoftDelete | None:
        return self.config.soft_delete

    @property
    def logical_references(self) -> list[LogicalReference]:
        return self.config.logical_references

    @property
    def self_fks(self) -> tuple[str, ...]:
        return tuple(c for c, fk in self.fks.items() if fk.table == self.name)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Managed columns outside the natural key (what an update may change)."""
        return tuple(c for c in self.columns if c not in self.natural_key)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every managed table of one database, in configuration order, with a fingerprint of the definition."""

    schema: str
    tables: tuple[BoundTable, ...]
    fingerprint: str

    def table(self, name: str) -> BoundTable:
        for table in self.tables:
            if table.name == name:
                return table
        raise ConfigurationError(f"table {name!r} is not in the catalog; add it under catalog.tables.")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)


# Managed tables are looked up by (schema, name) pairs: each table may live in its own schema.
_COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attidentity <> '',
       a.attnotnull
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS m(nsp, rel) ON m.nsp = n.nspname AND m.rel = c.relname
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
ORDER BY n.nspname, c.relname, a.attnum
"""

_CONSTRAINTS_SQL = """
SELECT n.nspname, c.relname, k.contype,
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
       rn.nspname, rc.relname,
       ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS m(nsp, rel) ON m.nsp = n.nspname AND m.rel = c.relname
LEFT JOIN pg_class rc ON rc.oid = k.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE k.contype IN ('p', 'f')
ORDER BY n.nspname, c.relname, k.conname
"""


_UNIQUE_SQL = """
SELECT n.nspname, c.relname,
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY u(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.n ORDER BY u.o)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS m(nsp, rel) ON m.nsp = n.nspname AND m.rel = c.relname
WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
"""


def bind_catalog(conn: Any, config: CatalogConfig, *, label: str = "database") -> Catalog:
    """Read the live schema through ``conn`` and bind the catalog to it.

    Raises ConfigurationError naming every table or column the database lacks, unsupported keys, and
    foreign keys from managed columns to unmanaged tables (see docs/configuration.md).
    """
    if not config.tables:
        raise ConfigurationError("the catalog is empty; list at least one table under catalog.tables.")
    # catalog name of each managed (schema, table) of the database
    managed_at = {(config.schema_of(t), t.relname): t.name for t in config.tables}
    pairs = ([s for s, _ in managed_at], [r for _, r in managed_at])
    with conn.cursor() as cur:
        cur.execute(_COLUMNS_SQL, pairs)
        columns: dict[str, dict[str, tuple[str, bool]]] = {}
        not_null: dict[str, set[str]] = {}
        for nsp, rel, column, typ, identity, required in cur.fetchall():
            table = managed_at[(nsp, rel)]
            columns.setdefault(table, {})[column] = (typ, identity)
            if required:
                not_null.setdefault(table, set()).add(column)
        cur.execute(_CONSTRAINTS_SQL, pairs)
        constraints = cur.fetchall()
        cur.execute(_UNIQUE_SQL, pairs)
        uniques: dict[str, set[tuple[str, ...]]] = {}
        for nsp, rel, cols in cur.fetchall():
            uniques.setdefault(managed_at[(nsp, rel)], set()).add(tuple(cols))
        type_facts = read_column_types(cur, managed_at=managed_at)
    missing = [t for t in config.tables if t.name not in columns]
    if missing:
        where = "; ".join(f"schema {config.schema_of(t)!r} has no table {t.relname!r}" for t in missing)
        raise ConfigurationError(
            f"{label}: {where}. "
            "Create it there (same schema in every environment) or remove it from catalog.tables."
        )
    problems: list[str] = []
    pks: dict[str, list[str]] = {}
    fks: dict[str, list[tuple[list[str], str, str, list[str]]]] = {}
    for nsp, rel, contype, cols, ref_schema, ref_table, ref_cols in constraints:
        table = managed_at[(nsp, rel)]
        if contype == "p":
            pks[table] = list(cols)
        else:
            fks.setdefault(table, []).append((list(cols), ref_schema, ref_table, list(ref_cols)))
    # columns holding surrogate ids of other rows (a foreign key to a primary key, or to an unmanaged table)
    id_cols = {
        table: {
            c
            for cols, nsp, rel, ref_cols in table_fks
            if (nsp, rel) not in managed_at or set(ref_cols) & set(pks.get(managed_at[(nsp, rel)], []))
            for c in cols
        }
        for table, table_fks in fks.items()
    }
    bound = []
    for tc in config.tables:
        table_cols = columns[tc.name]
        _check_columns(
            tc, table_cols, problems, label=label, catalog=config, uniques=uniques, id_cols=id_cols
        )
        pk = pks.get(tc.name, [])
        if len(pk) != 1:
            problems.append(
                f"{label}: table {tc.name!r} needs a single-column primary key (it has {pk or 'none'}); "
                "add a surrogate id column as primary key."
            )
            continue
        pk_col = pk[0]
        ignored = set(tc.ignore)
        managed = tuple(c for c in table_cols if c not in ignored and (c != pk_col or c in tc.natural_key))
        for refusal in type_facts.refused(tc.name, managed):
            problems.append(describe(refusal, label=label, column_type=table_cols[refusal.column][0]))
        for column in managed:
            if (tc.name, column) in type_facts.generated:
                problems.append(
                    f"{label}: {tc.name}.{column} is a generated column: the database computes it from the "
                    f"others, it cannot be written. List {column} under ignore in catalog table {tc.name}."
                )
        table_fks: dict[str, ForeignKey] = {}
        value_refs: list[str] = []
        for cols, ref_schema, ref_table, ref_cols in fks.get(tc.name, []):
            carried = [c for c in cols if c in managed]
            if not carried:
                continue  # every column of this key is ignored: not carried, not checked
            where = f"{label}: {tc.name}.{','.join(cols)} references {ref_schema}.{ref_table}"
            referenced = managed_at.get((ref_schema, ref_table))
            if referenced is not None and _natural_values(referenced, ref_cols, pks=pks, id_cols=id_cols):
                # A unique set of plain columns (a name, a code): the value means the same row in every
                # environment, so it is carried as is; only the order of writes depends on it.
                value_refs.append(referenced)
            elif len(cols) != 1:
                problems.append(f"{where} through a composite foreign key; list these columns under ignore.")
            elif (ref_schema, ref_table) not in managed_at:
                problems.append(
                    f"{where}, which is not managed: its ids differ between environments. "
                    f"Add {ref_table} to catalog.tables, or list {cols[0]} under ignore."
                )
            elif ref_cols != [pks.get(managed_at[(ref_schema, ref_table)], [None])[0]]:
                problems.append(f"{where}({ref_cols[0]}), not its primary key; list {cols[0]} under ignore.")
            else:
                table_fks[cols[0]] = ForeignKey(column=cols[0], table=managed_at[(ref_schema, ref_table)])
        bound.append(
            BoundTable(
                name=tc.name,
                schema=config.schema_of(tc),
                relname=tc.relname,
                pk=pk_col,
                pk_identity=table_cols[pk_col][1],
                natural_key=tuple(tc.natural_key),
                columns=managed,
                # managed columns, then on_insert ones (typed casts on insert; not in the digest's columns)
                types={c: table_cols[c][0] for c in (*managed, *tc.on_insert) if c in table_cols},
                fks=table_fks,
                config=tc,
                pk_type=table_cols[pk_col][0],
                not_null=frozenset(not_null.get(tc.name, ())),
                unique_sets=frozenset(uniques.get(tc.name, ())),
                value_refs=tuple(dict.fromkeys(r for r in value_refs if r != tc.name)),
                write_types=type_facts.write_types.get(tc.name, {}),
            )
        )
    if problems:
        raise ConfigurationError("\n".join(problems))
    _check_key_cycles(bound)
    return Catalog(
        schema=config.schema_, tables=tuple(bound), fingerprint=_fingerprint(config.schema_, bound)
    )


def _natural_values(
    table: str, columns: list[str], *, pks: dict[str, list[str]], id_cols: dict[str, set[str]]
) -> bool:
    """Whether ``columns`` of managed ``table`` hold natural values (no surrogate id, no foreign key)."""
    if set(pks.get(table, [])) & set(columns):
        return False  # through the primary key: the foreign-key path (ids translated by natural key)
    return not id_cols.get(table, set()) & set(columns)


def _check_columns(
    tc: TableConfig,
    table_cols: dict[str, tuple[str, bool]],
    problems: list[str],
    *,
    label: str,
    catalog: CatalogConfig,
    uniques: dict[str, set[tuple[str, ...]]],
    id_cols: dict[str, set[str]],
) -> None:
    named = [("natural_key", c) for c in tc.natural_key] + [("ignore", c) for c in tc.ignore]
    named += [("scope", c) for c in tc.scope or {}]
    named += [("logical_references", r.column) for r in tc.logical_references]
    if tc.soft_delete:
        named.append(("delete.soft.column", tc.soft_delete.column))
    named += [("on_insert", c) for c in tc.on_insert]
    if tc.retire:
        named += [("delete.retire.column", tc.retire.column)]
        named += [("delete.retire.reason", tc.retire.reason)] if tc.retire.reason else []
    for where, column in named:
        if column not in table_cols:
            problems.append(
                f"{label}: catalog table {tc.name}: {where} names column {column!r}, which {tc.name} does not "
                f"have (columns: {', '.join(table_cols)}). Fix the name or add the column."
            )
    table_names = {t.name for t in catalog.tables}
    for ref in tc.logical_references:
        if ref.target_table not in table_names:
            problems.append(
                f"{label}: catalog table {tc.name}: logical reference {ref.column} -> {ref.references}: "
                f"{ref.target_table} is not a managed table. Add it to catalog.tables."
            )
        elif not _unique_target(catalog.table(ref.target_table), ref.target_columns, uniques, id_cols):
            problems.append(
                f"{label}: catalog table {tc.name}: logical reference {ref.column} -> {ref.label}: "
                f"must reference the natural key of {ref.target_table} or another of its unique column sets "
                "(a unique constraint or index) made of plain columns."
            )


def _unique_target(
    target: TableConfig,
    columns: tuple[str, ...],
    uniques: dict[str, set[tuple[str, ...]]],
    id_cols: dict[str, set[str]],
) -> bool:
    if by_natural_key(target, columns):
        return True
    wanted = set(columns)
    plain = not wanted & id_cols.get(target.name, set())
    return plain and any(set(u) == wanted for u in uniques.get(target.name, ()))


def by_natural_key(target: TableConfig | BoundTable, columns: tuple[str, ...]) -> bool:
    """Whether a reference to ``columns`` is by ``target``'s one-column natural key (resolved through the
    keymap); any other unique set is resolved by value."""
    return len(columns) == 1 and list(columns) == list(target.natural_key)


def _check_key_cycles(tables: list[BoundTable]) -> None:
    by_name = {t.name: t for t in tables}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise ConfigurationError(
                f"natural keys reference each other in a cycle ({cycle}); a natural key must bottom out in "
                "plain columns. Pick a natural key without that foreign key."
            )
        table = by_name[name]
        for column in table.natural_key:
            if column in table.fks:
                visit(table.fks[column].table, (*path, name))

    for table in tables:
        visit(table.name, ())


def _definition(table: BoundTable) -> dict[str, Any]:
    cfg = table.config.model_dump(mode="json", by_alias=True, exclude={"frozen"})
    for optional in ("schema", "table", "on_insert"):  # absent: digests of catalogs written before them
        if not cfg.get(optional):
            cfg.pop(optional, None)
    for ref in cfg.get("logical_references", []):
        for optional in ("join", "external"):
            if ref.get(optional) is None:
                ref.pop(optional, None)
    return {
        "table": table.name,
        "pk": table.pk,
        "columns": [[c, table.types[c]] for c in table.columns],
        "fks": {c: fk.table for c, fk in sorted(table.fks.items())},
        "config": cfg,
    }


def _fingerprint(schema: str, tables: list[BoundTable]) -> str:
    body = {"schema": schema, "tables": [_definition(t) for t in tables]}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def assert_compatible(source: Catalog, target: Catalog, *, source_label: str, target_label: str) -> None:
    """Refuse two bindings of the same catalog whose schemas differ (types, columns, keys), naming each."""
    problems: list[str] = []
    for s in source.tables:
        t = target.table(s.name)
        for column in s.columns:
            if column not in t.types:
                problems.append(f"{s.name}.{column}: in {source_label} but missing from {target_label}")
            elif s.types[column] != t.types[column]:
                problems.append(
                    f"{s.name}.{column}: type {s.types[column]} in {source_label}, "
                    f"{t.types[column]} in {target_label}"
                )
        for column in t.columns:
            if column not in s.types:
                problems.append(f"{s.name}.{column}: in {target_label} but missing from {source_label}")
        if s.fks != t.fks:
            problems.append(f"{s.name}: foreign keys differ between {source_label} and {target_label}")
    if problems:
        raise ConfigurationError(
            "the schemas of the environments differ on managed tables:\n  "
            + "\n  ".join(problems)
            + "\nMigrate the schemas to the same version before carrying configuration."
        )

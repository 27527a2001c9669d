"""Set-based writes of portable rows: COPY into a temp table, then joined INSERT / UPDATE / DELETE."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from gardien.audit import on_insert_values
from gardien.catalog import BoundTable, Catalog
from gardien.keys import KeyMap, KeyTexts, copy_field, copy_json
from gardien.plan import leaf_tables, table_order
from gardien.portable import Key, canonical_text, qualified, values_text

_instances = itertools.count(1)
_STRING = json.encoder.encode_basestring  # as gardien.portable renders strings (ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class TableWrites:
    """Rows to write to one table. An insert whose key exists physically (soft-deleted) becomes an update.

    ``restore_ids`` gives inserted rows their former id (rollback re-creates deleted rows as they were);
    ``hard`` deletes physically even where the catalog declares a soft delete (rows a deployment created).
    """

    table: str
    inserts: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)
    updates: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)
    deletes: list[Key] = field(default_factory=list)
    restore_ids: dict[Key, Any] = field(default_factory=dict)
    hard: bool = False

    def keys(self) -> list[Key]:
        return [k for k, _ in self.inserts] + [k for k, _ in self.updates] + list(self.deletes)

    def references(self, table: BoundTable) -> dict[str, set[Key]]:
        """Parent keys named by foreign-key values being written, by parent table."""
        out: dict[str, set[Key]] = {}
        for _, values in (*self.inserts, *self.updates):
            for column, fk in table.fks.items():
                if values.get(column) is not None:
                    out.setdefault(fk.table, set()).add(values[column])
        return out


def execute(cur: Any, *, catalog: Catalog, writes: dict[str, TableWrites], keymap: KeyMap) -> None:
    """Write ``writes`` through ``cur``: deletes from tables nothing references first, then inserts and
    updates parents first, then the other deletes children first.

    The caller has checked references (gardien.references) and owns the transaction. Target ids are
    allocated by the target (identity/sequence), except for ``restore_ids``.
    """
    order = table_order(catalog)
    for name, tw in writes.items():
        table = catalog.table(name)
        keymap.add(table, tw.keys())
        for parent, keys in tw.references(table).items():
            keymap.add(catalog.table(parent), keys)
    keymap.resolve()
    gc = sql.Identifier(f"_gc{next(_instances)}")
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (tbl text, op text, key text, vals jsonb, refs jsonb) ON COMMIT DROP"
        ).format(gc)
    )
    lines: list[str] = []
    for name, tw in writes.items():
        table = catalog.table(name)
        existing = keymap.ids(table)
        row = _rows(lines, table, keymap.texts)
        for key, values in tw.inserts:
            full = {**dict(zip(table.natural_key, key, strict=True)), **values}
            op = "U" if key in existing else ("R" if key in tw.restore_ids else "I")
            if op == "R":
                full[table.pk] = canonical_text(tw.restore_ids[key])
            row(op, key, full)
        for key, values in tw.updates:
            row("U", key, values)
        for key in tw.deletes:
            row("D", key, {})
    buf = io.StringIO("".join(lines))
    cur.copy_expert(sql.SQL("COPY {} FROM STDIN").format(gc).as_string(cur), buf)
    # Deletes from tables no managed table references go first: nothing waits for those rows, and a row
    # that still names a parent by value (role_privilege.role → role.role) must be gone before that parent's
    # value is updated; a deleted row's unique values are free again for the inserts and updates below.
    unreferenced = leaf_tables(catalog)
    leaves = [
        name for name in reversed(order) if name in writes and writes[name].deletes and name in unreferenced
    ]
    for name in leaves:
        _delete(cur, catalog.table(name), gc, keymap, hard=writes[name].hard)
    for name in order:
        if name in writes:
            _insert_and_update(cur, catalog.table(name), gc, keymap, catalog)
    for name in reversed(order):
        if name in writes and writes[name].deletes and name not in leaves:
            _delete(cur, catalog.table(name), gc, keymap, hard=writes[name].hard)


def _rows(lines: list[str], table: BoundTable, texts: KeyTexts) -> Callable[[str, Key, dict[str, Any]], None]:
    """A writer of one COPY line per row of ``table`` into ``lines``: tbl, op, key, vals, refs.

    ``vals`` and ``refs`` are the JSON objects gardien.portable.values_text renders, rendered here
    directly when the values are text or NULL (as they are in changesets and before-images); referenced
    keys as their canonical text, what the key map's ``nk`` column holds.
    """
    fks = table.fks
    prefix = copy_field(table.name) + "\t"
    text = texts.text
    names: dict[str, str] = {}  # column → its JSON string and the colon

    def row(op: str, key: Key, values: dict[str, Any]) -> None:
        plain: list[str] | None = []
        refs = []
        for c, v in values.items():
            name = names.get(c)
            if name is None:
                name = names[c] = _STRING(c) + ":"
            if c in fks:
                refs.append(name + ("null" if v is None else _STRING(text(v))))
            elif type(v) is str:
                plain.append(name + _STRING(v))
            elif v is None:
                plain.append(name + "null")
            else:
                plain = None
                break
        if plain is None:  # a value neither text nor NULL: values_text renders it
            vals = values_text({c: v for c, v in values.items() if c not in fks})
            refs_text = values_text(
                {c: None if v is None else text(v) for c, v in values.items() if c in fks}
            )
        else:
            vals = "{" + ",".join(plain) + "}"
            refs_text = "{" + ",".join(refs) + "}"
        # JSON text: only a backslash needs escaping for COPY.
        lines.append(f"{prefix}{op}\t{copy_json(text(key))}\t{copy_json(vals)}\t{copy_json(refs_text)}\n")

    return row


def _value(table: BoundTable, column: str) -> sql.Composable:
    """The value of ``column`` from the portable text in ``c.vals`` (NULL when absent or null).

    The text is cast to the column's write type (gardien.coltypes: under the domains, without typmod),
    so every type goes through its own input function — json keeps its exact text, jsonb is parsed (not
    stored as a JSON string holding the text, as jsonb_populate_record would). The assignment to the
    column then applies the typmod and the domains' constraints like any INSERT: an over-long varchar is
    refused, not truncated. The type name is format_type's, quoted by PostgreSQL, never input text.
    """
    return sql.SQL("(c.vals->>{})::{}").format(
        sql.Literal(column), sql.SQL(table.write_types.get(column) or table.types[column])
    )


def _ref_value(catalog: Catalog, table: BoundTable, column: str, keymap: KeyMap) -> sql.Composable:
    parent = keymap.temp(catalog.table(table.fks[column].table))
    return sql.SQL("(SELECT p.id FROM {} AS p WHERE p.nk = c.refs->>{})").format(parent, sql.Literal(column))


def _insert_and_update(
    cur: Any, table: BoundTable, gc: sql.Identifier, keymap: KeyMap, catalog: Catalog
) -> None:
    tname = sql.Literal(table.name)
    gk = keymap.temp(table)
    self_fks = table.self_fks
    for op in ("I", "R"):
        cols = [c for c in table.columns if c not in self_fks]
        if op == "R" and table.pk not in cols:
            cols.append(table.pk)
        exprs = [_ref_value(catalog, table, c, keymap) if c in table.fks else _value(table, c) for c in cols]
        if op == "I":  # audit columns filled on insert (gardien.audit); a restored row keeps its own
            extra = on_insert_values(table)
            cols += list(extra)
            exprs += list(extra.values())
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} ({cols}) {override} SELECT {exprs} FROM {gc} AS c "
                "WHERE c.tbl = {tn} AND c.op = {op}"
            ).format(
                t=qualified(table),
                cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
                override=sql.SQL("OVERRIDING SYSTEM VALUE" if op == "R" and table.pk_identity else ""),
                exprs=sql.SQL(", ").join(exprs),
                gc=gc,
                tn=tname,
                op=sql.Literal(op),
            )
        )
    keymap.invalidate()
    keymap.resolve([table.name])
    joined = sql.SQL(
        "FROM {gc} AS c JOIN {gk} AS g ON g.nk = c.key "
        "WHERE t.{pk} = g.id AND c.tbl = {tn} AND c.op IN ({ops})"
    )
    sets = []
    for c in table.value_columns:
        value = _ref_value(catalog, table, c, keymap) if c in table.fks else _value(table, c)
        field_name = sql.Literal(c)
        has = sql.SQL("c.refs ? {}" if c in table.fks else "c.vals ? {}").format(field_name)
        sets.append(
            sql.SQL("{c} = CASE WHEN {has} THEN {v} ELSE t.{c} END").format(
                c=sql.Identifier(c), has=has, v=value
            )
        )
    if sets:
        cur.execute(
            sql.SQL("UPDATE {t} AS t SET {sets} ").format(t=qualified(table), sets=sql.SQL(", ").join(sets))
            + joined.format(gc=gc, gk=gk, pk=sql.Identifier(table.pk), tn=tname, ops=sql.SQL("'U'"))
        )
    if self_fks:
        # Rows inserted above had their self-reference left NULL: their parents may be in the same batch.
        sets = [
            sql.SQL("{} = {}").format(sql.Identifier(c), _ref_value(catalog, table, c, keymap))
            for c in self_fks
        ]
        cur.execute(
            sql.SQL("UPDATE {t} AS t SET {sets} ").format(t=qualified(table), sets=sql.SQL(", ").join(sets))
            + joined.format(gc=gc, gk=gk, pk=sql.Identifier(table.pk), tn=tname, ops=sql.SQL("'I', 'R'"))
        )


def _delete(cur: Any, table: BoundTable, gc: sql.Identifier, keymap: KeyMap, *, hard: bool) -> None:
    gk = keymap.temp(table)
    where = sql.SQL(
        "FROM {gc} AS c JOIN {gk} AS g ON g.nk = c.key WHERE t.{pk} = g.id AND c.tbl = {tn} AND c.op = 'D'"
    ).format(gc=gc, gk=gk, pk=sql.Identifier(table.pk), tn=sql.Literal(table.name))
    soft = table.soft_delete
    if soft is not None and not hard:
        retired = sql.SQL("{}::{}").format(
            sql.Literal(canonical_text(soft.value)),
            sql.SQL(table.write_types.get(soft.column) or table.types[soft.column]),
        )
        cur.execute(
            sql.SQL("UPDATE {t} AS t SET {c} = {retired} ").format(
                t=qualified(table), c=sql.Identifier(soft.column), retired=retired
            )
            + where
        )
        return
    if table.self_fks:
        # Children and parents deleted together: unhook them first so no statement sees a dangling parent.
        sets = sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in table.self_fks)
        cur.execute(sql.SQL("UPDATE {t} AS t SET {sets} ").format(t=qualified(table), sets=sets) + where)
    using = sql.SQL(
        "USING {gc} AS c JOIN {gk} AS g ON g.nk = c.key WHERE t.{pk} = g.id AND c.tbl = {tn} AND c.op = 'D'"
    ).format(gc=gc, gk=gk, pk=sql.Identifier(table.pk), tn=sql.Literal(table.name))
    cur.execute(sql.SQL("DELETE FROM {t} AS t ").format(t=qualified(table)) + using)

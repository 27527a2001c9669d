"""Logical references resolved by value: to a unique column set other than the one-column natural key, and
to values defined outside the managed scope (an allow-list, a pattern, an unmanaged table of the target)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog, by_natural_key
from gardien.changeset import Changeset, TableChanges
from gardien.config import ExternalValues, LogicalReference
from gardien.errors import ConfigurationError, SourceDataError
from gardien.portable import Key, RowSql, freeze, key_text


def external_allowed(cur: Any, external: ExternalValues | None, values: Iterable[str]) -> dict[str, str]:
    """Which of ``values`` the reference's ``external`` rule allows, and by what (allow-list, pattern, or
    the unmanaged table, read on the target through ``cur``).

    Raises ConfigurationError when the unmanaged table or its column does not exist on the target.
    """
    if external is None:
        return {}
    allowed = {v: how for v in values if (how := external.allows(v))}
    rest = sorted(set(values) - set(allowed))
    if rest and external.table is not None:
        ext = external.table
        ident = sql.Identifier(ext.schema_, ext.name)
        cur.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped",
            (ident.as_string(cur), ext.column),
        )
        if cur.fetchone() is None:
            raise ConfigurationError(
                f"external table {ext.schema_}.{ext.name}.{ext.column} (named by a logical reference) does not "
                "exist in the target. Fix logical_references[].external.table or create it there."
            )
        cur.execute(
            sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE {c}::text = ANY(%s)").format(
                c=sql.Identifier(ext.column), t=ident
            ),
            (rest,),
        )
        allowed.update({row[0]: f"table {ext.schema_}.{ext.name}" for row in cur.fetchall()})
    return allowed


def joined_sql(columns: list[sql.Composable], join: str | None) -> sql.Composable:
    """The text of several columns joined by ``join`` (NULL when one is NULL), or one column's text."""
    parts: list[sql.Composable] = []
    for i, column in enumerate(columns):
        if i:
            parts.append(sql.Literal(join or ""))
        parts.append(column)
    return sql.SQL("({})").format(sql.SQL(" || ").join(parts))


def _row_values(table: BoundTable, key: Key, values: dict[str, Any]) -> dict[str, Any]:
    return {**dict(zip(table.natural_key, key, strict=False)), **values}


def _joined(ref: LogicalReference, row: dict[str, Any]) -> str | None:
    parts = [row.get(c) for c in ref.target_columns]
    if any(p is None or not isinstance(p, str) for p in parts):
        return None
    return (ref.join or "").join(parts)


def _written(table: BoundTable, tc: TableChanges, column: str) -> Iterable[tuple[Key, Any]]:
    for ins in tc.inserts:
        row = _row_values(table, ins.key, ins.values)
        if column in row:
            yield ins.key, row[column]
    for upd in tc.updates:
        if column in upd.changes:
            yield upd.key, upd.changes[column].after


def check_value_references(cur: Any, *, catalog: Catalog, changeset: Changeset) -> None:
    """Raise SourceDataError naming each row whose by-value logical reference will resolve nowhere: not in
    the target after the changeset, not allowed by the reference's ``external`` rule."""
    by_table = {tc.table: tc for tc in changeset.tables}
    problems: list[str] = []
    for tc in changeset.tables:
        table = catalog.table(tc.table)
        for ref in table.logical_references:
            target = catalog.table(ref.target_table)
            if by_natural_key(target, ref.target_columns):
                continue  # checked through the keymap (gardien.references)
            wanted: dict[str, list[Key]] = {}
            for key, value in _written(table, tc, ref.column):
                if not isinstance(value, str):
                    continue
                for part in value.split(ref.separator) if ref.separator else [value]:
                    if part != "":
                        wanted.setdefault(part, []).append(key)
            if not wanted:
                continue
            missing = set(wanted) - _present_after(
                cur, catalog, target, ref, by_table.get(target.name), wanted
            )
            missing -= set(external_allowed(cur, ref.external, missing))
            for value in sorted(missing):
                for key in wanted[value][:3]:
                    problems.append(
                        f"{table.name} {key_text(key)}: {ref.column} refers to {ref.label} {value!r}, which will "
                        "not exist in the target"
                        + (" nor is allowed by its external rule" if ref.external else "")
                    )
    if problems:
        raise dangling(
            "values",
            problems,
            total=len(problems),
            also=", or declare where else the value lives (logical_references[].external)",
        )


def dangling(what: str, lines: list[str], *, total: int, also: str = "") -> SourceDataError:
    """The refusal naming (up to 50 of) ``total`` references to ``what`` that will not exist in the target."""
    more = f"\n  ... and {total - 50} more" if total > 50 else ""
    return SourceDataError(
        f"{total} reference(s) to {what} that will not exist in the target:\n  "
        + "\n  ".join(lines[:50])
        + more
        + f"\nFix the referring rows (or add the referenced rows) in the source and capture again{also}."
    )


def _present_after(
    cur: Any,
    catalog: Catalog,
    target: BoundTable,
    ref: LogicalReference,
    changes: TableChanges | None,
    wanted: dict[str, list[Key]],
) -> set[str]:
    """The wanted values the target will hold once ``changes`` (its table's part of the changeset) apply."""
    provided: set[str] = set()
    gone: set[Key] = set()
    if changes is not None:
        for ins in changes.inserts:
            value = _joined(ref, _row_values(target, ins.key, ins.values))
            if value is not None:
                provided.add(value)
        for upd in changes.updates:
            if any(c in upd.changes for c in ref.target_columns):
                gone.add(upd.key)
                after = {**upd.baseline, **{c: ch.after for c, ch in upd.changes.items()}}
                value = _joined(ref, _row_values(target, upd.key, after))
                if value is not None:
                    provided.add(value)
        if target.soft_delete is None:  # a soft-deleted row stays, and stays referable
            gone.update(d.key for d in changes.deletes)
    rs = RowSql.build(catalog, target)
    cols = [sql.SQL("t0.{}::text").format(sql.Identifier(c)) for c in ref.target_columns]
    value_sql = joined_sql(cols, ref.join)
    cur.execute(
        sql.SQL("SELECT {key}::text, {value} FROM {src} WHERE {value} = ANY(%s)").format(
            key=rs.key, value=value_sql, src=rs.from_clause()
        ),
        (sorted(wanted),),
    )
    present = {value for key, value in cur.fetchall() if freeze(json.loads(key)) not in gone}
    return (present | provided) & set(wanted)

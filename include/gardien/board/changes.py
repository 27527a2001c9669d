"""Field-level changes for people: list fields as set differences, retired rows named as such (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gardien.report.diffs import key_label
from gardien.report.hints import set_difference
from gardien.report.model import TableDiff


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One changed field: ``added``/``removed`` for a list field, else ``before``/``after`` as text."""

    column: str
    before: str
    after: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    is_set: bool = False


@dataclass(frozen=True, slots=True)
class RowChange:
    kind: str  # "added" | "changed" | "retired" | "deleted"
    label: str
    fields: tuple[FieldChange, ...]
    note: str = ""


@dataclass(frozen=True, slots=True)
class TableChanges:
    table: str
    counts: Mapping[str, int]
    rows: tuple[RowChange, ...]
    omitted: int
    routed_to: tuple[str, ...] = ()


def text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list | tuple):  # a foreign key, named by the referenced row's natural key
        return key_label(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_change(
    table: str, column: str, before: Any, after: Any, lists: Mapping[tuple[str, str], str]
) -> FieldChange:
    separator = lists.get((table, column))
    diff = set_difference(before, after, separator) if separator else None
    if diff is not None:
        return FieldChange(column, text(before), text(after), diff[0], diff[1], is_set=True)
    return FieldChange(column, text(before), text(after))


def table_changes(
    diff: TableDiff,
    *,
    soft_deletes: Mapping[str, str],
    lists: Mapping[tuple[str, str], str],
    routed_to: Sequence[str] = (),
) -> TableChanges:
    """The table's rows as people read them: added (values), changed (field by field), retired or deleted."""
    rows: list[RowChange] = []
    for ins in diff.inserts:
        rows.append(
            RowChange(
                "added",
                ins.label,
                tuple(FieldChange(c, "", text(v)) for c, v in sorted(ins.values.items())),
            )
        )
    for upd in diff.updates:
        rows.append(
            RowChange(
                "changed",
                upd.label,
                tuple(field_change(diff.table, c, d.before, d.after, lists) for c, d in upd.changes.items()),
            )
        )
    retired = soft_deletes.get(diff.table)
    for dele in diff.deletes:
        if retired:
            note = f"retired: {retired} in the source (soft delete, the row is kept and no longer offered)"
            rows.append(RowChange("retired", dele.label, (), note))
        else:
            rows.append(RowChange("deleted", dele.label, (), "deleted: the row is removed from the target"))
    return TableChanges(
        table=diff.table,
        counts=dict(diff.counts),
        rows=tuple(rows),
        omitted=sum(diff.omitted.values()),
        routed_to=tuple(routed_to),
    )

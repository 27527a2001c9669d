"""A changeset's shape checked against the catalog bound on the target, before anything is written.

A changeset's id proves its content was not altered since it was hashed, not that ``gardien diff`` made
it: a forged one can be hashed again. Its catalog fingerprint may then match while a row names a column
the table does not have (a write would drop it silently; the three-way check would call it a conflict),
a key has the wrong width, or a value has the wrong form (text where a reference is expected, a list where
text is). Each is refused here, named.
"""

from __future__ import annotations

from typing import Any

from gardien.catalog import BoundTable, Catalog
from gardien.changeset import Changeset
from gardien.errors import ChangesetError
from gardien.portable import key_text

_SHOWN = 20  # problems listed in the message


def check_shape(changeset: Changeset, catalog: Catalog, *, target: str) -> None:
    """Raise ChangesetError listing every row of ``changeset`` that does not fit ``catalog``.

    Checked: tables, key widths and every column named (inserts give every managed column, updates and
    deletes only managed ones, updates never a natural-key column); and the form of what is written (keys,
    inserted values, values set by updates): text or null, a referenced key (a list) or null for a
    foreign key. Baselines and "before" values are only compared, never written: their columns are checked,
    not their forms. Plain loops, no call per value: this runs on every apply (16k changes: a few ms).
    """
    problems: list[str] = []
    managed = {t.name: t for t in catalog.tables}
    for tc in changeset.tables:
        table = managed.get(tc.table)
        if table is None:
            problems.append(
                f"names table {tc.table!r}, which the catalog does not manage (managed: {', '.join(managed)})"
            )
            continue
        check = _Table(table, problems)
        columns, width, fks = check.columns, check.width, check.fks
        for op, rows in (("insert", tc.inserts), ("update", tc.updates), ("delete", tc.deletes)):
            for row in rows:
                key = row.key
                if len(key) != width:
                    check.width_problem(op, key)
                    continue
                for column, value in zip(table.natural_key, key, strict=True):
                    if value is not None and (type(value) is str) == (column in fks):
                        check.form_problem(op, key, column, value)
                if op == "insert":
                    values = row.values
                    if values.keys() != columns:
                        check.columns_problem(op, key, values, complete=True)
                    for column, value in values.items():
                        if value is not None and (type(value) is str) == (column in fks):
                            check.form_problem(op, key, column, value)
                else:
                    if not row.baseline.keys() <= columns:
                        check.columns_problem(op, key, row.baseline, complete=False)
                    if op == "update":
                        if not row.changes.keys() <= columns:
                            check.changes_problem(key, row.changes)
                        for column, change in row.changes.items():
                            value = change.after
                            if value is not None and (type(value) is str) == (column in fks):
                                check.form_problem(op, key, column, value)
        if len(problems) > _SHOWN:
            break
    if problems:
        shown = "\n  ".join(problems[:_SHOWN])
        more = "\n  ... and more" if len(problems) > _SHOWN else ""
        raise ChangesetError(
            f"changeset {changeset.id[:12]} does not fit the catalog of {target}; nothing was applied:\n  "
            f"{shown}{more}\n`gardien diff` never writes this: the file was edited (and hashed again) or made "
            "by other means. Capture a new changeset with `gardien diff`."
        )


class _Table:
    """One table's column sets, and the wording of each problem found in its rows."""

    def __init__(self, table: BoundTable, problems: list[str]) -> None:
        self.table = table
        self.problems = problems
        self.columns = frozenset(table.value_columns)
        self.width = len(table.natural_key)
        self.fks = frozenset(table.fks)

    def width_problem(self, op: str, key: Any) -> None:
        table = self.table
        self.problems.append(
            f"{table.name}: {op} key {key_text(key)} has {len(key)} component(s); the natural key "
            f"({', '.join(table.natural_key)}) has {self.width}"
        )

    def columns_problem(self, op: str, key: Any, values: dict[str, Any], *, complete: bool) -> None:
        for column in sorted(values.keys() - self.columns):
            self.unknown(op, key, column)
        for column in sorted(self.columns - values.keys()) if complete else ():
            self.problems.append(
                f"{self.table.name} {key_text(key)}: {op} lacks column {column!r}; an insert gives every "
                "managed column"
            )

    def changes_problem(self, key: Any, changes: dict[str, Any]) -> None:
        for column in sorted(changes.keys() - self.columns):
            if column in self.table.natural_key:
                self.problems.append(
                    f"{self.table.name} {key_text(key)}: update changes column {column!r}, part of the natural "
                    "key (a changed key is a delete and an insert)"
                )
            else:
                self.unknown("update", key, column)

    def unknown(self, op: str, key: Any, column: str) -> None:
        table = self.table
        if column in table.config.ignore:
            why = "which is not managed (listed under ignore)"
        elif column == table.pk:
            why = "the primary key (ids are never carried)"
        elif column in table.natural_key:
            why = "part of the natural key, given by the key"
        else:
            why = f"which {table.name} does not have (managed columns: {', '.join(table.value_columns)})"
        self.problems.append(f"{table.name} {key_text(key)}: {op} names column {column!r}, {why}")

    def form_problem(self, op: str, key: Any, column: str, value: Any) -> None:
        shown = key_text((value,))[1:-1]
        fk = self.table.fks.get(column)
        expected = (
            "text or null" if fk is None else f"a reference to {fk.table} by its natural key (a list) or null"
        )
        self.problems.append(
            f"{self.table.name} {key_text(key)}: {op}: column {column!r} holds {expected}, got {shown}"
        )

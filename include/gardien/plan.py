"""Dependency order of managed tables and the three-way field-level check (capture vs now vs wanted)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gardien.catalog import BoundTable, Catalog
from gardien.changeset import Changeset, Delete, Insert, Update
from gardien.errors import ConfigurationError, ConflictError
from gardien.portable import Key, canonical_text, key_text

ABSENT = "<absent>"


def leaf_tables(catalog: Catalog) -> set[str]:
    """Managed tables that no managed table (themselves included) references, by id or by value.

    Their rows can be deleted before any other write of a changeset or a rollback: no managed row waits
    for them, and a row naming a parent by value (``role_privilege.role`` → ``role.role``, no cascade)
    must be gone before that parent's value changes; their unique values are free again for the writes.
    """
    referenced = {fk.table for t in catalog.tables for fk in t.fks.values()}
    referenced |= {r for t in catalog.tables for r in t.value_refs}
    return {t.name for t in catalog.tables} - referenced


def table_order(catalog: Catalog) -> list[str]:
    """Managed tables, parents before children (self-references aside, handled in two phases).

    Raises ConfigurationError naming the cycle when tables reference each other in a loop: Gardien
    refuses cycles rather than relying on deferrable constraints that the target may not have.
    """
    deps = {
        t.name: {fk.table for fk in t.fks.values() if fk.table != t.name} | set(t.value_refs)
        for t in catalog.tables
    }
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise ConfigurationError(
                f"managed tables reference each other in a cycle: {cycle}. Gardien cannot order such changes; "
                "ignore one of these foreign-key columns in the catalog or break the cycle in the schema."
            )
        state[name] = 1
        for parent in sorted(deps[name]):
            visit(parent, [*path, name])
        state[name] = 2
        order.append(name)

    for table in catalog.tables:
        visit(table.name, [])
    return order


@dataclass(frozen=True, slots=True)
class FieldNote:
    """One field of one row: a conflict (blocking) or a drift (reported)."""

    table: str
    key: Key
    field: str
    baseline: Any
    now: Any
    wanted: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": list(self.key),
            "field": self.field,
            "baseline": self.baseline,
            "now": self.now,
            "wanted": self.wanted,
        }

    def describe(self) -> str:
        return (
            f"{self.table} {key_text(self.key)} {self.field}: baseline {self.baseline!r}, "
            f"now {self.now!r}, wanted {self.wanted!r}"
        )


@dataclass(frozen=True, slots=True)
class TablePlan:
    """What must really be written to one table after the three-way check."""

    table: str
    inserts: list[Insert] = field(default_factory=list)
    updates: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)  # key, fields to set
    deletes: list[Key] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.inserts) + len(self.updates) + len(self.deletes)


def _liveness(table: BoundTable) -> Callable[[dict[str, Any] | None], bool]:
    """Whether a physical row of ``table`` counts as present (it exists and is not soft-deleted), the
    soft-delete rule looked up once."""
    soft = table.soft_delete
    if soft is None:
        return lambda values: values is not None
    column, retired = soft.column, canonical_text(soft.value)
    return lambda values: values is not None and values.get(column) != retired


def three_way(
    catalog: Catalog, changeset: Changeset, now: dict[str, dict[Key, dict[str, Any]]]
) -> tuple[dict[str, TablePlan], list[FieldNote]]:
    """Compare baseline (capture), ``now`` (target rows by key, value columns) and the changeset.

    Returns the plan of writes per table and the unrelated drift. Raises ConflictError listing every row
    and field the target changed since capture that the changeset also changes.
    """
    plans: dict[str, TablePlan] = {}
    conflicts: list[FieldNote] = []
    drift: list[FieldNote] = []
    for tc in changeset.tables:
        table = catalog.table(tc.table)
        rows = now.get(tc.table, {})
        plan = TablePlan(table=tc.table)
        live = _liveness(table)
        columns = table.value_columns  # a property: computed once per table, not once per row
        for ins in tc.inserts:
            _check_insert(table, ins, rows.get(ins.key), plan, conflicts, drift, live, columns)
        for upd in tc.updates:
            _check_update(table, upd, rows.get(upd.key), plan, conflicts, drift, live, columns)
        for dele in tc.deletes:
            _check_delete(table, dele, rows.get(dele.key), plan, conflicts, drift, live, columns)
        plans[tc.table] = plan
    if conflicts:
        shown = "\n  ".join(c.describe() for c in conflicts[:50])
        more = f"\n  ... and {len(conflicts) - 50} more" if len(conflicts) > 50 else ""
        raise ConflictError(
            f"{len(conflicts)} field(s) changed in the target since capture are also changed by changeset "
            f"{changeset.id[:12]}; nothing was applied:\n  {shown}{more}\n"
            "Reconcile the target (or the source) and capture a new changeset with `gardien diff`."
        )
    return plans, drift


def _check_insert(
    table: BoundTable,
    ins: Insert,
    now: dict[str, Any] | None,
    plan: TablePlan,
    conflicts: list,
    drift: list,
    live: Callable[[dict[str, Any] | None], bool],
    columns: tuple[str, ...],
) -> None:
    if not live(now):
        plan.inserts.append(ins)
        return
    differing = [c for c in columns if now.get(c) != ins.values.get(c)]
    for column in differing:
        conflicts.append(
            FieldNote(table.name, ins.key, column, ABSENT, now.get(column), ins.values.get(column))
        )
    if not differing:
        drift.append(FieldNote(table.name, ins.key, "*", ABSENT, "already present as wanted", "insert"))


def _check_update(
    table: BoundTable,
    upd: Update,
    now: dict[str, Any] | None,
    plan: TablePlan,
    conflicts: list,
    drift: list,
    live: Callable[[dict[str, Any] | None], bool],
    columns: tuple[str, ...],
) -> None:
    if not live(now):
        conflicts.append(FieldNote(table.name, upd.key, "*", "present", ABSENT, "update"))
        return
    to_set: dict[str, Any] = {}
    for column, change in upd.changes.items():
        current = now.get(column)
        if current == change.before:
            to_set[column] = change.after
        elif current != change.after:
            conflicts.append(FieldNote(table.name, upd.key, column, change.before, current, change.after))
    for column in columns:
        if column not in upd.changes and now.get(column) != upd.baseline.get(column):
            drift.append(
                FieldNote(table.name, upd.key, column, upd.baseline.get(column), now.get(column), None)
            )
    if to_set:
        plan.updates.append((upd.key, to_set))


def _check_delete(
    table: BoundTable,
    dele: Delete,
    now: dict[str, Any] | None,
    plan: TablePlan,
    conflicts: list,
    drift: list,
    live: Callable[[dict[str, Any] | None], bool],
    columns: tuple[str, ...],
) -> None:
    if not live(now):
        drift.append(FieldNote(table.name, dele.key, "*", "present", ABSENT, "delete"))
        return
    differing = [c for c in columns if now.get(c) != dele.baseline.get(c)]
    for column in differing:
        conflicts.append(
            FieldNote(table.name, dele.key, column, dele.baseline.get(column), now.get(column), ABSENT)
        )
    if not differing:
        plan.deletes.append(dele.key)

"""Rollback from whole rows: compare the touched rows with the deployment's after-images, then restore them.

Used for deployments journaled with whole before- and after-images (gardien.journal.Deployment.whole).
Every touched row is locked (FOR UPDATE) and compared, column by column, with the row the deployment
left; an edit made since is named and nothing is written, unless the caller keeps the later edits that do
not overlap the deployment's own changes. Restoration works on the stored rows themselves (every column
as text cast back to its type, ids included): a deleted row comes back exactly, ignored columns too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from gardien import journal
from gardien.catalog import Catalog
from gardien.errors import RollbackError
from gardien.keys import KeyMap
from gardien.plan import leaf_tables, table_order
from gardien.portable import Key, key_text, qualified
from gardien.touched import Whole

Row = dict[str, str | None]


@dataclass(frozen=True, slots=True)
class LaterEdit:
    """A touched row that changed after the deployment: one field (``field``), or the whole row (None)."""

    table: str
    key: Key
    field: str | None
    after: Any
    now: Any

    def describe(self) -> str:
        if self.field is not None:
            return f"{self.table} {key_text(self.key)} {self.field}: after the deployment {self.after!r}, now {self.now!r}"
        return f"{self.table} {key_text(self.key)}: {self.after}, {self.now}"

    def named(self) -> dict[str, Any]:
        """The edit as recorded when it refuses a rollback (gardien.errors.RollbackError.later_edits)."""
        return {
            "table": self.table,
            "key": list(self.key),
            "field": self.field,
            "after": self.after,
            "now": self.now,
        }

    def kept(self) -> dict[str, Any]:
        return {"table": self.table, "key": list(self.key), "field": self.field, "value": self.now}


@dataclass(slots=True)
class Plan:
    """What one table's restoration writes, by primary key text: whole rows to insert and to update,
    rows to delete, and the later edits kept (re-applied once the restoration is proven)."""

    whole: Whole
    inserts: list[Row]
    updates: list[Row]
    deletes: list[str]
    kept: dict[str, Row]


def check(
    cur: Any,
    *,
    catalog: Catalog,
    dep: journal.Deployment,
    overlapping: list[journal.Deployment],
    keep_later_edits: bool,
    target: str,
) -> tuple[dict[str, Plan], list[LaterEdit]]:
    """Lock the rows ``dep`` touched, compare them with what it left (or, for rows a later deployment in
    ``overlapping`` changed again, with what that one left) and plan the restoration.

    Raises RollbackError, before anything is written, naming every later edit (table, natural key, field,
    value after the deployment, value now) — unless ``keep_later_edits``: then only the ones that cannot be
    kept are named (a row deleted or re-created since, a field the deployment itself changed).
    """
    expected = {t: {img.key: img.after for img in imgs} for t, imgs in dep.before_images.items()}
    for later in overlapping:  # oldest first: the last one to touch a row left it as it should be
        for t, imgs in later.before_images.items():
            for img in imgs:
                if t in expected and img.key in expected[t]:
                    expected[t][img.key] = img.after if later.whole else _UNKNOWN
    keymap = KeyMap(cur, catalog)
    plans: dict[str, Plan] = {}
    edits: list[LaterEdit] = []
    refused: list[LaterEdit] = []
    for name, images in dep.before_images.items():
        table = catalog.table(name)
        whole = Whole(cur, table)
        pk = table.pk
        # A row the deployment left is found by its id; a key it left without a row (deleted) is looked up
        # by natural key, in case someone re-created it since.
        by_key = [img.key for img in images if not isinstance(expected[name][img.key], dict)]
        keymap.add(table, by_key)
        resolved = keymap.ids(table)
        now_ids = {k: str(resolved[k]) for k in by_key if k in resolved}
        wanted = {str(r[pk]) for img in images for r in (expected[name][img.key],) if isinstance(r, dict)}
        rows = whole.read(cur, sorted(wanted | set(now_ids.values())), lock=True)
        gone = []
        for img in images:
            if isinstance(exp := expected[name][img.key], dict):
                if str(exp[pk]) in rows:
                    now_ids[img.key] = str(exp[pk])
                else:
                    gone.append(img.key)
        if gone:  # a row the deployment left is no longer there: is its key held by another row now?
            keymap.add(table, gone)
            resolved = keymap.ids(table)
            now_ids.update({k: str(resolved[k]) for k in gone if k in resolved})
            rows.update(whole.read(cur, [now_ids[k] for k in gone if k in now_ids], lock=True))
        managed = {pk, *table.columns}
        plan = plans[name] = Plan(whole, [], [], [], {})
        for img in images:
            exp, now_id = expected[name][img.key], now_ids.get(img.key)
            now = rows.get(now_id) if now_id is not None else None
            found = _compare(name, img, exp, now, now_id, pk)
            edits += found
            for edit in found:
                if (
                    edit.field is None
                    or img.row is None
                    or (edit.field in managed and img.row.get(edit.field) != (exp or {}).get(edit.field))
                ):
                    refused.append(edit)
                else:
                    plan.kept.setdefault(str(img.row[pk]), {})[edit.field] = edit.now
            _plan_row(plan, img, now_id, pk)
    if edits and not keep_later_edits:
        raise RollbackError(
            f"deployment {dep.name} on {target} cannot be rolled back: {len(edits)} later edit(s) of rows it "
            f"touched would be overwritten:\n  {_listed(edits)}\nNothing was changed. Reconcile these rows, or "
            "pass --keep-later-edits to keep the later edits that do not overlap the deployment's own changes.",
            changed=False,
            later_edits=tuple(e.named() for e in edits),
        )
    if refused:
        raise RollbackError(
            f"deployment {dep.name} on {target} cannot be rolled back keeping the later edits: {len(refused)} "
            f"of them overlap the deployment's own changes (or delete or re-create a row it touched):\n  "
            f"{_listed(refused)}\nNothing was changed. Reconcile these rows by hand or with a corrective changeset.",
            changed=False,
            later_edits=tuple(e.named() for e in refused),
        )
    return plans, [e for e in edits if e not in refused]


_UNKNOWN = object()  # a later deployment journaled without whole rows: what it left is not known


def _compare(
    name: str, img: journal.BeforeImage, exp: Any, now: Row | None, now_id: str | None, pk: str
) -> list[LaterEdit]:
    """The differences between the row now and the row expected there (None: absent)."""
    if exp is _UNKNOWN:
        return []
    if exp is None:
        if now_id is None:
            return []
        return [
            LaterEdit(name, img.key, None, "absent after the deployment", f"re-created since (id {now_id})")
        ]
    if now is None or now_id is None:
        return [
            LaterEdit(
                name, img.key, None, f"present after the deployment (id {exp.get(pk)})", "deleted since"
            )
        ]
    if now_id != exp.get(pk):
        return [
            LaterEdit(
                name,
                img.key,
                None,
                f"present after the deployment (id {exp.get(pk)})",
                f"re-created since as id {now_id}",
            )
        ]
    return [LaterEdit(name, img.key, c, v, now.get(c)) for c, v in exp.items() if now.get(c) != v]


def _plan_row(plan: Plan, img: journal.BeforeImage, now_id: str | None, pk: str) -> None:
    if img.row is None:
        if now_id is not None:
            plan.deletes.append(now_id)
        return
    if now_id == str(img.row[pk]):
        plan.updates.append(img.row)
        return
    if now_id is not None:  # replaced under another id by a later deployment (forced over)
        plan.deletes.append(now_id)
    plan.inserts.append(img.row)


def _listed(edits: list[LaterEdit]) -> str:
    more = f"\n  ... and {len(edits) - 50} more" if len(edits) > 50 else ""
    return "\n  ".join(e.describe() for e in edits[:50]) + more


def restore(cur: Any, *, catalog: Catalog, plans: dict[str, Plan]) -> None:
    """Write the planned restoration: rows of tables nothing references deleted first, whole rows
    re-inserted (former ids) and updated parents first, then the other rows deleted children first.
    Self-references are set once every row of the table is back."""
    order = table_order(catalog)
    leaves = leaf_tables(catalog)  # deleted first (gardien.plan.leaf_tables), the other deletes last
    for name in [n for n in reversed(order) if n in leaves]:
        _delete(cur, plans.get(name))
    for name in order:
        plan = plans.get(name)
        if plan is None:
            continue
        whole, table = plan.whole, plan.whole.table
        if plan.inserts:
            cols = whole.insertable
            cur.execute(
                sql.SQL("INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {vals} FROM {rows}").format(
                    t=qualified(table),
                    cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
                    vals=sql.SQL(", ").join(
                        sql.SQL("NULL") if c in whole.self_refs else _value(whole, c, i)
                        for i, c in enumerate(cols)
                    ),
                    rows=_ROWS,
                ),
                (_arrays(plan.inserts, cols),),
            )
        _update(cur, whole, plan.updates, whole.updatable)
        _update(cur, whole, plan.inserts, whole.self_refs)
    for name in [n for n in reversed(order) if n not in leaves]:
        _delete(cur, plans.get(name))


def _delete(cur: Any, plan: Plan | None) -> None:
    if plan is None or not plan.deletes:
        return
    whole, table = plan.whole, plan.whole.table
    ids = sql.SQL("{} = ANY(%s::{}[])").format(sql.Identifier(table.pk), sql.SQL(whole.types[table.pk]))
    if whole.self_refs:  # unhook rows deleted together so that no statement sees a dangling parent
        sets = sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in whole.self_refs)
        cur.execute(sql.SQL("UPDATE {} SET {} WHERE ").format(qualified(table), sets) + ids, (plan.deletes,))
    cur.execute(sql.SQL("DELETE FROM {} WHERE ").format(qualified(table)) + ids, (plan.deletes,))


# Rows travel as one JSON array of arrays (values in a given column order, each its text or null): the
# server parses arrays into jsonb much faster than objects, and nothing repeats the column names.
_ROWS = sql.SQL("jsonb_array_elements(%s::jsonb) AS e(r)")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _arrays(rows: list[Row], columns: tuple[str, ...]) -> str:
    """``rows`` as the JSON text ``_ROWS`` reads: each row's values in ``columns``' order (absent: null)."""
    return _dumps([[r.get(c) for c in columns] for r in rows])


def _value(whole: Whole, column: str, index: int) -> sql.Composed:
    """Item ``index`` of a ``_ROWS`` row (a text or null) cast back to ``column``'s type."""
    return sql.SQL("(e.r->>{})::{}").format(sql.Literal(index), sql.SQL(whole.types[column]))


def _update(cur: Any, whole: Whole, rows: list[Row], columns: tuple[str, ...]) -> None:
    """Set ``columns`` of the rows with these primary keys to their values in ``rows``."""
    if not rows or not columns:
        return
    pk = whole.table.pk
    cur.execute(
        sql.SQL("UPDATE {t} AS t SET {sets} FROM {rows} WHERE t.{pk} = {key}").format(
            t=qualified(whole.table),
            sets=sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(c), _value(whole, c, i + 1))
                for i, c in enumerate(columns)
            ),
            rows=_ROWS,
            pk=sql.Identifier(pk),
            key=_value(whole, pk, 0),
        ),
        (_arrays(rows, (pk, *columns)),),
    )


def reapply_kept(cur: Any, *, plans: dict[str, Plan]) -> None:
    """Set the later edits kept back on the restored rows (after the restoration is proven)."""
    for plan in plans.values():
        by_columns: dict[tuple[str, ...], list[Row]] = {}
        for pk_text, fields in plan.kept.items():
            by_columns.setdefault(tuple(sorted(fields)), []).append({plan.whole.table.pk: pk_text, **fields})
        for columns, rows in by_columns.items():
            _update(cur, plan.whole, rows, columns)

"""The changeset section of a report: counts and field-level diffs by natural key, long lists capped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gardien.changeset import Changeset, FieldChange, TableChanges, Update
from gardien.report.hints import CatalogHints, set_difference
from gardien.report.model import ChangesetSection, FieldDiff, RowUpdate, RowValues, TableDiff
from gardien.retire import retirement_of

KINDS = ("inserts", "updates", "deletes")


def key_label(key: Sequence[Any]) -> str:
    """A natural key for people: parts joined by " / ", a foreign key's own key in parentheses."""
    return " / ".join(_part(p) for p in key)


def _part(part: Any) -> str:
    if part is None:
        return "NULL"
    if isinstance(part, list | tuple):
        inner = key_label(part)
        return f"({inner})" if len(part) > 1 else inner
    return str(part)


def field_diff(table: str, column: str, change: FieldChange, hints: CatalogHints) -> FieldDiff:
    """A field's change; a list field also gets its set difference (what was added, what was removed)."""
    separator = hints.list_separators.get((table, column))
    diff = set_difference(change.before, change.after, separator) if separator else None
    if diff is None:
        return FieldDiff(before=change.before, after=change.after)
    added, removed = diff
    return FieldDiff(
        before=change.before, after=change.after, added=added, removed=removed, separator=separator
    )


def _update(table: str, r: Update, hints: CatalogHints) -> RowUpdate:
    retire = hints.retire.get(table)
    found = retirement_of(r, retire) if retire is not None else None
    return RowUpdate(
        key=r.key,
        label=key_label(r.key),
        changes={c: field_diff(table, c, ch, hints) for c, ch in sorted(r.changes.items())},
        action=found[0] if found else "updated",
        reason=found[1] if found else None,
    )


def table_diff(changes: TableChanges, *, row_limit: int, hints: CatalogHints | None = None) -> TableDiff:
    """One table's diffs, each kind cut at ``row_limit`` rows (in the changeset's canonical order); in a
    table with ``delete: {retire: ...}``, updates that flip the retire flag say "retired" (with the reason)
    or "unretired"."""
    hints = hints or CatalogHints()
    inserts = tuple(
        RowValues(key=r.key, label=key_label(r.key), values=dict(r.values))
        for r in changes.inserts[:row_limit]
    )
    updates = tuple(_update(changes.table, r, hints) for r in changes.updates[:row_limit])
    deletes = tuple(
        RowValues(key=r.key, label=key_label(r.key), values=dict(r.baseline))
        for r in changes.deletes[:row_limit]
    )
    counts = {
        "inserts": len(changes.inserts),
        "updates": len(changes.updates),
        "deletes": len(changes.deletes),
    }
    shown = {"inserts": len(inserts), "updates": len(updates), "deletes": len(deletes)}
    return TableDiff(
        table=changes.table,
        counts=counts,
        inserts=inserts,
        updates=updates,
        deletes=deletes,
        omitted={k: counts[k] - shown[k] for k in KINDS},
        retired_by=hints.retired_by.get(changes.table),
    )


def changeset_section(
    changeset: Changeset,
    *,
    row_limit: int,
    full_changeset: Sequence[str],
    earlier_ids: Sequence[str],
    hints: CatalogHints | None = None,
) -> ChangesetSection:
    """The section for a readable changeset; tables without changes are left out of the diffs."""
    tables = tuple(table_diff(t, row_limit=row_limit, hints=hints) for t in changeset.tables if t.count)
    counts = {t.table: dict(t.counts) for t in tables}
    return ChangesetSection(
        id=changeset.id,
        total=sum(t.count for t in changeset.tables),
        counts=counts,
        tables=tables,
        catalog_fingerprint=changeset.catalog_fingerprint,
        source_digest=changeset.source_fingerprint.digest,
        target_digest=changeset.target_fingerprint.digest,
        full_changeset=tuple(full_changeset),
        earlier_ids=tuple(earlier_ids),
        row_limit=row_limit,
    )


def unreadable_section(
    changeset_id: str | None,
    *,
    problem: str,
    row_limit: int,
    full_changeset: Sequence[str],
    earlier_ids: Sequence[str],
) -> ChangesetSection:
    """The section when there is no changeset yet, or the ledger's copy cannot be trusted or parsed."""
    return ChangesetSection(
        id=changeset_id,
        total=0,
        counts={},
        tables=(),
        catalog_fingerprint=None,
        source_digest=None,
        target_digest=None,
        full_changeset=tuple(full_changeset),
        earlier_ids=tuple(earlier_ids),
        row_limit=row_limit,
        problem=problem,
    )

"""Rows a changeset retires or brings back (``delete: {retire: ...}``), named for reports and approvals."""

from __future__ import annotations

from dataclasses import dataclass

from gardien.changeset import Changeset, Update
from gardien.config import CatalogConfig, Retire
from gardien.portable import Key, canonical_text


@dataclass(frozen=True, slots=True)
class Retirement:
    """An update that flips a row's retire flag: ``action`` is "retired" or "unretired"."""

    table: str
    key: Key
    action: str
    reason: str | None

    def line(self) -> str:
        from gardien.report.diffs import key_label  # plain text helper; the report imports nothing back

        why = f" (reason: {self.reason})" if self.reason else ""
        return f"{self.table} {key_label(self.key)}: {self.action}{why}"


def retirement_of(update: Update, retire: Retire) -> tuple[str, str | None] | None:
    """("retired" | "unretired", reason) when ``update`` flips the retire column, else None."""
    change = update.changes.get(retire.column)
    if change is None:
        return None
    retired = canonical_text(retire.value)
    if change.after == retired:
        action = "retired"
    elif change.before == retired:
        action = "unretired"
    else:
        return None
    reason = None
    if retire.reason is not None and action == "retired":
        after = update.changes.get(retire.reason)
        reason = after.after if after is not None else update.baseline.get(retire.reason)
    return action, reason if isinstance(reason, str) else None


def retirements(changeset: Changeset, catalog: CatalogConfig) -> list[Retirement]:
    """Every row ``changeset`` retires or brings back, in changeset order."""
    out: list[Retirement] = []
    policies = {t.name: t.retire for t in catalog.tables if t.retire is not None}
    for tc in changeset.tables:
        retire = policies.get(tc.table)
        if retire is None:
            continue
        for update in tc.updates:
            found = retirement_of(update, retire)
            if found is not None:
                out.append(Retirement(table=tc.table, key=update.key, action=found[0], reason=found[1]))
    return out

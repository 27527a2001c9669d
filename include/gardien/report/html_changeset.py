"""The changeset part of the HTML report: counts, then inserts, updates (before → after) and deletes."""

from __future__ import annotations

from typing import Any

from gardien.report.markup import Safe, definitions, el, esc, table, value
from gardien.report.model import ChangesetSection, RowUpdate, RowValues, TableDiff


def changeset_html(c: ChangesetSection) -> Safe:
    parts: list[Any] = []
    if c.problem:
        parts.append(el("p", c.problem, cls="unproven" if c.id else "meta"))
    if c.id:
        items: list[tuple[str, Any]] = [("Id (SHA-256)", el("span", c.id, cls="hash"))]
        if c.catalog_fingerprint:
            items += [
                ("Catalog fingerprint", el("span", c.catalog_fingerprint, cls="hash")),
                ("Source scope at capture", el("span", c.source_digest, cls="hash")),
                ("Target scope at capture", el("span", c.target_digest, cls="hash")),
            ]
        items.append(
            ("Full changeset", el("ul", [el("li", _location(x)) for x in c.full_changeset], cls="kv"))
        )
        if c.earlier_ids:
            items.append(
                ("Replaced changesets", [el("div", el("span", x, cls="hash")) for x in c.earlier_ids])
            )
        parts.append(definitions(items))
    if c.tables:
        rows = [(t.table, t.counts["inserts"], t.counts["updates"], t.counts["deletes"]) for t in c.tables]
        rows.append(
            (
                el("strong", "total"),
                sum(t.counts["inserts"] for t in c.tables),
                sum(t.counts["updates"] for t in c.tables),
                sum(t.counts["deletes"] for t in c.tables),
            )
        )
        parts.append(table(["Table", "Inserts", "Updates", "Deletes"], rows))
        parts += [_table_diff(t, c) for t in c.tables]
    elif not c.problem:
        parts.append(el("p", "The changeset is empty: the target already equals the source.", cls="meta"))
    return el("section", parts)


def _location(text: str) -> Safe:
    if text.endswith(".json") and not text.startswith("ledger:"):
        return el("a", text, href=text)
    return esc(text)


def _table_diff(t: TableDiff, c: ChangesetSection) -> Safe:
    out: list[Any] = [el("h3", "Table ", el("code", t.table))]
    if t.inserts:
        out.append(el("p", el("strong", f"Inserted ({t.counts['inserts']})")))
        out.append(table(["Natural key", "Values"], [(r.label, _values(r)) for r in t.inserts]))
        out.append(_more(t.omitted["inserts"], c))
    if t.updates:
        out.append(el("p", el("strong", f"Updated ({t.counts['updates']})")))
        out.append(table(["Natural key", "Field", "Before → after"], _update_rows(t.updates)))
        out.append(_more(t.omitted["updates"], c))
    if t.deletes:
        out.append(el("p", el("strong", f"Deleted ({t.counts['deletes']}) — baseline at capture")))
        out.append(table(["Natural key", "Baseline"], [(r.label, _values(r)) for r in t.deletes]))
        out.append(_more(t.omitted["deletes"], c))
    return el("div", out)


def _values(row: RowValues) -> Safe:
    return el(
        "ul", [el("li", el("code", k), " = ", value(v)) for k, v in sorted(row.values.items())], cls="kv"
    )


def _update_rows(updates: tuple[RowUpdate, ...]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for u in updates:
        for i, (column, change) in enumerate(u.changes.items()):
            diff = (
                el("span", value(change.before), cls="before"),
                " → ",
                el("span", value(change.after), cls="after"),
            )
            label = u.label if u.action == "updated" else f"{u.label} — {u.action}"
            label += f" (reason: {u.reason})" if u.reason else ""
            rows.append((label if i == 0 else "", el("code", column), diff))
    return rows


def _more(omitted: int, c: ChangesetSection) -> Safe | None:
    if not omitted:
        return None
    where = "; ".join(c.full_changeset) or "the ledger"
    return el(
        "p", f"... and {omitted} more (first {c.row_limit} shown). Full changeset: {where}.", cls="more"
    )

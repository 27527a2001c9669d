"""Escaping-first HTML building blocks for the report: text is escaped unless it is already Safe."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from gardien.report.diffs import key_label


class Safe(str):
    """HTML that was built here (escaped or literal markup); any other str is escaped on the way in."""

    __slots__ = ()


def esc(value: Any) -> Safe:
    """``value`` as escaped HTML text (Safe values pass through unchanged)."""
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def el(tag: str, *children: Any, cls: str | None = None, **attrs: str | None) -> Safe:
    """``<tag attrs>children</tag>``: tag and attribute names are literals of this package, never input;
    attribute values and children are escaped. A child may be a Safe, a str, None (skipped) or an iterable."""
    parts = [tag]
    if cls:
        parts.append(f'class="{esc(cls)}"')
    for name, value in attrs.items():
        if value is not None:
            parts.append(f'{name.rstrip("_").replace("_", "-")}="{esc(value)}"')
    return Safe(f"<{' '.join(parts)}>{join(children)}</{tag}>")


def join(children: Iterable[Any]) -> Safe:
    out: list[str] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, str):
            out.append(esc(child))
        elif isinstance(child, Iterable):
            out.append(join(child))
        else:
            out.append(esc(child))
    return Safe("".join(out))


def value(v: Any) -> Safe:
    """A changeset value: NULL and the empty string made visible, a foreign key shown by its natural key."""
    if v is None:
        return el("span", "NULL", cls="null")
    if v == "":
        return el("span", "(empty)", cls="null")
    if isinstance(v, list | tuple):
        return el("span", "→ ", key_label(v), cls="ref")
    return esc(v)


def short(digest: str | None, n: int = 12) -> Safe:
    """A hash shortened for reading, the full value kept in the title (and in the JSON)."""
    if not digest:
        return el("span", "—", cls="null")
    return el("code", digest[:n], title=digest)


def badge(text: str, kind: str) -> Safe:
    return el("span", text, cls=f"badge {kind}")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str | None = None) -> Safe:
    head = el("thead", el("tr", [el("th", h) for h in headers]))
    body = el("tbody", [el("tr", [el("td", c) for c in row]) for row in rows])
    return el("table", head, body, cls=cls)


def definitions(items: Iterable[tuple[str, Any]]) -> Safe:
    return el("dl", [(el("dt", k), el("dd", v)) for k, v in items])


CSS = """
:root { --ink:#1d2430; --muted:#5b6575; --line:#d5dbe3; --ok:#1f7a3d; --bad:#b3261e; --warn:#8a5a00; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 2rem auto; max-width: 1100px; padding: 0 1rem; line-height: 1.45;
       font-size: 14px; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; border-bottom: 2px solid var(--line); padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
.meta { color: var(--muted); margin: 0 0 1rem; }
code, .hash { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .85em; }
.hash { word-break: break-all; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .25rem .45rem; text-align: left; vertical-align: top; }
th { background: #f1f4f8; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: .4rem 0 1rem; }
dt { font-weight: 600; color: var(--muted); }
dd { margin: 0; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .25rem; font-weight: 700;
         font-size: .8rem; border: 1px solid currentColor; }
.badge.ok { color: var(--ok); } .badge.bad { color: var(--bad); } .badge.warn { color: var(--warn); }
.badge.info { color: var(--muted); }
.alerts { border: 3px solid var(--bad); padding: .6rem 1rem; margin: 1rem 0; }
.alerts li.danger { color: var(--bad); font-weight: 700; }
.alerts li.warning { color: var(--warn); font-weight: 600; }
.allclear { border: 2px solid var(--ok); color: var(--ok); padding: .5rem 1rem; font-weight: 600; }
.unproven { border: 3px solid var(--bad); color: var(--bad); padding: .6rem 1rem; font-weight: 700;
            font-size: 1.05rem; }
.proven { border: 2px solid var(--ok); padding: .5rem 1rem; }
.null { color: var(--muted); font-style: italic; }
.ref { color: #24508f; }
.before { text-decoration: line-through; color: var(--bad); }
.after { color: var(--ok); font-weight: 600; }
.more { color: var(--muted); font-style: italic; }
.small { font-size: .85em; color: var(--muted); }
ul.kv { margin: 0; padding-left: 1rem; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  h2 { break-after: avoid; }
  tr, .alerts, .unproven { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
@page { margin: 1.5cm; }
"""

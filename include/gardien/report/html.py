"""Render a ReleaseReport as one self-contained, printable HTML page: a Jinja2 template with autoescape,
inline CSS, no script, nothing fetched from elsewhere; it wraps at any width (long values break)."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from gardien.report.diffs import key_label
from gardien.report.model import ReleaseReport


def value(v: Any) -> Markup:
    """A changeset value: NULL and the empty string made visible, a foreign key shown by its natural key."""
    if v is None:
        return Markup('<span class="null">NULL</span>')
    if v == "":
        return Markup('<span class="null">(empty)</span>')
    if isinstance(v, list | tuple):
        return Markup('<span class="ref">→ {}</span>').format(key_label(v))
    return escape(v)


def short(digest: str | None, n: int = 12) -> Markup:
    """A hash shortened for reading, the full value kept in the title (and in the JSON)."""
    if not digest:
        return Markup('<span class="null">—</span>')
    return Markup('<code title="{}">{}</code>').format(digest, digest[:n])


def badge(text: str, kind: str) -> Markup:
    return Markup('<span class="badge {}">{}</span>').format(kind, text)


def example(x: Any) -> str:
    if isinstance(x, dict):
        return ", ".join(f"{k}={x[k]}" for k in sorted(x, key=str))
    return str(x)


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gardien.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(value=value, short=short, example=example)
    env.globals.update(badge=badge)
    return env


def render_html(report: ReleaseReport) -> str:
    """The whole page. Every value from the ledger or the changeset is escaped by the template engine."""
    return _environment().get_template("report.html").render(r=report).lstrip() + "\n"

"""Jinja2 rendering of the board's pages: autoescape everywhere, assets served by the board itself."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"


def when(value: Any) -> str:
    """A timestamp for people: UTC, to the second ("2026-12-01 20:14:03Z"); text is passed through."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def short(value: Any, n: int = 12) -> str:
    return str(value or "")[:n]


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, short=short, as_json=as_json)
    return env


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a file of templates/) with ``context``; every value is HTML-escaped."""
    return environment().get_template(template).render(**context)

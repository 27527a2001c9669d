"""Gardien's own validation page: every expectation of one validation, failures first with their example
rows, in one self-contained HTML file (inline CSS, no script, no CDN asset: it renders offline, where
Great Expectations' Data Docs load their styles and scripts from CDNs)."""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from gardien.validation.report import ERROR, FAILED, ValidationReport

_ORDER = {FAILED: 0, ERROR: 1}


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("gardien.validation", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(report: ValidationReport, *, title: str) -> str:
    """The page for ``report``: failed then errored expectations open, passed ones folded."""
    ordered = sorted(report.expectations, key=lambda r: (_ORDER.get(r.status, 2), r.table or "", r.name))
    text = (
        _environment()
        .get_template("validation.html")
        .render(report=report, title=title, expectations=ordered, FAILED=FAILED, ERROR=ERROR)
    )
    return text.lstrip() + "\n"


def write_page(report: ValidationReport, folder: Path, *, title: str) -> Path:
    """Write ``index.html`` into ``folder`` (created) atomically; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".index.html.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render_page(report, title=title))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

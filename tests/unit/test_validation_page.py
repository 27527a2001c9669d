"""Gardien's validation page (instead of GX Data Docs): failures first with rows, escaped, fully offline."""

from __future__ import annotations

from pathlib import Path

from gardien.validation.page import render_page, write_page
from gardien.validation.report import ExpectationResult, ValidationReport

EVIL = '<script>alert("x")</script>'


def _report() -> ValidationReport:
    return ValidationReport.from_results(
        target="prod",
        results=[
            ExpectationResult("uf_code_unique", "unite_fonctionnelle", "unique", True, 0, (), "ok"),
            ExpectationResult(
                "dose_max_above_min",
                "regle_alerte_dose",
                "a_greater_than_b",
                False,
                2,
                (
                    {"medicament": "3400890010078", "population": EVIL},
                    {"medicament": "X", "population": None},
                ),
                "dose_max must exceed dose_min",
            ),
            ExpectationResult("probe", None, "smoke_probe", False, 0, (), "could not run", error="timeout"),
        ],
    )


def test_page_lists_failures_first_then_errors_then_passed_folded() -> None:
    page = render_page(_report(), title="Validation of prod")
    assert page.startswith("<!DOCTYPE html>")
    order = [page.index(n) for n in ("dose_max_above_min", "could not run: timeout", "uf_code_unique")]
    assert order == sorted(order)
    assert '<details class="failed" open>' in page and '<details class="passed">' in page
    assert "3400890010078" in page and "population</code>=NULL" in page


def test_page_is_escaped_and_self_contained() -> None:
    page = render_page(_report(), title=EVIL)
    assert "<script>" not in page and "&lt;script&gt;" in page
    for remote in ("http://", "https://", "<link", "@import", "url("):
        assert remote not in page


def test_write_page_writes_index_html(tmp_path: Path) -> None:
    path = write_page(_report(), tmp_path / "data_docs", title="t")
    assert path == tmp_path / "data_docs" / "index.html" and "dose_max_above_min" in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]  # no temporary file left

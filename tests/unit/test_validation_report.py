"""Reports, scratch names and markers, the SQLAlchemy URL, and the import-cost rule (pure)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gardien.validation.report import ExpectationResult, ValidationReport
from gardien.validation.runner import _error_text, sqlalchemy_url
from gardien.validation.scratch import marker, parse_marker, scratch_name


def _result(name: str, *, passed: bool, error: str | None = None) -> ExpectationResult:
    return ExpectationResult(
        name=name,
        table="medicament",
        kind="unique",
        passed=passed,
        unexpected_count=0 if passed else 2,
        examples=() if passed else ({"code_ucd": "3400890000017", "dose": Decimal("1.500")},),
        message="ok" if passed else "2 unexpected row(s)",
        error=error,
    )


@pytest.mark.parametrize(
    ("results", "ok", "failed", "errors"),
    [
        ([_result("a", passed=True)], True, 0, 0),
        ([_result("a", passed=True), _result("b", passed=False)], False, 1, 0),
        ([_result("a", passed=False, error="boom")], False, 0, 1),
        ([], True, 0, 0),
    ],
    ids=["all-pass", "one-failed", "one-error", "nothing"],
)
def test_validation_report_from_results_ok_failed_errors(
    results: list[ExpectationResult], ok: bool, failed: int, errors: int
) -> None:
    report = ValidationReport.from_results(target="prod", results=results)

    assert (report.ok, len(report.failed), len(report.errors)) == (ok, failed, errors)


def test_validation_report_to_json_round_trips_examples() -> None:
    report = ValidationReport.from_results(
        target="prod", results=[_result("b", passed=False)], data_docs_path="d/index.html"
    )

    data = json.loads(report.to_json())

    assert data["ok"] is False and data["data_docs_path"] == "d/index.html"
    assert data["expectations"][0]["status"] == "failed"
    assert data["expectations"][0]["examples"] == [{"code_ucd": "3400890000017", "dose": "1.500"}]
    assert data["summary"] == "prod: FAILED: 0 passed, 1 failed, 0 could not run, of 1 expectations"


def test_validation_report_error_status_distinct_from_failed() -> None:
    result = _result("c", passed=False, error="column x does not exist")

    assert result.status == "error"
    assert result.to_dict()["status"] == "error"


def test_validation_report_trivially_valid_says_so() -> None:
    report = ValidationReport.trivially_valid(target="prod", reason="empty changeset")

    assert report.ok and report.trivial and report.expectations == ()
    assert report.summary() == "prod: validates trivially (empty changeset)"


def test_validation_report_result_unknown_name_key_error() -> None:
    with pytest.raises(KeyError, match="nope"):
        ValidationReport.from_results(target="prod", results=[]).result("nope")


@pytest.mark.parametrize(
    ("label", "suffix", "expected"),
    [
        ("prod", "ab12", "gardien_scratch_prod_ab12"),
        ("Pré-Prod 2", "AB12", "gardien_scratch_pr_prod_2_ab12"),
        ("postgresql://u@h:5432/db", "x1", "gardien_scratch_postgresql_u_h_5432_db_x1"),
        ("", "x1", "gardien_scratch_run_x1"),
        ("l" * 80, "deadbeef", "gardien_scratch_" + "l" * 38 + "_deadbeef"),
    ],
    ids=["plain", "accents-spaces", "uri", "empty", "too-long"],
)
def test_scratch_name_folded_and_bounded(label: str, suffix: str, expected: str) -> None:
    name = scratch_name(label, suffix)

    assert name == expected
    assert len(name) <= 63


def test_scratch_name_empty_suffix_value_error() -> None:
    with pytest.raises(ValueError, match="has no letter or digit"):
        scratch_name("prod", "--")


def test_marker_round_trip() -> None:
    at = datetime(2026, 11, 28, 20, 0, tzinfo=timezone(timedelta(hours=1)))

    assert parse_marker(marker(at)) == at


@pytest.mark.parametrize(
    "comment",
    [
        None,
        "",
        "a database",
        "gardien-scratch created_at=yesterday",
        "gardien-scratch created_at=2026-11-28T20:00:00",
    ],
    ids=["none", "empty", "other", "damaged", "naive"],
)
def test_parse_marker_not_a_marker_none(comment: str | None) -> None:
    assert parse_marker(comment) is None


def test_marker_naive_time_value_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        marker(datetime(2026, 11, 28))


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "postgresql://u:p%40ss@db.example:5433/prod?sslmode=require",
            "postgresql+psycopg2://u:p%40ss@db.example:5433/prod?options=-c+statement_timeout%3D1000&sslmode=require",
        ),
        (
            "host=/var/run/postgresql dbname=prod user=u",
            "postgresql+psycopg2://u@/prod?host=%2Fvar%2Frun%2Fpostgresql&options=-c+statement_timeout%3D1000",
        ),
    ],
    ids=["uri", "unix-socket"],
)
def test_sqlalchemy_url_from_libpq_dsn(dsn: str, expected: str) -> None:
    assert sqlalchemy_url(dsn, statement_timeout_ms=1000) == expected


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"raised_exception": False, "exception_message": None}, None),
        ({"raised_exception": True, "exception_message": " boom "}, "boom"),
        ({"metric-1": {"raised_exception": True, "exception_message": "column x"}}, "column x"),
        ({}, None),
    ],
    ids=["ran", "raised", "per-metric", "empty"],
)
def test_error_text_from_gx_exception_info(info: dict, expected: str | None) -> None:
    assert _error_text(info) == expected


def test_import_validation_does_not_import_gx_or_airflow() -> None:
    code = (
        "import sys, gardien.validation, gardien.cli.validate;"
        "print([m for m in ('great_expectations', 'airflow', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert out.strip() == "[]"

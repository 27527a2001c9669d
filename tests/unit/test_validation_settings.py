"""Parsing of the ``validation:`` and ``smoke_probes:`` sections and of change summaries (pure)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gardien.errors import ChangesetError, ConfigurationError
from gardien.validation.changes import ChangeSummary, TableChanges
from gardien.validation.probes import parse_probes
from gardien.validation.settings import BlastRadius, parse_duration, parse_validation_settings


def test_parse_validation_settings_none_gives_defaults() -> None:
    settings = parse_validation_settings(None)

    assert settings.blast_radius == BlastRadius(default=0.10, min_changes=5, tables={})
    assert settings.examples == 10
    assert settings.statement_timeout_ms == 300_000
    assert settings.scratch_max_age == timedelta(hours=6)
    assert settings.suites_dir is None


def test_parse_validation_settings_full_section_parsed() -> None:
    settings = parse_validation_settings(
        {
            "suites_dir": "../expectations",
            "blast_radius": {"default": 0.2, "min_changes": 0, "tables": {"medicament": 0.05}},
            "examples": 3,
            "statement_timeout": "90s",
            "scratch_max_age": "2h",
        },
        base_dir=Path("conf"),
    )

    assert settings.suites_dir == Path("conf/../expectations")
    assert settings.blast_radius.limit_for("medicament") == 0.05
    assert settings.blast_radius.limit_for("profil") == 0.2
    assert settings.blast_radius.min_changes == 0
    assert (settings.examples, settings.statement_timeout_ms) == (3, 90_000)
    assert settings.scratch_max_age == timedelta(hours=2)


def test_parse_validation_settings_blast_radius_as_number_is_default() -> None:
    assert parse_validation_settings({"blast_radius": 0.3}).blast_radius.default == 0.3


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (["x"], r"validation: expected a mapping"),
        ({"blast": 1}, r"validation: unknown key\(s\) blast"),
        ({"blast_radius": {"default": 1.5}}, r"blast_radius.default: 1.5 is not a share"),
        ({"blast_radius": {"default": True}}, r"blast_radius.default: True is not a share"),
        ({"blast_radius": {"tables": {"medicament": "10%"}}}, r"blast_radius.tables.medicament: '10%'"),
        ({"blast_radius": {"tables": ["medicament"]}}, r"blast_radius.tables: expected a mapping"),
        ({"blast_radius": {"min_changes": -1}}, r"min_changes: -1 is not a row count"),
        ({"blast_radius": {"limit": 0.1}}, r"validation.blast_radius: unknown key\(s\) limit"),
        ({"blast_radius": "big"}, r"validation.blast_radius: expected a share"),
        ({"examples": 0}, r"validation.examples: 0 must be an integer from 1 to 1000"),
        ({"statement_timeout": "soon"}, r"validation.statement_timeout: 'soon' is not a duration"),
        ({"scratch_max_age": "0h"}, r"validation.scratch_max_age: '0h' must be positive"),
    ],
    ids=[
        "not-mapping",
        "unknown-key",
        "share-above-one",
        "share-bool",
        "table-share-text",
        "tables-not-mapping",
        "min-changes-negative",
        "blast-unknown-key",
        "blast-text",
        "examples-zero",
        "timeout-text",
        "max-age-zero",
    ],
)
def test_parse_validation_settings_bad_value_configuration_error(raw: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_validation_settings(raw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        (45, timedelta(seconds=45)),
    ],
    ids=["ms", "s", "m", "h", "d", "number"],
)
def test_parse_duration_units_parsed(value: object, expected: timedelta) -> None:
    assert parse_duration(value, where="x") == expected


def test_parse_duration_bool_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"x: True is not a duration"):
        parse_duration(True, where="x")


def test_change_summary_from_dict_parsed() -> None:
    summary = ChangeSummary.from_dict(
        {
            "medicament": {"inserts": 2, "deletes": 1, "deleted_keys": [{"code_ucd": "3400890000024"}]},
            "droit": {},
        }
    )

    assert summary.for_table("medicament") == TableChanges(
        inserts=2, deletes=1, deleted_keys=({"code_ucd": "3400890000024"},)
    )
    assert summary.for_table("profil") == TableChanges()
    assert not summary.is_empty


@pytest.mark.parametrize(
    "raw",
    [{}, {"droit": {}}, {"droit": {"inserts": 0, "updates": 0, "deletes": 0}}],
    ids=["no-table", "empty-table", "zero-counts"],
)
def test_change_summary_without_changes_is_empty(raw: dict) -> None:
    assert ChangeSummary.from_dict(raw).is_empty


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([], r"expected a mapping table"),
        ({"droit": 3}, r"droit: expected a mapping"),
        ({"droit": {"inserts": -1}}, r"droit.inserts: -1 is not a row count"),
        ({"droit": {"updates": "2"}}, r"droit.updates: '2' is not a row count"),
        ({"droit": {"renames": 1}}, r"droit: unknown field\(s\) renames"),
        ({"droit": {"deletes": 1, "deleted_keys": ["PRESC"]}}, r"droit.deleted_keys: expected a list"),
        (
            {"droit": {"deletes": 0, "deleted_keys": [{"code": "X"}]}},
            r"droit: 1 deleted keys but deletes = 0",
        ),
    ],
    ids=[
        "not-mapping",
        "table-not-mapping",
        "negative",
        "text-count",
        "unknown-field",
        "key-not-dict",
        "more-keys",
    ],
)
def test_change_summary_bad_shape_changeset_error(raw: object, match: str) -> None:
    with pytest.raises(ChangesetError, match=match):
        ChangeSummary.from_dict(raw)


def test_parse_probes_strips_trailing_semicolon() -> None:
    (probe,) = parse_probes([{"name": "p1", "sql": " SELECT 1;  ", "description": "d"}])

    assert (probe.name, probe.sql, probe.description) == ("p1", "SELECT 1", "d")


def test_parse_probes_none_gives_none() -> None:
    assert parse_probes(None) == ()


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"name": "x"}, r"smoke_probes: expected a list"),
        (["SELECT 1"], r"smoke_probes\[0\]: expected a mapping"),
        ([{"name": "bad name", "sql": "SELECT 1"}], r"smoke_probes\[0\]: 'name' must be a short identifier"),
        ([{"name": "p", "sql": " "}], r"smoke_probes\[0\] \(p\): 'sql' must be a non-empty"),
        ([{"name": "p", "sql": "SELECT 1", "timeout": 3}], r"unknown key\(s\) timeout"),
        ([{"name": "p", "sql": "SELECT 1"}, {"name": "p", "sql": "SELECT 2"}], r"name\(s\) used twice: p"),
    ],
    ids=["not-list", "item-not-mapping", "bad-name", "empty-sql", "unknown-key", "duplicate-name"],
)
def test_parse_probes_bad_entry_configuration_error(raw: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_probes(raw)

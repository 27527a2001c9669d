"""Suite files, generated specs and the column check that runs before Great Expectations (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gardien.config import CatalogConfig
from gardien.errors import ConfigurationError
from gardien.validation.introspect import DbForeignKey, SchemaFacts
from gardien.validation.suites import check_specs, generate_specs, load_suite_files, parse_suite

ROOT = Path(__file__).resolve().parents[2]

CATALOG = CatalogConfig.model_validate(
    {
        "schema": "public",
        "tables": [
            {"name": "unite", "natural_key": ["code"]},
            {
                "name": "protocole",
                "natural_key": ["code"],
                "logical_references": [{"column": "services", "references": "unite.code", "separator": ";"}],
            },
            {"name": "ligne", "natural_key": ["protocole_id", "rang"]},
        ],
    }
)
FACTS = SchemaFacts(
    schema="public",
    columns={
        "unite": ("id", "code"),
        "protocole": ("id", "code", "services", "dose_min", "dose_max"),
        "ligne": ("id", "protocole_id", "rang"),
    },
    foreign_keys=(DbForeignKey("ligne_protocole_id_fkey", "ligne", ("protocole_id",), "protocole", ("id",)),),
)


def test_generate_specs_keys_fks_and_logical_references() -> None:
    specs = {s.name: s for s in generate_specs(CATALOG, FACTS)}

    assert specs["ligne: natural key (protocole_id, rang) is unique"].columns == ("protocole_id", "rang")
    assert specs["ligne.rang is not null (natural key)"].kind == "not_null"
    fk = specs["ligne.protocole_id → protocole resolves (foreign key ligne_protocole_id_fkey)"]
    assert fk.params == {"ref_table": "protocole", "ref_columns": ["id"]}
    ref = specs["protocole.services → unite.code resolves exactly (logical reference)"]
    assert ref.params == {"ref_table": "unite", "ref_column": "code", "separator": ";"}
    assert len(specs) == 3 * 1 + 4 + 1 + 1  # not-null per key column, unique per table, one FK, one reference


def test_parse_suite_every_kind_parsed() -> None:
    text = """
table: protocole
expectations:
  - {name: a, type: not_null, column: code}
  - {name: b, type: unique, columns: [code, services]}
  - {name: c, type: in_set, column: code, value_set: [X, Y]}
  - {name: d, type: between, column: dose_max, min: 0, strict_min: true}
  - {name: e, type: match_regex, column: code, regex: "^[A-Z]+$"}
  - {name: f, type: a_greater_than_b, column_a: dose_max, column_b: dose_min, or_equal: true}
  - {name: g, type: unexpected_rows, where: "t.dose_min < 0", description: why}
"""
    specs = parse_suite(text, source="protocole.yaml")

    assert [(s.kind, s.columns) for s in specs] == [
        ("not_null", ("code",)),
        ("unique", ("code", "services")),
        ("in_set", ("code",)),
        ("between", ("dose_max",)),
        ("match_regex", ("code",)),
        ("a_greater_than_b", ("dose_max", "dose_min")),
        ("unexpected_rows", ()),
    ]
    assert specs[3].params == {"min": 0, "strict_min": True}
    assert specs[6].description == "why" and specs[6].suite == "protocole.yaml"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("table: [", r"suite s.yaml: not valid YAML"),
        ("- a", r"suite s.yaml: expected a mapping with 'table'"),
        ("table: t\nowner: me", r"suite s.yaml: unknown key\(s\) owner"),
        ("table: t\nexpectations: {}", r"'expectations' must be a list"),
        ("table: t\nexpectations: [{type: not_null}]", r"expectations\[0\]: each expectation needs a 'name'"),
        ("table: t\nexpectations: [{name: a, type: sql}]", r"expectation 'a': unknown type 'sql'"),
        ("table: t\nexpectations: [{name: a, type: in_set, column: c}]", r"type in_set needs value_set"),
        (
            "table: t\nexpectations: [{name: a, type: not_null, column: c, min: 1}]",
            r"type not_null does not take min",
        ),
        (
            "table: t\nexpectations: [{name: a, type: in_set, column: c, value_set: []}]",
            r"'value_set' must be a non-empty",
        ),
        (
            "table: t\nexpectations: [{name: a, type: between, column: c}]",
            r"type between needs min, max or both",
        ),
        (
            "table: t\nexpectations: [{name: a, type: between, column: c, max: ten}]",
            r"'max' must be a number",
        ),
        (
            "table: t\nexpectations: [{name: a, type: unique, columns: []}]",
            r"'columns' must be a non-empty list",
        ),
        (
            "table: t\nexpectations: [{name: a, type: unexpected_rows, where: ''}]",
            r"'where' must be a non-empty string",
        ),
    ],
    ids=[
        "bad-yaml",
        "not-mapping",
        "unknown-key",
        "expectations-not-list",
        "no-name",
        "unknown-type",
        "missing-param",
        "extra-param",
        "empty-value-set",
        "between-without-bounds",
        "between-text-bound",
        "unique-no-columns",
        "empty-where",
    ],
)
def test_parse_suite_bad_entry_configuration_error(text: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_suite(text, source="s.yaml")


def test_load_suite_files_duplicate_names_configuration_error(tmp_path: Path) -> None:
    for table in ("a", "b"):
        (tmp_path / f"{table}.yaml").write_text(
            f"table: {table}\nexpectations: [{{name: same, type: not_null, column: c}}]"
        )

    with pytest.raises(ConfigurationError, match=r"expectation name\(s\) used twice: \['same'\]"):
        load_suite_files(tmp_path)


def test_load_suite_files_missing_folder_gives_none(tmp_path: Path) -> None:
    assert load_suite_files(tmp_path / "nowhere") == []


def test_load_suite_files_shipped_suites_parse() -> None:
    specs = load_suite_files(ROOT / "include" / "expectations")

    assert {"regle_alerte_dose dose_min <= dose_max", "champ_formulaire.type_champ in domain"} <= {
        s.name for s in specs
    }


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "table: protocole\nexpectations: [{name: x, type: not_null, column: dosage}]",
            r"suite s.yaml: expectation 'x': column 'dosage' does not exist in table 'protocole'",
        ),
        (
            "table: patient\nexpectations: [{name: x, type: not_null, column: ipp}]",
            r"suite s.yaml: expectation 'x': table 'patient' is not a managed table",
        ),
        (
            "table: protocole\nexpectations: [{name: x, type: a_greater_than_b, column_a: dose_max, column_b: dose}]",
            r"column 'dose' does not exist in table 'protocole' \(it has id, code, services, dose_min, dose_max\)",
        ),
    ],
    ids=["missing-column", "unmanaged-table", "missing-pair-column"],
)
def test_check_specs_unknown_name_configuration_error(text: str, match: str) -> None:
    specs = parse_suite(text, source="s.yaml")

    with pytest.raises(ConfigurationError, match=match):
        check_specs(specs, catalog=CATALOG, facts=FACTS)


def test_check_specs_generated_and_valid_suite_accepted() -> None:
    specs = generate_specs(CATALOG, FACTS) + parse_suite(
        "table: protocole\nexpectations: [{name: x, type: a_greater_than_b, column_a: dose_max, column_b: dose_min}]",
        source="s.yaml",
    )

    check_specs(specs, catalog=CATALOG, facts=FACTS)  # no error
    assert len(specs) == 10

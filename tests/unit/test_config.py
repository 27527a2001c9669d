"""The YAML configuration: the demo file loads; every kind of mistake names the file, the place and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gardien.config import load_config, parse_config, resolve_environment
from gardien.errors import ConfigurationError

DEMO = Path(__file__).resolve().parents[2] / "include" / "config" / "gardien.yaml"
ENV = {"GARDIEN_PG_DSN": "postgresql://postgres@127.0.0.1:5432/postgres"}
TABLE = {"name": "unit", "natural_key": ["code"]}


def _doc(**catalog_table):
    return {"catalog": {"tables": [{**TABLE, **catalog_table}]}}


def test_load_config_demo_file_loads_with_catalog_and_environments():
    cfg = load_config(DEMO, environ=ENV)
    assert [t.name for t in cfg.catalog.tables][:2] == ["etablissement", "unite_fonctionnelle"]
    assert cfg.catalog.table("profil_droit").natural_key == ["profil_id", "droit_id"]
    assert cfg.catalog.table("medicament").soft_delete.column == "actif"
    prod = resolve_environment(cfg, "prod")
    assert prod.production and "dbname=gardien_prod" in prod.dsn


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"catalog": {"tables": []}},
            r"<t>: catalog.tables: List should have at least 1 item.*List at least one",
        ),
        (
            {"catalog": {"tables": [TABLE]}, "colour": 1},
            r"<t>: colour: Extra inputs are not permitted. Remove it",
        ),
        (_doc(natual_key=["x"]), r"catalog.tables\[0\].natual_key: Extra inputs"),
        (_doc(name="u" * 64), r"catalog.tables\[0\].name: .u+. is longer than PostgreSQL.s 63 bytes"),
        (_doc(ignore=["code"]), r"natural key column\(s\) \['code'\] cannot also be ignored"),
        (_doc(scope={"code": {"in": [1], "like": "x"}}), r"scope.code: give exactly one of in, not_in"),
        (_doc(delete={"soft": {"column": "actif"}}), r"delete.soft.value: Field required. Add it"),
        (
            _doc(logical_references=[{"column": "c", "references": "nodot"}]),
            r"'nodot' must be written table.column",
        ),
        ({"catalog": {"tables": [TABLE, TABLE]}}, r"table\(s\) \['unit'\] listed more than once"),
        ({"version": 2, "catalog": {"tables": [TABLE]}}, r"<t>: version: Input should be 1"),
        ([1, 2], r"<t>: \(top level\): expected a mapping"),
    ],
    ids=[
        "empty-catalog",
        "unknown-section",
        "misspelt-key",
        "name-too-long",
        "key-ignored",
        "scope-two-rules",
        "soft-without-value",
        "bad-reference",
        "table-twice",
        "bad-version",
        "not-a-mapping",
    ],
)
def test_parse_config_bad_document_names_place_and_fix(doc, message):
    with pytest.raises(ConfigurationError, match=message):
        parse_config(doc, source="<t>", environ={})


def test_parse_config_structured_scope_is_accepted():
    cfg = parse_config(_doc(scope={"code": {"not_like": "LOCAL_%"}, "kind": "A"}), environ={})
    assert cfg.catalog.tables[0].scope["code"].not_like == "LOCAL_%"


@pytest.mark.parametrize(
    ("dsn", "environ", "expected"),
    [
        ("${PGX}", {"PGX": "postgresql://h/db"}, "postgresql://h/db"),
        ("${PGX:-postgresql://d/db}", {}, "postgresql://d/db"),
        ("postgresql://${U}@h/db", {"U": "me"}, "postgresql://me@h/db"),
        ("${A:-${B:-postgresql://d/db}}", {"B": "postgresql://b/db"}, "postgresql://b/db"),
        ("${A:-${B:-postgresql://d/db}}", {}, "postgresql://d/db"),
        ("${A:-${B}}", {"A": "postgresql://a/db"}, "postgresql://a/db"),
        ("${A:-x}/${B:-y}", {}, "x/y"),
        ("${A}", {"A": "postgresql://u:${p}@h/db"}, "postgresql://u:${p}@h/db"),
    ],
    ids=[
        "set",
        "default",
        "inside-string",
        "nested-default",
        "nested-fallback",
        "unset-nested-unused",
        "two",
        "value-verbatim",
    ],
)
def test_parse_config_substitutes_environment_variables(dsn, environ, expected):
    cfg = parse_config({"environments": {"e": {"dsn": dsn}}, "catalog": {"tables": [TABLE]}}, environ=environ)
    assert resolve_environment(cfg, "e").dsn == expected


def test_load_config_missing_variable_names_it_and_the_file(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(
        yaml.safe_dump({"environments": {"e": {"dsn": "${NOPE_VAR}"}}, "catalog": {"tables": [TABLE]}})
    )
    with pytest.raises(
        ConfigurationError, match=rf"{path}: environments.e.dsn: environment variable NOPE_VAR is not set"
    ):
        load_config(path, environ={})


def test_parse_config_nested_default_names_the_innermost_unset_variable():
    doc = {"environments": {"e": {"dsn": "${A:-${B}}"}}, "catalog": {"tables": [TABLE]}}
    with pytest.raises(ConfigurationError, match=r"environment variable B is not set"):
        parse_config(doc, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, r"cannot read the configuration"), ("a: [1,\n", r"not valid YAML")],
    ids=["missing-file", "bad-yaml"],
)
def test_load_config_unreadable_file_is_configuration_error(tmp_path, text, message):
    path = tmp_path / "g.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_config(path, environ={})


def test_resolve_environment_unknown_name_lists_known_ones():
    cfg = load_config(DEMO, environ=ENV)
    with pytest.raises(
        ConfigurationError, match=r"unknown environment 'staging'; known environments: preprod, prod, qualif"
    ):
        resolve_environment(cfg, "staging")


def test_resolve_environment_uri_is_used_as_is():
    cfg = load_config(DEMO, environ=ENV)
    env = resolve_environment(cfg, "postgresql://u:secret@h:5432/db")
    assert env.dsn == "postgresql://u:secret@h:5432/db" and "secret" not in env.name

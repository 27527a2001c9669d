"""DSNs that would silently connect somewhere else are refused: empty variables, empty or bare DSNs,
malformed URIs (exit 3, in the file when used, on the command line at once)."""

from __future__ import annotations

import pytest

from gardien import pg
from gardien.config import parse_config, resolve_environment
from gardien.errors import ConfigurationError

TABLE = {"name": "t", "natural_key": ["code"]}


def _config(dsn: str, environ: dict[str, str], section: str = "environments"):
    doc = {"catalog": {"tables": [TABLE]}}
    doc[section] = {"e": {"dsn": dsn}} if section == "environments" else {"dsn": dsn}
    return parse_config(doc, source="g.yaml", environ=environ)


@pytest.mark.parametrize(
    ("dsn", "environ", "message"),
    [
        ("${PGX}", {"PGX": ""}, r"g.yaml: environments.e.dsn: environment variable PGX is set but empty"),
        ("postgresql://${U}@h/db", {"U": ""}, r"environment variable U is set but empty"),
        ("${PGX}", {}, r"environment variable PGX is not set"),
        ("", {}, r"environments.e.dsn: the PostgreSQL DSN is empty; libpq would connect to its defaults"),
        ("   ", {}, r"the PostgreSQL DSN is empty"),
        ("postgresql://", {}, r"names no host, database or user"),
        ("postgresql://u:s3cret@h:54x32/db", {}, r"port '54x32' is not a port number"),
    ],
    ids=["empty-var", "empty-var-inside", "unset-var", "empty", "blank", "bare-uri", "bad-port"],
)
def test_config_dsn_that_libpq_would_fill_in_or_cannot_parse_is_refused(dsn, environ, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        _config(dsn, environ)
    assert "s3cret" not in str(caught.value)


def test_config_empty_variable_in_ledger_dsn_is_refused():
    with pytest.raises(ConfigurationError, match=r"ledger.dsn: environment variable L is set but empty"):
        _config("${L}", {"L": ""}, section="ledger")


def test_config_empty_variable_with_default_uses_the_default():
    cfg = _config("${PGX:-postgresql://d/db}", {"PGX": ""})
    assert resolve_environment(cfg, "e").dsn == "postgresql://d/db"


@pytest.mark.parametrize(
    "uri",
    ["postgresql://[::1/db", "postgresql://%zz@h/db", "postgresql://u:s3cret@h:0/db", "postgres://"],
    ids=["ipv6", "percent", "port-zero", "bare"],
)
def test_resolve_environment_malformed_uri_is_a_configuration_error(uri):
    cfg = _config("postgresql://h/db", {})
    with pytest.raises(ConfigurationError, match=r"command line: .*PostgreSQL DSN") as caught:
        resolve_environment(cfg, uri)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://h/db?sslmode=bogus", r'invalid sslmode value: "bogus"'),
        ("host=127.0.0.1 port=99999 dbname=x", r"invalid port number"),
    ],
    ids=["sslmode", "port-range"],
)
def test_connect_refused_parameter_is_a_configuration_error_not_an_outage(dsn, message):
    with pytest.raises(ConfigurationError, match=message):
        pg.connect(dsn, connect_timeout=2)


def test_config_dsn_libpq_cannot_parse_is_refused_when_used_not_at_load():
    cfg = _config("postgresql://u:Pa%zz@h/db", {})  # a section nobody uses must not stop every command
    with pytest.raises(ConfigurationError, match=r"invalid PostgreSQL DSN") as caught:
        pg.connect(resolve_environment(cfg, "e").dsn, connect_timeout=2)
    assert "Pa%zz" not in str(caught.value)

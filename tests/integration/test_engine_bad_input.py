"""Bad input on real PostgreSQL: each gets a clear error and changes nothing."""

from __future__ import annotations

import pytest
from test_engine_support import BASE_STATE, NOW, catalog_config, database_pair, execute, load, physical, reset

from gardien.apply import deploy
from gardien.catalog import bind_catalog
from gardien.diff import diff
from gardien.errors import ChangesetError, ConfigurationError, SourceDataError
from gardien.pg import connect

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def databases(pg_admin_dsn):
    with database_pair(pg_admin_dsn, "bad") as dsns:
        yield dsns


@pytest.fixture
def pair(databases):
    for dsn in databases:
        reset(dsn)
    yield databases
    for dsn in databases:  # undo schema edits made by a test
        execute(dsn, "DROP TABLE IF EXISTS extra; ALTER TABLE unit DROP COLUMN IF EXISTS note")
        execute(dsn, "ALTER TABLE unit ALTER COLUMN budget TYPE numeric(10,2)")


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("INSERT INTO param (cle, valeur) VALUES (NULL, 'v')", r"NULL natural-key column \(cle\)"),
        ("INSERT INTO param (cle, valeur) VALUES ('P1', 'dup')", r"duplicate natural key \[\"P1\"\]"),
    ],
    ids=["null-key", "duplicate-key"],
)
def test_diff_bad_source_keys_are_listed(pair, statement, message):
    source, target = pair
    load(source, BASE_STATE)
    execute(source, statement)
    with pytest.raises(SourceDataError, match=message):
        diff(source, target, catalog_config=catalog_config())


def test_diff_reference_to_missing_key_names_row_key_and_nearest(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE param SET unit_codes = 'U1; u2 ' WHERE cle = 'P1'")
    with pytest.raises(
        SourceDataError,
        match=r'param \["P1"\]: unit_codes refers to unit \[" u2 "\], which will not exist in the target '
        r'\(nearest existing key: \["U2"\]',
    ):
        diff(source, target, catalog_config=catalog_config())


def test_apply_reference_to_key_deleted_in_target_since_capture_is_refused(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE param SET unit_codes = 'U3' WHERE cle = 'P2'")
    changeset = diff(source, target, catalog_config=catalog_config())
    execute(target, "DELETE FROM grant_ WHERE unit_id = (SELECT id FROM unit WHERE code = 'U3')")
    execute(target, "DELETE FROM unit WHERE code = 'U3'")
    before = physical(target)
    with pytest.raises(
        SourceDataError, match=r'param \["P2"\]: unit_codes refers to unit \["U3"\], which will not exist'
    ):
        deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert physical(target) == before


def test_apply_changeset_made_for_another_catalog_is_refused(pair):
    source, target = pair
    load(source, BASE_STATE)
    changeset = diff(source, target, catalog_config=catalog_config())
    other = catalog_config({"tables": [*catalog_config().model_dump(by_alias=True)["tables"][:1]]})
    with pytest.raises(ChangesetError, match="made for another catalog"):
        deploy(target, changeset, catalog_config=other, target="tgt", applied_at=NOW)
    assert physical(target)["site"] == []


@pytest.mark.parametrize(
    ("side", "statement", "message"),
    [
        (
            "tgt",
            "ALTER TABLE unit ALTER COLUMN budget TYPE numeric(12,2)",
            r"unit.budget: type numeric\(10,2\) in src, numeric\(12,2\) in tgt",
        ),
        ("src", "ALTER TABLE unit ADD COLUMN note text", r"unit.note: in src but missing from tgt"),
    ],
    ids=["type-mismatch", "target-missing-column"],
)
def test_diff_schema_mismatch_between_environments_is_named(pair, side, statement, message):
    source, target = pair
    execute(target if side == "tgt" else source, statement)
    from gardien.diff import diff_connections

    src, tgt = connect(source), connect(target)
    try:
        with pytest.raises(ConfigurationError, match=message):
            diff_connections(
                src, tgt, catalog_config=catalog_config(), source_label="src", target_label="tgt"
            )
    finally:
        src.close()
        tgt.close()


@pytest.mark.parametrize(
    ("overrides", "setup", "message"),
    [
        ({"tables": [{"name": "nope", "natural_key": ["code"]}]}, None, r"has no table 'nope'"),
        ({"tables": [{"name": "unit", "natural_key": ["kode"]}]}, None, r"natural_key names column 'kode'"),
        (
            {"tables": [{"name": "unit", "natural_key": ["code"]}]},
            None,
            r"unit.site_id references public.site, which is not managed.*Add site to catalog.tables",
        ),
        (
            {"tables": [{"name": "extra", "natural_key": ["code"]}]},
            "CREATE TABLE extra (code text PRIMARY KEY, a int, b int, UNIQUE (a, b))",
            None,
        ),
        (
            {"tables": [{"name": "extra", "natural_key": ["code"]}]},
            "CREATE TABLE extra (code text, val int)",
            r"table 'extra' needs a single-column primary key",
        ),
    ],
    ids=["unknown-table", "unknown-column", "fk-to-unmanaged", "natural-primary-key-ok", "no-primary-key"],
)
def test_bind_catalog_refuses_what_the_database_lacks(pair, overrides, setup, message):
    source, _ = pair
    if setup:
        execute(source, setup)
    conn = connect(source)
    try:
        if message is None:
            assert bind_catalog(conn, catalog_config(overrides)).table("extra").pk == "code"
        else:
            with pytest.raises(ConfigurationError, match=message):
                bind_catalog(conn, catalog_config(overrides))
    finally:
        conn.close()

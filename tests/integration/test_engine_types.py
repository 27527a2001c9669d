"""Every type a configuration table may carry goes through diff → apply → re-diff → rollback faithfully.

The type zoo (type_zoo.py) holds json and jsonb (key order, nesting, SQL NULL vs JSON null), arrays (text,
integer, numeric, jsonb; NULL elements, multi-dimensional, empty), bytea with zero bytes, numeric and float
special values, unicode look-alikes, '' vs NULL vs 'NULL', every date/time type, uuid, inet/cidr, an enum,
a domain with a CHECK, a composite, ranges, citext, bit strings, money and xml. After the apply, the target
holds exactly the source's rows (each column as PostgreSQL renders it) and a new diff is empty; after the
rollback, ``SELECT t::text`` of every row equals what it was, byte for byte.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from type_zoo import (
    EDGE_ROWS,
    catalog_config,
    content,
    execute,
    insert,
    query,
    reset,
    stored,
    zoo_pair,
    zoo_rows,
)

from gardien import pg
from gardien.apply import deploy
from gardien.catalog import bind_catalog
from gardien.config import parse_config
from gardien.diff import diff
from gardien.errors import ConfigurationError
from gardien.rollback import rollback

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 3, 3, 20, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def zoo(pg_admin_dsn):
    with zoo_pair(pg_admin_dsn) as dsns:
        yield dsns


def _round_trip(source: str, target: str) -> None:
    """diff → apply → the target holds the source's content, re-diff empty → rollback restores it exactly."""
    original = stored(target)
    changeset = diff(source, target, catalog_config=catalog_config())
    result = deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert content(target) == content(source)
    again = diff(source, target, catalog_config=catalog_config())
    assert again.is_empty, again.counts()
    assert again.source_fingerprint == again.target_fingerprint
    if result.status != "applied":
        assert changeset.is_empty
        return
    assert result.matches_source
    proof = rollback(
        target, result.deployment_id, catalog_config=catalog_config(), target="tgt", rolled_back_at=NOW
    )
    assert proof.proven
    assert stored(target) == original


def test_json_values_are_stored_as_json_not_as_strings(zoo):
    """Issue 13 item 1: a new row and a changed array, in jsonb and json columns."""
    source, target = zoo
    for dsn in zoo:
        reset(dsn)
    insert(source, {"old": {"j": "[1, 2]", "js": "[1]"}, "new": {"j": '{"x":1}', "js": '{"x":1}'}})
    insert(target, {"old": {"j": "[1]", "js": "[1]"}})
    changeset = diff(source, target, catalog_config=catalog_config())
    deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert query(
        target, "SELECT code, jsonb_typeof(j), json_typeof(js), js::text FROM zoo ORDER BY code"
    ) == [("new", "object", "object", '{"x":1}'), ("old", "array", "array", "[1]")]
    assert diff(source, target, catalog_config=catalog_config()).is_empty


@pytest.mark.parametrize("code", sorted(EDGE_ROWS))
def test_edge_value_is_inserted_updated_deleted_and_restored_faithfully(zoo, code):
    source, target = zoo
    for dsn in zoo:
        reset(dsn)
    values = EDGE_ROWS[code]
    # insert: the row is new in the target
    insert(
        source, {code: values}, [(code, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-02-29", "NULL", "null")]
    )
    _round_trip(source, target)
    # update: the target holds the row with every column NULL (and the reverse)
    insert(target, {code: {}})
    _round_trip(source, target)
    _round_trip(target, source)
    # delete: the source lacks the row
    reset(source)
    _round_trip(source, target)


def test_every_edge_value_at_once_between_databases_with_different_ids(zoo):
    source, target = zoo
    for dsn in zoo:
        reset(dsn)
    insert(source, EDGE_ROWS)
    # The target holds the same codes in another order (other ids) with other values: all updates.
    insert(
        target, {code: EDGE_ROWS[other] for code, other in zip(EDGE_ROWS, reversed(EDGE_ROWS), strict=True)}
    )
    _round_trip(source, target)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(source_rows=zoo_rows(), target_rows=zoo_rows())
def test_random_values_of_every_type_round_trip(zoo, source_rows, target_rows):
    source, target = zoo
    for dsn in zoo:
        reset(dsn)
    insert(source, source_rows)
    insert(target, target_rows)
    _round_trip(source, target)


REFUSED = [
    ("oid", "oid", "oid"),
    ("regclass", "regclass", "regclass"),
    ("regtype array", "regtype[]", "regtype"),
    ("domain over oid", "lo_ref", "oid"),
    ("composite holding regproc", "callback", "regproc"),
    ("unbounded bpchar", "bpchar", "bpchar"),
    ("tid", "tid", "tid"),
    ("generated column", "integer GENERATED ALWAYS AS (id * 2) STORED", "generated"),
]


@pytest.mark.parametrize(("typ", "named"), [(t, n) for _, t, n in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_catalog_refuses_a_type_it_cannot_carry_faithfully_naming_it(make_db, typ, named):
    dsn = make_db("types")
    execute(dsn, "CREATE DOMAIN lo_ref AS oid; CREATE TYPE callback AS (fn regproc, arg text)")
    execute(dsn, f"CREATE TABLE odd (id integer PRIMARY KEY, code text UNIQUE, v {typ}, ok jsonb)")
    config = parse_config(
        {"catalog": {"schema": "public", "tables": [{"name": "odd", "natural_key": ["code"]}]}}
    )
    conn = pg.connect(dsn)
    try:
        with pytest.raises(ConfigurationError, match=rf"odd\.v.*\b{named}\b") as caught:
            bind_catalog(conn, config.catalog, label="qualif")
    finally:
        conn.close()
    assert "odd.ok" not in str(caught.value)
    assert "ignore" in str(caught.value)


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("vc", "x" * 13, "value too long"),
        ("bt", "10101", "bit string length"),
        ("dom", "lower", "code_court"),
    ],
    ids=["varchar-too-long", "bit-too-long", "domain-check"],
)
def test_value_that_does_not_fit_the_column_is_refused_not_truncated(zoo, column, value, words):
    """A (forged) value longer than varchar(12) or bit(4), or failing a domain's CHECK: the target refuses
    the whole apply, as an INSERT would; an explicit cast would have truncated it silently."""
    import hashlib
    import json

    from gardien.changeset import Changeset
    from gardien.errors import DeploymentError

    source, target = zoo
    for dsn in zoo:
        reset(dsn)
    insert(source, {"A": {column: {"vc": "x", "bt": "1010", "dom": "OK"}[column]}})
    body = diff(source, target, catalog_config=catalog_config()).to_dict()["changeset"]
    zoo_table = next(t for t in body["tables"] if t["table"] == "zoo")
    zoo_table["inserts"][0]["values"][column] = value
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    forged = Changeset.from_json(
        json.dumps({"id": hashlib.sha256(canonical.encode()).hexdigest(), "changeset": body})
    )
    with pytest.raises(DeploymentError, match=words):
        deploy(target, forged, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert stored(target) == []

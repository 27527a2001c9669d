"""Property-based round trips on real PostgreSQL: diff → apply → rollback over random pairs of states."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_support import NOW, by_natural_keys, catalog_config, database_pair, load, physical, reset

from gardien.apply import deploy
from gardien.diff import diff
from gardien.rollback import rollback

pytestmark = pytest.mark.integration

SITES = ["S1", "S2", "S3"]
UNITS = ["U1", "U2", "U3", "U4", "U5"]


@st.composite
def states(draw: st.DrawFn) -> dict:
    """A consistent configuration: units on live sites, a random unit forest, grants and parameters whose
    logical references name existing units, with a random surrogate-id layout (insertion order)."""
    site_codes = draw(st.lists(st.sampled_from(SITES), min_size=1, unique=True))
    sites = {c: (draw(st.sampled_from(["Nord", "Sud"])), draw(st.booleans())) for c in site_codes}
    live = [c for c, (_, actif) in sites.items() if actif]
    units = []
    if live:
        codes = draw(st.lists(st.sampled_from(UNITS), unique=True))
        for i, code in enumerate(codes):
            parent = draw(st.one_of(st.none(), st.sampled_from(codes[:i]))) if i else None
            units.append(
                (
                    code,
                    draw(st.sampled_from(["A", "B"])),
                    draw(st.sampled_from(live)),
                    parent,
                    draw(st.sampled_from([None, "1.50", "2.00"])),
                )
            )
    unit_codes = [u[0] for u in units]
    grants = []
    if unit_codes:
        pairs = draw(
            st.lists(st.tuples(st.sampled_from(unit_codes), st.sampled_from(["r1", "r2"])), unique=True)
        )
        grants = [(u, r, draw(st.integers(1, 3))) for u, r in pairs]
    params = []
    for cle in draw(st.lists(st.sampled_from(["P1", "P2", "LOCAL_X"]), unique=True)):
        refs = draw(st.lists(st.sampled_from(unit_codes), unique=True)) if unit_codes else []
        params.append((cle, draw(st.sampled_from(["x", "y"])), ";".join(refs)))
    return {"sites": sites, "units": units, "grants": grants, "params": params}


@pytest.fixture(scope="module")
def databases(pg_admin_dsn):
    with database_pair(pg_admin_dsn, "prop") as dsns:
        yield dsns


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source_state=states(), target_state=states())
def test_roundtrip_apply_equals_source_and_rollback_restores_original(databases, source_state, target_state):
    source, target = databases
    for dsn in databases:
        reset(dsn)
    load(source, source_state)
    load(target, target_state)
    original = physical(target)
    changeset = diff(source, target, catalog_config=catalog_config())
    result = deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)

    assert by_natural_keys(target) == by_natural_keys(source)
    assert diff(source, target, catalog_config=catalog_config()).is_empty

    if result.status == "applied":
        proof = rollback(
            target, result.deployment_id, catalog_config=catalog_config(), target="tgt", rolled_back_at=NOW
        )
        assert proof.proven
    assert physical(target) == original

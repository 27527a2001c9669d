"""Rollback on real PostgreSQL: exact restoration, proof, refusal over later deployments, re-runs."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from test_engine_support import (
    BASE_STATE,
    NOW,
    catalog_config,
    database_pair,
    execute,
    load,
    local_fingerprint,
    physical,
    query,
    reset,
)

from gardien.apply import deploy
from gardien.diff import diff
from gardien.errors import RollbackError
from gardien.rollback import rollback

pytestmark = pytest.mark.integration
LATER = NOW + dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def databases(pg_admin_dsn):
    with database_pair(pg_admin_dsn, "rollback") as dsns:
        yield dsns


@pytest.fixture
def pair(databases):
    for dsn in databases:
        reset(dsn)
    return databases


def _deploy(source, target, at=NOW):
    changeset = diff(source, target, catalog_config=catalog_config())
    return deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=at)


def _rollback(target, deployment_id, **kwargs):
    return rollback(
        target, deployment_id, catalog_config=catalog_config(), target="tgt", rolled_back_at=LATER, **kwargs
    )


def _changed_source(source):
    state = copy.deepcopy(BASE_STATE)
    state["sites"]["S3"] = ("Est", True)
    state["units"] = [
        ("U1", "Urgences adultes", "S1", "U2", "11.00"),
        ("U2", "Cardio", "S3", None, None),
        ("U4", "Neuro", "S3", "U1", None),
    ]
    state["grants"] = [("U1", "infirmier", 2), ("U4", "medecin", 1)]
    state["params"] = [("P1", "z", "U4"), ("P3", "new", "")]
    load(source, state)


def test_rollback_restores_target_exactly_and_proves_it(pair):
    source, target = pair
    load(target, BASE_STATE)
    execute(target, "UPDATE site SET actif = false WHERE code = 'S2'")
    original = physical(target)
    _changed_source(source)
    deployed = _deploy(source, target)
    assert physical(target) != original
    result = _rollback(target, deployed.deployment_id)
    assert (result.status, result.proven) == ("rolled_back", True)
    # The proof compares LOCAL fingerprints (stored rows, ids included); the portable one is kept beside.
    assert result.fingerprint_restored == result.fingerprint_expected
    (proof,) = query(target, "SELECT rollback_proof FROM gardien.deployment")[0]
    assert proof["method"] == "local" and proof["portable_before"] == deployed.fingerprint_before
    assert physical(target) == original  # ids included: deleted rows come back with their former ids


def test_rollback_twice_reports_already_rolled_back(pair):
    source, target = pair
    load(source, BASE_STATE)
    deployed = _deploy(source, target)
    _rollback(target, deployed.deployment_id)
    state = physical(target)
    again = _rollback(target, deployed.deployment_id)
    assert (again.status, again.proven) == ("already_rolled_back", True)
    assert physical(target) == state


def test_rollback_then_reapply_applies_again(pair):
    source, target = pair
    load(source, BASE_STATE)
    changeset = diff(source, target, catalog_config=catalog_config())
    first = deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    _rollback(target, first.deployment_id)
    second = deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=LATER)
    assert second.status == "applied" and second.deployment_id != first.deployment_id


def test_rollback_refused_when_later_deployment_touched_same_rows_unless_forced(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET label = 'v2' WHERE code = 'U1'")
    first = _deploy(source, target)
    execute(source, "UPDATE unit SET label = 'v3' WHERE code = 'U1'")
    second = _deploy(source, target, at=LATER)
    with pytest.raises(
        RollbackError, match=f"later deployment\\(s\\) {second.deployment_id} changed the same rows"
    ):
        _rollback(target, first.deployment_id)
    assert query(target, "SELECT label FROM unit WHERE code = 'U1'") == [("v3",)]
    forced = _rollback(target, first.deployment_id, force=True)
    assert forced.forced_over == (second.deployment_id,)
    assert query(target, "SELECT label FROM unit WHERE code = 'U1'") == [("Urgences",)]


def test_rollback_not_refused_for_later_deployment_on_other_rows(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET label = 'v2' WHERE code = 'U1'")
    first = _deploy(source, target)
    execute(source, "UPDATE unit SET label = 'v2' WHERE code = 'U2'")
    _deploy(source, target, at=LATER)
    assert _rollback(target, first.deployment_id).proven
    assert query(target, "SELECT code, label FROM unit WHERE code IN ('U1', 'U2') ORDER BY 1") == [
        ("U1", "Urgences"),
        ("U2", "v2"),
    ]


def test_rollback_unprovable_says_manual_repair_and_leaves_target_deployed(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET label = 'v2' WHERE code = 'U1'")
    deployed = _deploy(source, target)
    execute(target, "UPDATE unit SET label = 'hand edit' WHERE code = 'U3'")  # untouched row, same table
    state = physical(target)
    with pytest.raises(
        RollbackError, match=r"(?s)manual repair needed: .*table\(s\) unit.*still exactly as it was"
    ):
        _rollback(target, deployed.deployment_id)
    assert physical(target) == state
    assert query(target, "SELECT rolled_back_at FROM gardien.deployment") == [(None,)]


def test_rollback_unknown_deployment_is_refused(pair):
    source, target = pair
    load(source, BASE_STATE)
    deployed = _deploy(source, target)
    with pytest.raises(
        RollbackError, match=f"no deployment 'dep-nope' \\(latest: {deployed.deployment_id}\\)"
    ):
        _rollback(target, "dep-nope")


def test_rollback_local_proof_detects_an_id_changed_on_an_untouched_row(pair):
    # Invisible to the portable fingerprint (ids never enter it), so this is the local proof at work.
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE param SET valeur = 'x2' WHERE cle = 'P1'")
    deployed = _deploy(source, target)
    execute(target, "UPDATE param SET id = 999 WHERE cle = 'P2'")
    state = physical(target)
    with pytest.raises(RollbackError, match=r"(?s)manual repair needed: .*table\(s\) param.*did not touch"):
        _rollback(target, deployed.deployment_id)
    assert physical(target) == state


def test_rollback_local_proof_names_a_touched_row_recreated_with_another_id(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE param SET valeur = 'x2' WHERE cle = 'P1'")
    deployed = _deploy(source, target)
    (old_id,) = query(target, "SELECT id FROM param WHERE cle = 'P1'")[0]
    execute(
        target,
        "DELETE FROM param WHERE cle = 'P1'; "
        "INSERT INTO param (id, cle, valeur, unit_codes) VALUES (9000, 'P1', 'x2', 'U1;U2')",
    )
    with pytest.raises(
        RollbackError,
        # Refused before anything is written: the row the deployment left is no longer there.
        match=rf'param \["P1"\]: present after the deployment \(id {old_id}\), re-created since as id 9000',
    ):
        _rollback(target, deployed.deployment_id)


def test_rollback_of_a_deployment_journaled_without_local_fingerprints_uses_the_portable_proof(pair):
    # Deployments journaled by the previous build carry only the portable fingerprints.
    source, target = pair
    load(target, BASE_STATE)
    original = physical(target)
    _changed_source(source)
    deployed = _deploy(source, target)
    execute(
        target,
        "UPDATE gardien.deployment SET fingerprint_before = fingerprint_before - 'local', "
        "fingerprint_after = fingerprint_after - 'local'",
    )
    result = _rollback(target, deployed.deployment_id)
    assert (
        result.proven
        and result.fingerprint_restored == result.fingerprint_expected == deployed.fingerprint_before
    )
    (proof,) = query(target, "SELECT rollback_proof FROM gardien.deployment")[0]
    assert proof["method"] == "portable"
    assert physical(target) == original


def test_rollback_over_a_later_legacy_deployment_on_other_rows_uses_the_portable_proof(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET label = 'v2' WHERE code = 'U1'")
    first = _deploy(source, target)
    execute(source, "UPDATE unit SET label = 'v2' WHERE code = 'U2'")
    second = _deploy(source, target, at=LATER)
    execute(
        target,
        "UPDATE gardien.deployment SET fingerprint_after = fingerprint_after - 'local' WHERE deployment_id = %s",
        (second.deployment_id,),
    )
    assert _rollback(target, first.deployment_id).proven
    (proof,) = query(
        target,
        "SELECT rollback_proof FROM gardien.deployment WHERE deployment_id = %s",
        (first.deployment_id,),
    )[0]
    assert proof["method"] == "portable"


def test_rollback_of_a_deployment_journaled_with_local1_fingerprints_proves_them_in_that_scheme(pair):
    # The build before local/2 journaled local/1 sums without a scheme mark.
    import json

    source, target = pair
    load(target, BASE_STATE)
    original = physical(target)
    before = local_fingerprint(target, "local/1")
    _changed_source(source)
    deployed = _deploy(source, target)
    after = local_fingerprint(target, "local/1")
    (fp_before, fp_after) = query(
        target, "SELECT fingerprint_before, fingerprint_after FROM gardien.deployment"
    )[0]
    touched = [t["table"] for t in fp_before["local"]["tables"]]
    for fp, local in ((fp_before, before), (fp_after, after)):
        fp["local"] = local.restricted(touched).to_dict()  # no "scheme" key, as that build wrote it
    execute(
        target,
        "UPDATE gardien.deployment SET fingerprint_before = %s::jsonb, fingerprint_after = %s::jsonb",
        (json.dumps(fp_before), json.dumps(fp_after)),
    )
    result = _rollback(target, deployed.deployment_id)
    assert result.proven
    (proof,) = query(target, "SELECT rollback_proof FROM gardien.deployment")[0]
    assert (proof["method"], proof["scheme"]) == ("local", "local/1")
    assert physical(target) == original


def test_rollback_journaled_by_a_version_whose_fingerprints_cannot_be_recomputed_is_refused_untouched(pair):
    source, target = pair
    load(target, BASE_STATE)
    _changed_source(source)
    deployed = _deploy(source, target)
    as_deployed = physical(target)
    execute(
        target,
        "UPDATE gardien.deployment SET fingerprint_before = (fingerprint_before - 'local') "
        "|| '{\"scheme\": \"gardien.rowhash/1\"}', fingerprint_after = fingerprint_after - 'local' - 'scheme'",
    )
    with pytest.raises(
        RollbackError,
        match=r"cannot be rolled back with a proof by this Gardien version.*"
        r"Nothing was changed",
    ):
        _rollback(target, deployed.deployment_id)
    assert physical(target) == as_deployed
    assert query(target, "SELECT rolled_back_at FROM gardien.deployment") == [(None,)]

"""Diff and apply on real PostgreSQL: id remapping, renames, trees, three-way check, re-apply, journal."""

from __future__ import annotations

import copy

import psycopg2
import pytest
from test_engine_support import (
    BASE_STATE,
    NOW,
    by_natural_keys,
    catalog_config,
    database_pair,
    execute,
    load,
    physical,
    query,
    reset,
)

from gardien.apply import Timeouts, deploy
from gardien.diff import diff
from gardien.errors import ConflictError, DeploymentError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def databases(pg_admin_dsn):
    with database_pair(pg_admin_dsn, "apply") as dsns:
        yield dsns


@pytest.fixture
def pair(databases):
    for dsn in databases:
        reset(dsn)
    return databases  # the target's ids start at 500: every id differs between the environments


def _carry(source: str, target: str, **kwargs):
    changeset = diff(source, target, catalog_config=catalog_config())
    result = deploy(
        target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW, **kwargs
    )
    return changeset, result


def test_apply_every_id_differs_target_equals_source_by_natural_keys(pair):
    source, target = pair
    load(source, BASE_STATE)
    changeset, result = _carry(source, target)
    assert result.status == "applied"
    assert by_natural_keys(target) == by_natural_keys(source)
    source_ids = {r[0] for r in query(source, "SELECT id FROM unit")}
    target_ids = {r[0] for r in query(target, "SELECT id FROM unit")}
    assert source_ids.isdisjoint(target_ids)
    crosswalk = dict(result.crosswalk["unit"])
    assert crosswalk == {(code,): i for i, code in query(target, "SELECT id, code FROM unit")}
    assert result.matches_source is True
    assert diff(source, target, catalog_config=catalog_config()).is_empty


def test_apply_natural_key_rename_cascades_to_referencing_rows(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET code = 'U1-NEW' WHERE code = 'U1'")
    execute(source, "UPDATE param SET unit_codes = 'U1-NEW;U2' WHERE cle = 'P1'")
    changeset, _ = _carry(source, target)
    counts = changeset.counts()
    assert counts["unit"] == {"inserts": 1, "updates": 1, "deletes": 1}  # U2's parent follows the rename
    assert counts["grant_"] == {
        "inserts": 1,
        "updates": 0,
        "deletes": 1,
    }  # the grant's key holds the unit key
    assert by_natural_keys(target) == by_natural_keys(source)


def test_apply_self_referencing_tree_reordered(pair):
    source, target = pair
    load(target, BASE_STATE)  # U1 <- U2 <- U3
    state = copy.deepcopy(BASE_STATE)
    state["units"] = [
        ("U1", "Urgences", "S1", "U2", "10.00"),
        ("U2", "Cardio", "S1", "U3", None),
        ("U3", "Pediatrie", "S2", None, "5.50"),
        ("U4", "Neuro", "S2", "U1", None),  # a new leaf under a moved node
    ]
    load(source, state)
    _carry(source, target)
    assert by_natural_keys(target) == by_natural_keys(source)


def test_apply_overlapping_field_conflict_aborts_and_applies_nothing(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET label = 'Urgences adultes' WHERE code = 'U1'")
    execute(source, "INSERT INTO param (cle, valeur) VALUES ('P9', 'new')")
    changeset = diff(source, target, catalog_config=catalog_config())
    execute(target, "UPDATE unit SET label = 'Urgences (prod fix)' WHERE code = 'U1'")
    before = physical(target)
    with pytest.raises(
        ConflictError, match=r"unit \[\"U1\"\] label: baseline 'Urgences', now 'Urgences \(prod fix\)'"
    ):
        deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert physical(target) == before
    assert query(target, "SELECT to_regclass('gardien.deployment') IS NULL") == [(True,)]


@pytest.mark.parametrize(
    ("target_edit", "wanted_conflict"),
    [
        ("DELETE FROM grant_ WHERE role = 'infirmier'", r"grant_ \[\[\"U1\"\],\"infirmier\"\] \*"),
        (
            "INSERT INTO param (cle, valeur) VALUES ('P9', 'other')",
            r"param \[\"P9\"\] valeur: baseline '<absent>'",
        ),
        ("UPDATE param SET valeur = 'changed' WHERE cle = 'P2'", r"param \[\"P2\"\] valeur: baseline 'y'"),
    ],
    ids=["updated-row-deleted", "inserted-key-exists-differently", "deleted-row-changed"],
)
def test_apply_row_level_conflict_aborts(pair, target_edit, wanted_conflict):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE grant_ SET level = 9 WHERE role = 'infirmier'")
    execute(source, "INSERT INTO param (cle, valeur) VALUES ('P9', 'new')")
    execute(source, "DELETE FROM param WHERE cle = 'P2'")
    changeset = diff(source, target, catalog_config=catalog_config())
    execute(target, target_edit)
    before = physical(target)
    with pytest.raises(ConflictError, match=wanted_conflict):
        deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert physical(target) == before


def test_apply_unrelated_drift_is_applied_and_reported(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET label = 'Urgences adultes' WHERE code = 'U1'")
    changeset = diff(source, target, catalog_config=catalog_config())
    execute(target, "UPDATE unit SET budget = 12.00 WHERE code = 'U1'")  # same row, other field
    result = deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert [(d.table, d.key, d.field, d.baseline, d.now) for d in result.drift] == [
        ("unit", ("U1",), "budget", "10.00", "12.00")
    ]
    assert query(target, "SELECT label, budget::text FROM unit WHERE code = 'U1'") == [
        ("Urgences adultes", "12.00")
    ]
    assert result.matches_source is False


def test_apply_already_there_field_is_not_a_conflict(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET label = 'Same' WHERE code = 'U1'")
    changeset = diff(source, target, catalog_config=catalog_config())
    execute(target, "UPDATE unit SET label = 'Same' WHERE code = 'U1'")
    result = deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert result.counts == {}
    assert by_natural_keys(target) == by_natural_keys(source)


def test_apply_twice_is_a_noop(pair):
    source, target = pair
    load(source, BASE_STATE)
    changeset, first = _carry(source, target)
    state = physical(target)
    second = deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert (second.status, second.deployment_id) == ("already_applied", first.deployment_id)
    assert physical(target) == state
    assert query(target, "SELECT count(*) FROM gardien.deployment") == [(1,)]


def test_apply_empty_changeset_is_normal(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    changeset, result = _carry(source, target)
    assert changeset.is_empty and changeset.tables == ()
    assert result.status == "empty"


def test_apply_soft_delete_retires_and_revives_rows(pair):
    source, target = pair
    state = copy.deepcopy(BASE_STATE)
    state["sites"]["S3"] = ("Est", True)
    load(target, state)
    execute(target, "UPDATE site SET actif = false WHERE code = 'S2'")
    load(source, BASE_STATE)  # S2 live in the source, S3 absent
    changeset, _ = _carry(source, target)
    assert changeset.counts()["site"] == {"inserts": 1, "updates": 0, "deletes": 1}
    assert query(target, "SELECT code, actif FROM site ORDER BY code") == [
        ("S1", True),
        ("S2", True),
        ("S3", False),
    ]
    assert by_natural_keys(target) == by_natural_keys(source)


def test_apply_records_journal_with_before_images_and_crosswalk(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET label = 'X' WHERE code = 'U3'")
    _, result = _carry(source, target, release_id="R-42", release_label="mardi soir")
    rows = query(
        target,
        "SELECT changeset_id, release_id, release_label, before_images, crosswalk FROM gardien.deployment "
        "WHERE deployment_id = %s",
        (result.deployment_id,),
    )
    cs_id, release_id, label, images, crosswalk = rows[0]
    assert (cs_id, release_id, label) == (result.changeset_id, "R-42", "mardi soir")
    # Journal format 3: the whole row as it was is the only before-image, column names once per table.
    (key, row_id, row), columns = images["unit"]["images"][0], images["unit"]["columns"]
    assert (key, dict(zip(columns, row, strict=True))["label"]) == (["U3"], "Pediatrie")
    assert str(row_id) == dict(zip(columns, row, strict=True))["id"] == str(crosswalk["unit"][0][1])
    assert crosswalk == {"unit": [[["U3"], query(target, "SELECT id FROM unit WHERE code = 'U3'")[0][0]]]}


def test_apply_lock_held_elsewhere_is_deployment_error(pair):
    source, target = pair
    load(source, BASE_STATE)
    changeset = diff(source, target, catalog_config=catalog_config())
    holder = psycopg2.connect(target, application_name="other-deployer")
    try:
        with holder.cursor() as cur:
            import zlib

            cur.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", (0x47415244, zlib.crc32(b"public") & 0x7FFFFFFF)
            )
            with pytest.raises(DeploymentError, match="locked by another deployment .*other-deployer"):
                deploy(
                    target,
                    changeset,
                    catalog_config=catalog_config(),
                    target="tgt",
                    applied_at=NOW,
                    timeouts=Timeouts(lock_ms=50),
                )
    finally:
        holder.rollback()
        holder.close()
    assert query(target, "SELECT count(*) FROM unit") == [(0,)]


def test_apply_fingerprints_are_the_same_with_and_without_the_concurrent_snapshot_readers(pair):
    # deploy() computes the full-scope fingerprints on two connections sharing the apply's snapshot;
    # apply_changeset() on a bare connection computes them itself. Both must journal the same values, and
    # the journaled "after" must equal a fresh full scan of the applied target.
    from gardien.apply import apply_changeset
    from gardien.catalog import bind_catalog
    from gardien.fingerprint import ScopeFingerprint, local_scope_fingerprint, scope_fingerprint
    from gardien.portable import set_session

    source, target = pair
    load(target, BASE_STATE)
    state = copy.deepcopy(BASE_STATE)
    state["units"] = [*state["units"][:2], ("U4", "Neuro", "S2", "U1", "7.25")]
    state["params"] = [("P1", "z", "U4"), ("P3", "new", "")]
    load(source, state)
    changeset = diff(source, target, catalog_config=catalog_config())
    journaled = "SELECT fingerprint_before, fingerprint_after FROM gardien.deployment"
    conn = psycopg2.connect(target)
    try:
        bare = apply_changeset(conn, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
        with conn.cursor() as cur:
            cur.execute(journaled)
            bare_journal = cur.fetchone()
    finally:
        conn.rollback()
        conn.close()
    _, result = _carry(source, target)
    assert (result.fingerprint_before, result.fingerprint_after) == (
        bare.fingerprint_before,
        bare.fingerprint_after,
    )
    before, after = query(target, journaled)[0]
    assert before == bare_journal[0]
    # Local "after" sums include the ids of inserted rows: the undone bare apply used up sequence values.
    assert {k: v for k, v in after.items() if k != "local"} == {
        k: v for k, v in bare_journal[1].items() if k != "local"
    }
    assert "local" in before and "local" in after
    conn = psycopg2.connect(target)
    try:
        with conn.cursor() as cur:
            set_session(cur)
            catalog = bind_catalog(conn, catalog_config())
            touched = [t["table"] for t in after["tables"]]
            assert scope_fingerprint(cur, catalog, touched) == ScopeFingerprint.from_dict(after)
            assert local_scope_fingerprint(cur, catalog, touched) == ScopeFingerprint.from_dict(
                after["local"]
            )
    finally:
        conn.rollback()
        conn.close()
    assert result.matches_source is True


def test_apply_without_snapshot_readers_scans_itself(pair, monkeypatch):
    # When the two reader connections cannot be opened (connection limit, pooler), the apply computes the
    # full-scope fingerprints on its own connection: same result, one after the other.
    import gardien.apply

    real_connect = gardien.apply.pg.connect

    def refuse_readers(dsn, **kwargs):
        if kwargs.get("application_name") == "gardien apply (fingerprint)":
            raise psycopg2.OperationalError("too many connections")
        return real_connect(dsn, **kwargs)

    source, target = pair
    load(source, BASE_STATE)
    monkeypatch.setattr(gardien.apply.pg, "connect", refuse_readers)
    _, result = _carry(source, target)
    assert result.status == "applied" and result.matches_source is True
    (before,) = query(target, "SELECT fingerprint_before FROM gardien.deployment")[0]
    assert "local" in before

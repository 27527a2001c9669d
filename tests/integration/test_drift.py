"""Drift watch on real PostgreSQL: baselines, Gardien's own changes, direct edits named by natural key."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from test_engine_support import BASE_STATE, NOW, catalog_config, database_pair, execute, load, query, reset

from gardien import journal, ledger, pg
from gardien.apply import deploy
from gardien.config import GardienConfig, parse_config
from gardien.diff import diff
from gardien.errors import ConfigurationError, EnvironmentUnavailableError, LedgerError
from gardien.fingerprint import ScopeFingerprint, TableFingerprint
from gardien.release.drift import Baseline, DriftedRow, DriftReport, TableDrift, gardien_changes
from gardien.release.drift_watch import BASELINE_EVENT, DRIFT_EVENT, watch
from gardien.rollback import rollback

pytestmark = pytest.mark.integration
LATER = NOW + dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def databases(pg_admin_dsn: str) -> Iterator[tuple[str, str, str]]:
    ledger_db = f"gt_drift_ledger_{uuid.uuid4().hex[:8]}"
    with database_pair(pg_admin_dsn, "drift") as (src, tgt):
        ledger_dsn = pg.create_database(pg_admin_dsn, ledger_db)
        try:
            yield src, tgt, ledger_dsn
        finally:
            pg.drop_database(pg_admin_dsn, ledger_db)


@pytest.fixture
def env(databases: tuple[str, str, str]) -> tuple[str, str, GardienConfig, str]:
    """Source and target reset to the base state, an empty ledger, and a config naming them."""
    src, tgt, ledger_dsn = databases
    for dsn in (src, tgt):
        reset(dsn)
        load(dsn, BASE_STATE)
    execute(ledger_dsn, "DROP SCHEMA IF EXISTS ledger CASCADE")
    conn = pg.connect(ledger_dsn)  # `gardien ledger migrate`: the watch never creates the schema
    try:
        ledger.migrate(conn)
        conn.commit()
    finally:
        conn.close()
    config = parse_config(
        {
            "environments": {
                "qualif": {"dsn": src, "role": "source"},
                "prod": {"dsn": tgt, "production": True},
            },
            "ledger": {"dsn": ledger_dsn},
            "catalog": catalog_config().model_dump(by_alias=True),
        }
    )
    return src, tgt, config, ledger_dsn


def _watch(config: GardienConfig, **kwargs: Any) -> Any:
    return watch(config, "prod", actor="drift-watch", now=kwargs.pop("now", LATER), **kwargs)


def _events(ledger_dsn: str, kind: str) -> list[dict[str, Any]]:
    rows = query(ledger_dsn, "SELECT payload_text FROM ledger.events WHERE kind = %s ORDER BY seq", (kind,))
    return [json.loads(r[0]) for r in rows]


def _deploy(src: str, tgt: str, at: dt.datetime = NOW) -> Any:
    changeset = diff(src, tgt, catalog_config=catalog_config())
    return deploy(
        tgt, changeset, catalog_config=catalog_config(), target="prod", applied_at=at, release_id="R-1"
    )


def test_watch_first_run_establishes_baseline_then_no_drift(env) -> None:
    _, _, config, ledger_dsn = env

    first = _watch(config)
    second = _watch(config)

    assert first.status == "baseline_established"
    assert second.status == "no_drift" and not second.drifted
    assert len(_events(ledger_dsn, BASELINE_EVENT)) == 1
    assert _events(ledger_dsn, DRIFT_EVENT) == []


@pytest.mark.parametrize(
    ("statement", "table", "key", "change"),
    [
        ("UPDATE param SET valeur = 'edited' WHERE cle = 'P2'", "param", '["P2"]', "changed"),
        ("INSERT INTO param (cle, valeur) VALUES ('P9', 'new')", "param", '["P9"]', "added"),
        ("DELETE FROM grant_ WHERE role = 'infirmier'", "grant_", '[["U1"],"infirmier"]', "removed"),
        ("UPDATE site SET actif = false WHERE code = 'S2'", "site", '["S2"]', "removed"),
        ("UPDATE unit SET parent_id = NULL WHERE code = 'U3'", "unit", '["U3"]', "changed"),
    ],
    ids=["update", "insert", "hard-delete", "soft-delete", "foreign-key"],
)
def test_watch_direct_edit_is_drift_naming_the_row(env, statement, table, key, change) -> None:
    _, tgt, config, ledger_dsn = env
    _watch(config)
    execute(tgt, statement)

    result = _watch(config)

    assert result.status == "drift"
    assert [(t.table, [(r.key, r.change) for r in t.rows]) for t in result.report.tables] == [
        (table, [(key, change)])
    ]
    (event,) = _events(ledger_dsn, DRIFT_EVENT)
    assert event["tables"][0]["rows"] == [{"key": key, "change": change}]


def test_watch_out_of_scope_and_ignored_columns_are_not_drift(env) -> None:
    _, tgt, config, _ = env
    _watch(config)
    execute(tgt, "UPDATE param SET valeur = 'local edit' WHERE cle = 'LOCAL_A'")  # outside the scope filter
    execute(tgt, "UPDATE unit SET updated_at = now() - interval '1 day'")  # ignored column

    assert _watch(config).status == "no_drift"


def test_watch_same_drift_is_recorded_once(env) -> None:
    _, tgt, config, ledger_dsn = env
    _watch(config)
    execute(tgt, "UPDATE param SET valeur = 'edited' WHERE cle = 'P2'")

    first, second = _watch(config), _watch(config)
    execute(tgt, "UPDATE param SET valeur = 'edited again' WHERE cle = 'P2'")
    third = _watch(config)

    assert (first.status, second.status, third.status) == ("drift", "drift_known", "drift")
    assert len(_events(ledger_dsn, DRIFT_EVENT)) == 2


def test_watch_drift_reverted_by_hand_is_no_drift(env) -> None:
    _, tgt, config, _ = env
    _watch(config)
    execute(tgt, "UPDATE param SET valeur = 'edited' WHERE cle = 'P2'")
    assert _watch(config).drifted
    execute(tgt, "UPDATE param SET valeur = 'y' WHERE cle = 'P2'")

    assert _watch(config).status == "no_drift"


def test_watch_gardien_deployment_is_not_drift_and_moves_the_baseline(env) -> None:
    src, tgt, config, ledger_dsn = env
    _watch(config)
    execute(src, "UPDATE param SET valeur = 'released' WHERE cle = 'P2'")
    _deploy(src, tgt)

    after_release = _watch(config)
    execute(tgt, "UPDATE param SET valeur = 'hand edit' WHERE cle = 'P1'")
    after_edit = _watch(config)

    assert after_release.status == "rebaselined"
    assert "release R-1" in after_release.detail
    assert after_edit.status == "drift"
    assert [r.key for r in after_edit.report.tables[0].rows] == ['["P1"]']
    assert after_edit.last_release == "R-1"
    assert len(_events(ledger_dsn, BASELINE_EVENT)) == 2


def test_watch_edit_of_a_deployed_row_before_the_watch_is_drift_with_a_note(env) -> None:
    src, tgt, config, _ = env
    _watch(config)
    execute(src, "UPDATE param SET valeur = 'released' WHERE cle = 'P2'")
    _deploy(src, tgt)
    execute(tgt, "UPDATE param SET valeur = 'overwritten by hand' WHERE cle = 'P2'")

    result = _watch(config)

    assert result.status == "drift"
    (table,) = result.report.tables
    assert table.table == "param" and table.rows == ()
    assert "deployed by Gardien since the baseline" in table.note and "R-1" in table.note


def test_watch_edit_beside_a_deployment_names_only_the_edited_row(env) -> None:
    src, tgt, config, _ = env
    _watch(config)
    execute(src, "UPDATE param SET valeur = 'released' WHERE cle = 'P2'")
    for dsn in (src, tgt):  # a hand edit in prod before the deployment, also made in qualif: not carried
        execute(dsn, "UPDATE param SET valeur = 'hand edit' WHERE cle = 'P1'")
    _deploy(src, tgt)

    result = _watch(config)

    assert result.status == "drift"
    assert [(r.key, r.change) for r in result.report.tables[0].rows] == [('["P1"]', "changed")]


def test_watch_rollback_of_a_baseline_deployment_is_not_drift(env) -> None:
    src, tgt, config, _ = env
    execute(src, "UPDATE param SET valeur = 'released' WHERE cle = 'P2'")
    applied = _deploy(src, tgt)
    _watch(config)  # baseline includes the deployment
    rollback(tgt, applied.deployment_id, catalog_config=catalog_config(), target="prod", rolled_back_at=LATER)

    result = _watch(config)

    assert result.status == "rebaselined"
    assert "rollback of" in result.detail


def test_watch_rebaseline_accepts_the_drift_with_a_reason(env) -> None:
    _, tgt, config, ledger_dsn = env
    _watch(config)
    execute(tgt, "UPDATE param SET valeur = 'accepted' WHERE cle = 'P2'")

    accepted = _watch(config, rebaseline_reason="correctif validé par la pharmacie, ticket 4521")
    after = _watch(config)

    assert accepted.status == "rebaselined" and "ticket 4521" in accepted.detail
    assert after.status == "no_drift"
    assert _events(ledger_dsn, BASELINE_EVENT)[-1]["accepted_drift"]["tables"][0]["table"] == "param"


def test_watch_altered_baseline_snapshot_is_refused(env) -> None:
    _, tgt, config, _ = env
    _watch(config)
    execute(tgt, "UPDATE param SET valeur = 'hidden' WHERE cle = 'P2'")
    execute(tgt, "DELETE FROM gardien.drift_baseline WHERE tbl = 'param'")  # someone hides the trace

    with pytest.raises(LedgerError, match=r"no longer matches the ledger.*table\(s\) param.*rebaseline=true"):
        _watch(config)


def test_watch_rebaseline_repairs_an_altered_snapshot(env) -> None:
    _, tgt, config, _ = env
    _watch(config)
    execute(tgt, "DELETE FROM gardien.drift_baseline WHERE tbl = 'param'")

    repaired = _watch(config, rebaseline_reason="snapshot effacé par erreur, ticket 4522")

    assert repaired.status == "rebaselined" and repaired.report is None
    assert _watch(config).status == "no_drift"


def test_watch_changed_catalog_rebaselines_instead_of_reporting(env) -> None:
    _, tgt, config, _ = env
    _watch(config)
    execute(tgt, "UPDATE unit SET budget = 99 WHERE code = 'U1'")
    data = config.model_dump(by_alias=True, exclude={"source_path"})
    data["catalog"]["tables"][1]["ignore"] = ["updated_at", "budget"]  # budget is no longer managed

    result = _watch(parse_config(data))

    assert result.status == "rebaselined" and "catalog changed" in result.detail


def test_watch_baseline_of_another_row_hash_rebaselines(env) -> None:
    _, _, config, ledger_dsn = env
    _watch(config)
    conn = psycopg2.connect(ledger_dsn)
    try:
        (payload,) = query(
            ledger_dsn,
            "SELECT payload_text FROM ledger.events WHERE kind = 'baseline.recorded' ORDER BY seq DESC LIMIT 1",
        )[0:1]
        older = {**json.loads(payload[0]), "row_hash": "made-by-an-older-gardien"}
        ledger.append_event(conn, kind=BASELINE_EVENT, actor="old", at=NOW, subject="prod", payload=older)
        conn.commit()
    finally:
        conn.close()

    result = _watch(config)

    assert result.status == "rebaselined" and "row hashing changed" in result.detail


def test_watch_unreachable_target_names_it(env) -> None:
    _, _, config, _ = env
    data = config.model_dump(by_alias=True, exclude={"source_path"})
    data["environments"]["prod"]["dsn"] = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
    broken = parse_config(data)

    with pytest.raises(EnvironmentUnavailableError, match="nowhere|127.0.0.1:1|port 1"):
        _watch(broken)


def test_watch_unknown_environment_is_a_configuration_error(env) -> None:
    _, _, config, _ = env

    with pytest.raises(ConfigurationError, match="unknown environment 'nope'"):
        watch(config, "nope", actor="drift-watch", now=LATER)


# --- pure: the journal's effect on the expected fingerprint ---------------------------------------------------
def _fp(**tables: int) -> ScopeFingerprint:
    return ScopeFingerprint(tables=tuple(TableFingerprint(t, n, n * 10, n * 100) for t, n in tables.items()))


def _dep(seq: int, dep_id: str, *, before: int, after: int, rolled_back: bool) -> journal.Deployment:
    return journal.Deployment(
        seq=seq,
        deployment_id=dep_id,
        changeset_id="c" * 64,
        catalog_fingerprint="f",
        applied_at=NOW,
        release_id=f"R-{seq}",
        release_label=None,
        before_images={"param": [journal.BeforeImage(key=("P1",), id=1, values=None)]},
        crosswalk={},
        fingerprint_before=_fp(param=before).to_dict(),
        fingerprint_after=_fp(param=after).to_dict(),
        drift=[],
        counts={},
        rolled_back_at=LATER if rolled_back else None,
        rollback_proof=None,
    )


@pytest.mark.parametrize(
    ("deployments", "expected_param_rows", "names"),
    [
        ([], 3, ()),
        ([_dep(1, "d1", before=3, after=3, rolled_back=False)], 3, ()),  # in the baseline already
        ([_dep(2, "d2", before=3, after=5, rolled_back=False)], 5, ("d2 (release R-2)",)),
        ([_dep(2, "d2", before=3, after=5, rolled_back=True)], 3, ("d2 (release R-2), rolled back",)),
        ([_dep(1, "d1", before=1, after=3, rolled_back=True)], 1, ("rollback of d1 (release R-1)",)),
    ],
    ids=["nothing", "before-baseline", "deployed-since", "deployed-and-reverted", "baseline-rolled-back"],
)
def test_gardien_changes_shift_the_expected_fingerprint(deployments, expected_param_rows, names) -> None:
    baseline = Baseline(
        environment="prod",
        fingerprint=_fp(param=3),
        catalog_fingerprint="f",
        row_hash="r",
        journal_seq=1,
        active=("d1",),
    )

    changes = gardien_changes(deployments, baseline)

    assert changes.expected.table("param").rows == expected_param_rows
    assert changes.names == names
    assert changes.explained == ({"param": ('["P1"]',)} if names else {})


def test_baseline_from_garbled_payload_is_a_ledger_error() -> None:
    with pytest.raises(LedgerError, match="baseline.recorded event lacks.*rebaseline=true"):
        Baseline.from_payload({"environment": "prod"})


def test_drift_report_summary_names_rows_and_counts() -> None:
    rows = tuple(DriftedRow(key=f'["P{i}"]', change="changed") for i in range(5))
    report = DriftReport(
        environment="prod",
        tables=(TableDrift(table="param", total=7, rows=rows),),
        state_digest="d",
        gardien_changes=(),
    )

    assert report.summary() == (
        'prod: DRIFT in 1 table(s), 7 row(s) — param: changed ["P0"], changed ["P1"], changed ["P2"] (+4 more)'
    )

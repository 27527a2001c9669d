"""The manual rollback and drift watch DAGs end to end with dag.test() on real PostgreSQL.

Releases are performed by calling the release service directly (faster than the release DAG); the rollback's
approvals are answered through the real REST API, like a person in Required Actions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml
from hitl_support import AutoApprover, first_free_assignee

from gardien import ledger, pg

pytestmark = [pytest.mark.dag, pytest.mark.integration, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
DOSE = (
    "SELECT r.dose_max::text FROM regle_alerte_dose r JOIN medicament m ON m.id = r.medicament_id "
    "WHERE m.code_ucd = '3400890010078' AND r.population = 'ADULTE'"
)
SET_DOSE = (
    "UPDATE regle_alerte_dose r SET dose_max = {} FROM medicament m WHERE m.id = r.medicament_id "
    "AND m.code_ucd = '3400890010078' AND r.population = 'ADULTE'"
)


@dataclass
class Demo:
    config_file: Path
    dsns: dict[str, str]
    ledger_dsn: str
    dags: dict[str, Any]

    def svc(self) -> Any:
        from gardien.release.service import ReleaseService

        return ReleaseService.from_config_file("standard", self.config_file)


@pytest.fixture(scope="module")
def demo_template(pg_admin_dsn: str) -> Iterator[dict[str, str]]:
    """The demo environments built once per module; each test copies them (CREATE DATABASE ... TEMPLATE)."""
    from gardien.demo.generator import build_environments

    build = build_environments(pg_admin_dsn, prefix=f"gt_mnt_tpl_{uuid.uuid4().hex[:8]}_")
    yield {e.environment: e.database for e in build.environments}
    for e in build.environments:
        pg.drop_database(pg_admin_dsn, e.database)


@pytest.fixture
def demo(
    airflow_db: Path,
    pg_admin_dsn: str,
    demo_template: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Demo]:
    """Fresh copies of the demo environments + a ledger, a config naming them (Slack off), the parsed DAGs."""
    from airflow.dag_processing.dagbag import DagBag
    from psycopg2 import sql

    prefix = f"gt_mnt_{uuid.uuid4().hex[:8]}_"
    created: list[str] = []
    try:
        with pg.autocommit(pg_admin_dsn) as conn, conn.cursor() as cur:
            for env, template in demo_template.items():
                cur.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(f"{prefix}{env}"), sql.Identifier(template)
                    )
                )
                created.append(f"{prefix}{env}")
        ledger_db = pg.create_database(pg_admin_dsn, f"{prefix}ledger")
        migrate_conn = pg.connect(ledger_db)  # `gardien ledger migrate`: steps never create the schema
        try:
            ledger.migrate(migrate_conn)
            migrate_conn.commit()
        finally:
            migrate_conn.close()
        created.append(f"{prefix}ledger")
        data = yaml.safe_load((ROOT / "include" / "config" / "gardien.yaml").read_text())
        for env in ("qualif", "preprod", "prod"):
            data["environments"][env]["database"] = f"{prefix}{env}"
        data["ledger"]["database"] = f"{prefix}ledger"
        data["notifications"] = None
        config_file = tmp_path / "gardien.yaml"
        config_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
        monkeypatch.setenv("GARDIEN_CONFIG", str(config_file))
        monkeypatch.setenv("GARDIEN_PG_DSN", pg_admin_dsn)
        monkeypatch.setenv("GARDIEN_STATE_DIR", str(tmp_path / "state"))
        bundles = [
            {
                "name": "gardien-maintenance-tests",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(ROOT / "dags"), "refresh_interval": 0},
            }
        ]
        monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert bag.import_errors == {}
        yield Demo(
            config_file=config_file,
            dsns={env: pg.dsn_for_database(pg_admin_dsn, f"{prefix}{env}") for env in demo_template},
            ledger_dsn=ledger_db,
            dags=bag.dags,
        )
    finally:
        for name in created:
            pg.drop_database(pg_admin_dsn, name)


def release(demo: Demo, release_id: str, *, targets: tuple[str, ...] = ("preprod", "prod")) -> None:
    """A release performed through the service, as the release DAG would: open → extract → deploy → close.

    Verification is left out (the release DAG tests cover it; its Great Expectations run is the slowest step):
    a rollback needs a deployment in effect, verified or not.
    """
    from gardien.release import outcome, stages
    from gardien.release.service import StepContext

    svc = demo.svc()
    ctx = StepContext(actor="test-release", now=datetime.now(UTC))
    svc.open(
        release_id=release_id,
        requested_by="parametreur",
        reason="test release",
        window_start=None,
        window_end=None,
        ctx=ctx,
    )
    assert not svc.extract(release_id, ctx=ctx)["empty"]
    for env in targets:
        stages.deploy(svc, release_id, env, ctx=ctx)
    outcome.close(svc, release_id, ctx=ctx)


def scalar(dsn: str, query: str) -> Any:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchone()[0]
    finally:
        conn.close()


def execute(dsn: str, statement: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.commit()
    finally:
        conn.close()


def history(demo: Demo, release_id: str) -> ledger.ReleaseHistory:
    conn = psycopg2.connect(demo.ledger_dsn)
    try:
        return ledger.release_history(conn, release_id)
    finally:
        conn.close()


def events(demo: Demo, kind: str) -> list[dict[str, Any]]:
    conn = psycopg2.connect(demo.ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT payload_text FROM ledger.events WHERE kind = %s ORDER BY seq", (kind,))
            return [json.loads(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()


def run_dag(dag: Any, approver: AutoApprover | None = None, **kwargs: Any) -> tuple[Any, dict[str, str], str]:
    """dag.test() (with a background approver if given): the run, task states, and the close task's note."""
    if approver is not None:
        approver.start()
    try:
        dr = dag.test(**kwargs)
    finally:
        if approver is not None:
            approver.stop()
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    note = tis["close"].xcom_pull(task_ids="close", key="note") if "close" in tis else None
    return dr, {t: ti.state for t, ti in tis.items()}, note


# --- shape ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dagbag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_rollback_dag_shape_approvals_before_rollback_params_enforced(dagbag: Any) -> None:
    dag = dagbag.dags["gardien_rollback"]
    seats = [t for t in dag.task_ids if t.startswith("approval_seat_")]

    assert type(dag.timetable).__name__ == "NullTimetable"  # on demand only
    assert len(seats) == 4  # prod: quorum 2, plus the pharmacist and security routings
    assert set(dag.get_task("approval_seat_1").upstream_task_ids) == {"check_request"}
    assert set(dag.get_task("record_approvals").upstream_task_ids) == {"check_request", seats[-1]}
    assert set(dag.get_task("rollback").upstream_task_ids) == {"check_request", "record_approvals"}
    assert set(dag.get_task("close").upstream_task_ids) == {"rollback"}
    assert dag.get_task("close").trigger_rule == "all_done"
    assert dag.get_task("approval_seat_1").__class__.__name__ == "GardienApprovalOperator"
    assert dag.params.get_param("reason").schema["minLength"] == 10
    assert dag.params.get_param("force").value is False
    assert all(t.on_failure_callback for t in dag.tasks)


def test_drift_watch_dag_shape_hourly_mapped_per_target(dagbag: Any) -> None:
    dag = dagbag.dags["gardien_drift_watch"]

    assert dag.schedule == timedelta(hours=1)
    assert set(dag.get_task("production_targets").downstream_task_ids) == {"watch"}
    assert set(dag.get_task("watch").downstream_task_ids) == {"close"}
    assert dag.get_task("watch").retries >= 1  # an unreachable target is retried
    assert dag.get_task("close").trigger_rule == "all_done"
    assert all(t.on_failure_callback for t in dag.tasks)


# --- manual rollback -----------------------------------------------------------------------------------------
def test_rollback_dag_approved_restores_prod_with_proof(demo: Demo, login: Callable) -> None:
    release(demo, "R-mnt-1")
    assert scalar(demo.dsns["prod"], DOSE) == "10.000"

    dr, states, note = run_dag(
        demo.dags["gardien_rollback"],
        AutoApprover(login, "gardien_rollback", first_free_assignee(set())),
        run_conf={
            "release": "R-mnt-1",
            "environment": "prod",
            "reason": "dose maximale erronée, retour arrière",
        },
    )

    assert dr.state == "success", states
    assert states["rollback"] == "success"
    assert scalar(demo.dsns["prod"], DOSE) == "20.000"  # restored
    assert scalar(demo.dsns["preprod"], DOSE) == "10.000"  # only the environment asked for
    h = history(demo, "R-mnt-1")
    assert {d.environment: d.status for d in h.deployments} == {"preprod": "applied", "prod": "rolled_back"}
    (proof,) = h.rollbacks
    assert proof.proven and proof.fingerprints["expected"] == proof.fingerprints["restored"]
    kinds = [e.kind for e in h.events]
    assert (
        kinds.index("rollback.requested")
        < kinds.index("rollback.approved")
        < kinds.index("rollback.recorded")
    )
    approved = next(e for e in h.events if e.kind == "rollback.approved").payload["approvers"]
    assert (
        len(approved) == 4
    )  # prod quorum 2 + pharmacist (formulary) + security (rights), as for the release
    assert (
        note.startswith("R-mnt-1 · changeset ")
        and "ROLLBACK on prod · ROLLED BACK — restoration proven" in note
    )


def test_rollback_dag_refused_when_a_later_release_overwrote_the_rows(demo: Demo, login: Callable) -> None:
    release(demo, "R-mnt-1")
    execute(demo.dsns["qualif"], SET_DOSE.format(12))  # the next release changes the same dose again
    release(demo, "R-mnt-2", targets=("prod",))

    dr, states, note = run_dag(
        demo.dags["gardien_rollback"],
        run_conf={
            "release": "R-mnt-1",
            "environment": "prod",
            "reason": "retour arrière demandé par la pharmacie",
        },
    )

    assert dr.state == "failed"
    assert states["check_request"] == "failed"
    assert states["approval_seat_1"] == "upstream_failed"  # nobody is asked to approve a refused rollback
    assert "REFUSED" in note and "R-mnt-2" in note and "force=true" in note
    assert scalar(demo.dsns["prod"], DOSE) == "12.000"  # untouched
    h = history(demo, "R-mnt-1")
    assert h.rollbacks == ()
    refusal = next(e for e in h.events if e.kind == "rollback.refused")
    assert "R-mnt-2" in refusal.reason


def test_rollback_dag_unprovable_restoration_fails_loudly_manual_repair(demo: Demo, login: Callable) -> None:
    release(demo, "R-mnt-1", targets=("prod",))
    # A direct edit of a row the release did not touch, in a table it did: the restored scope cannot equal
    # its pre-deployment fingerprint, so the engine refuses to claim a restoration.
    execute(
        demo.dsns["prod"],
        "UPDATE parametre_global SET valeur = valeur || '-edited' WHERE cle = "
        "(SELECT min(cle) FROM parametre_global WHERE cle <> 'SESSION.TIMEOUT_MINUTES')",
    )

    dr, states, note = run_dag(
        demo.dags["gardien_rollback"],
        AutoApprover(login, "gardien_rollback", first_free_assignee(set())),
        run_conf={"release": "R-mnt-1", "environment": "prod", "reason": "retour arrière après incident"},
    )

    assert dr.state == "failed"
    assert states["rollback"] == "failed"
    assert "MANUAL REPAIR NEEDED" in note and "parametre_global" in note
    assert scalar(demo.dsns["prod"], DOSE) == "10.000"  # the rollback transaction was undone: still deployed
    h = history(demo, "R-mnt-1")
    assert {d.environment: d.status for d in h.deployments} == {"prod": "rollback_unproven"}
    assert [r.proven for r in h.rollbacks] == [False]


def test_rollback_dag_finds_a_deployment_whose_ledger_record_was_lost(
    demo: Demo, login: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gardien.errors import LedgerError
    from gardien.release import stages
    from gardien.release.service import StepContext

    svc, ctx = demo.svc(), StepContext(actor="test-release", now=datetime.now(UTC))
    svc.open(
        release_id="R-mnt-1", requested_by="p", reason="test", window_start=None, window_end=None, ctx=ctx
    )
    svc.extract("R-mnt-1", ctx=ctx)

    def ledger_gone(*args: Any, **kwargs: Any) -> Any:
        raise LedgerError("the ledger went away after the target's commit")

    with monkeypatch.context() as m:
        m.setattr(ledger, "record_deployment", ledger_gone)
        with pytest.raises(LedgerError):
            stages.deploy(svc, "R-mnt-1", "prod", ctx=ctx)
    assert scalar(demo.dsns["prod"], DOSE) == "10.000" and history(demo, "R-mnt-1").deployments == ()

    dr, states, note = run_dag(
        demo.dags["gardien_rollback"],
        AutoApprover(login, "gardien_rollback", first_free_assignee(set())),
        run_conf={"release": "R-mnt-1", "environment": "prod", "reason": "retour arrière après une panne"},
    )

    assert dr.state == "success", (states, note)  # not "never deployed on prod"
    assert scalar(demo.dsns["prod"], DOSE) == "20.000"
    h = history(demo, "R-mnt-1")
    assert [(d.environment, d.status) for d in h.deployments] == [("prod", "rolled_back")]
    assert "deployment.reconciled" in {e.kind for e in h.events} and [r.proven for r in h.rollbacks] == [True]


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"release": "R-nope", "environment": "prod"}, "unknown release 'R-nope'"),
        ({"release": "R-mnt-1", "environment": "qualif"}, "never deployed on qualif"),
        ({"release": "R-mnt-1", "environment": "mars"}, "unknown environment 'mars'"),
    ],
    ids=["unknown-release", "not-deployed-there", "unknown-environment"],
)
def test_rollback_dag_bad_request_fails_clearly(demo: Demo, conf: dict[str, str], message: str) -> None:
    release(demo, "R-mnt-1", targets=("prod",))

    dr, states, note = run_dag(
        demo.dags["gardien_rollback"], run_conf={**conf, "reason": "test d'une demande"}
    )

    assert dr.state == "failed"
    assert states["check_request"] == "failed" and states["rollback"] == "upstream_failed"
    assert message in note
    assert scalar(demo.dsns["prod"], DOSE) == "10.000"


# --- drift watch ---------------------------------------------------------------------------------------------
def test_drift_watch_release_then_direct_prod_edit_is_detected_and_named(demo: Demo) -> None:
    dag = demo.dags["gardien_drift_watch"]
    at = datetime(2026, 11, 1, 10, tzinfo=UTC)
    first, _, first_note = run_dag(dag, logical_date=at)  # the baseline
    release(demo, "R-mnt-1", targets=("prod",))
    second, _, second_note = run_dag(dag, logical_date=at + timedelta(hours=1))
    quiet, _, quiet_note = run_dag(dag, logical_date=at + timedelta(hours=2))
    execute(demo.dsns["prod"], SET_DOSE.format(15))  # someone "fixes" the dose directly in production

    dr, states, note = run_dag(dag, logical_date=at + timedelta(hours=3))

    assert (first.state, second.state, quiet.state) == ("success", "success", "success")
    assert "baseline established" in first_note and "rebaselined" in second_note and "no drift" in quiet_note
    assert dr.state == "failed" and states["watch"] == "success" and states["close"] == "failed"
    assert "DRIFT" in note and "regle_alerte_dose" in note and '"3400890010078"' in note and "ADULTE" in note
    (drift,) = events(demo, "drift.detected")
    assert drift["environment"] == "prod" and drift["last_release"] == "R-mnt-1"
    (table,) = drift["tables"]
    assert table["table"] == "regle_alerte_dose"
    assert table["rows"] == [{"key": '[["3400890010078"],"ADULTE"]', "change": "changed"}]
    assert scalar(demo.dsns["prod"], DOSE) == "15.000"  # the watch reports; it never repairs


def test_drift_watch_unreachable_target_fails_with_the_reason(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = yaml.safe_load(demo.config_file.read_text())
    data["environments"]["prod"]["dsn"] = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2"
    demo.config_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    dag = demo.dags["gardien_drift_watch"]
    dag.get_task("watch").retries = 0  # the real DAG retries; the test wants the final state at once

    dr, states, note = run_dag(dag, logical_date=datetime(2026, 11, 2, 10, tzinfo=UTC))

    assert dr.state == "failed" and states["watch"] == "failed"
    assert "prod: NOT CHECKED — cannot connect to PostgreSQL" in note and "port 1 failed" in note

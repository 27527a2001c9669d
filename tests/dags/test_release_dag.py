"""The release DAG end to end with dag.test() on real PostgreSQL: approvals answered through the REST API."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
import yaml
from fakeslack import FakeSlack
from hitl_support import AutoApprover, first_free_assignee

from gardien import ledger, pg

pytestmark = [pytest.mark.dag, pytest.mark.integration, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "gardien_release_standard"


@dataclass
class Setup:
    config_file: Path
    dsns: dict[str, str]
    ledger_dsn: str
    dag: Any


def _config(prefix: str, ledger_db: str, window: tuple[datetime, datetime]) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "include" / "config" / "gardien.yaml").read_text())
    for env in ("qualif", "preprod", "prod"):
        data["environments"][env]["database"] = f"{prefix}{env}"
    data["ledger"]["database"] = ledger_db
    data["calendar"] = {
        "timezone": "UTC",
        "windows": [],
        "one_off": [
            {
                "name": "test-window",
                "start": f"{window[0]:%Y-%m-%dT%H:%M}",
                "end": f"{window[1]:%Y-%m-%dT%H:%M}",
            }
        ],
        "public_holidays": {"enabled": False},
    }
    return data


@pytest.fixture
def release_setup(
    airflow_db: Path, pg_admin_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Setup]]:
    """Factory: fresh demo environments + ledger, a config whose only window is ``window``, the parsed DAG."""
    from gardien.demo.generator import build_environments

    created: list[str] = []
    roles: list[str] = []

    def make(*, window_minutes: tuple[int, int] = (-5, 120), extra: dict[str, Any] | None = None) -> Setup:
        prefix = f"gt_rel_{uuid.uuid4().hex[:8]}_"
        build = build_environments(pg_admin_dsn, prefix=prefix)
        created.extend(e.database for e in build.environments)
        ledger_db = f"{prefix}ledger"
        migrate_conn = pg.connect(pg.create_database(pg_admin_dsn, ledger_db))
        created.append(ledger_db)
        try:  # `gardien ledger migrate`: release steps never create the schema
            ledger.migrate(migrate_conn)
            migrate_conn.commit()
        finally:
            migrate_conn.close()
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        window = (now + timedelta(minutes=window_minutes[0]), now + timedelta(minutes=window_minutes[1]))
        data = _config(prefix, ledger_db, window)
        # Airflow writes the ledger as a LOGIN role that is only a member of the writer role (ADR 0002).
        writer = f"{prefix}writer"
        with pg.autocommit(pg_admin_dsn) as admin, admin.cursor() as cur:
            cur.execute(f'CREATE ROLE "{writer}" LOGIN IN ROLE {ledger.WRITER_ROLE}')
        roles.append(writer)
        owner_dsn = pg.dsn_for_database(pg_admin_dsn, ledger_db)
        params = psycopg2.extensions.parse_dsn(owner_dsn)
        params.pop("password", None)
        data["ledger"] = {"dsn": psycopg2.extensions.make_dsn(**{**params, "user": writer})}
        data.update(extra or {})
        config_file = tmp_path / "gardien.yaml"
        config_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
        monkeypatch.setenv("GARDIEN_CONFIG", str(config_file))
        monkeypatch.setenv("GARDIEN_PG_DSN", pg_admin_dsn)
        monkeypatch.setenv("GARDIEN_STATE_DIR", str(tmp_path / "state"))
        bundles = [
            {
                "name": "gardien-release-tests",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(ROOT / "dags"), "refresh_interval": 0},
            }
        ]
        monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert bag.import_errors == {}
        return Setup(
            config_file=config_file,
            dsns={e.environment: e.dsn for e in build.environments},
            ledger_dsn=pg.dsn_for_database(pg_admin_dsn, ledger_db),
            dag=bag.dags[DAG_ID],
        )

    yield make
    for name in created:
        pg.drop_database(pg_admin_dsn, name)
    with pg.autocommit(pg_admin_dsn) as admin, admin.cursor() as cur:
        for role in roles:
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')


def run(setup: Setup, approver: AutoApprover, **conf: Any) -> tuple[Any, dict[str, str]]:
    """dag.test() the release, its run id made by the DAG's timetable as the scheduler and the trigger API
    do (dag.test() itself would name the run manual__…)."""
    from unittest import mock

    from airflow.models.dagrun import DagRun

    timetable = setup.dag.timetable

    def release_run_id(*, run_type: Any, run_after: Any, logical_date: Any = None) -> str:
        window = timetable.infer_manual_data_interval(run_after=run_after)
        return timetable.generate_run_id(run_type=run_type, run_after=run_after, data_interval=window)

    approver.start()
    try:
        with mock.patch.object(DagRun, "generate_run_id", staticmethod(release_run_id)):
            dr = setup.dag.test(run_conf={"requested_by": "parametreur", "reason": "test release", **conf})
    finally:
        approver.stop()
    return dr, {ti.task_id: ti.state for ti in dr.get_task_instances()}


def all_asked_first(
    approver: AutoApprover, decide: Callable[[dict[str, Any]], Any], *, seats: int, patience: float = 90
) -> Callable[[dict[str, Any]], Any]:
    """A ``decide`` that answers only once ``seats`` approvals wait at the same time (or after ``patience``
    seconds, so seats asked one after another end the test with a failed assertion, not a hang)."""
    import time

    started: list[float] = []

    def wait_then_decide(detail: dict[str, Any]) -> Any:
        started[:] = started or [time.monotonic()]
        if len(approver.max_pending) < seats and time.monotonic() - started[0] < patience:
            return None
        return decide(detail)

    return wait_then_decide


def eager_cab_member(
    member: str, offered: dict[str, list[str]], otherwise: Callable[[dict[str, Any]], Any]
) -> Callable[[dict[str, Any]], Any]:
    """A ``decide`` where ``member`` answers every CAB seat offered to them (the same person trying to fill two
    seats of the quorum); ``offered`` collects each seat's assigned users."""

    def decide(detail: dict[str, Any]) -> Any:
        task_id = detail["task_instance"]["task_id"]
        assigned = [u["id"] for u in detail["assigned_users"]]
        offered[task_id] = assigned
        if task_id.startswith("approve_cab") and member in assigned:
            return member, "Approve", ""
        return otherwise(detail)

    return decide


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


def history(setup: Setup) -> ledger.ReleaseHistory:
    conn = psycopg2.connect(setup.ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM ledger.releases ORDER BY created_at DESC LIMIT 1")
            release_id = cur.fetchone()[0]
        return ledger.release_history(conn, release_id)
    finally:
        conn.close()


DOSE = (
    "SELECT r.dose_max::text FROM regle_alerte_dose r JOIN medicament m ON m.id = r.medicament_id "
    "WHERE m.code_ucd = '3400890010078' AND r.population = 'ADULTE'"
)


def _paths_with_bake(minutes: float, every_seconds: int) -> dict[str, Any]:
    """The demo's release paths, with a bake period after the prod stage of the standard path."""
    paths = yaml.safe_load((ROOT / "include" / "config" / "gardien.yaml").read_text())["release_paths"]
    paths["standard"]["stages"][-1].update(bake_minutes=minutes, bake_probe_every_seconds=every_seconds)
    return paths


def test_release_happy_path_two_stages_released_despite_slack_outage(
    release_setup: Callable[..., Setup],
    login: Callable,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = tmp_path / "slack-outbox.jsonl"
    notifications = {
        "slack": {
            "channel": "#dpi-mep",
            "token_env": "SLACK_BOT_TOKEN",
            "base_url_env": "SLACK_BASE_URL",
            "outbox": str(outbox),
            "max_total_seconds": 2.0,
        }
    }
    # a short bake after prod (6 s, a probe every 2 s) so the happy path goes through it too
    setup = release_setup(extra={"notifications": notifications, "release_paths": _paths_with_bake(0.1, 2)})
    with FakeSlack() as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
        monkeypatch.setenv("SLACK_BASE_URL", slack.base_url)
        slack.set_mode("down")  # Slack is unreachable for the whole release
        approver = AutoApprover(login, DAG_ID, first_free_assignee({"parametreur"}))
        offered: dict[str, list[str]] = {}
        approver.decide = all_asked_first(
            approver, eager_cab_member("chef.projet", offered, first_free_assignee({"parametreur"})), seats=3
        )
        caplog.set_level(logging.INFO, logger="gardien")
        dr, states = run(setup, approver)

        assert dr.state == "success", states
        # the run id is the release id; seats with disjoint candidates waited side by side, the CAB's quorum
        # seats one after the other: approve_cab_2 was offered only to the CAB members who had not answered
        # approve_cab_1, so the eager member's answer to the first did not doom the release
        assert dr.run_id == history(setup).release.id and dr.run_id.startswith("R-standard-")
        assert approver.max_pending == {"approve_pharmaciens", "approve_securite", "approve_cab_1"}
        assert "chef.projet" in offered["approve_cab_1"] and "chef.projet" not in offered["approve_cab_2"]
        assert {t: u for t, u, _ in approver.answered}["approve_cab_1"] == "chef.projet"
        assert states["withdraw_approvals"] == "skipped"
        # the task logs say what happened in words: counts, deployment ids, fingerprints, what was checked
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("gardien")]
        deployed = [m for m in lines if m.startswith(f"Release {dr.run_id} deployed to prod")]
        assert deployed and "regle_alerte_dose +" in deployed[0] and "Target deployment id" in deployed[0]
        assert "fingerprint" in deployed[0]
        verified = [m for m in lines if m.startswith(f"Release {dr.run_id} verified on prod")]
        assert verified and "smoke probes" in verified[0] and "equals the rehearsal's" in verified[0]
        assert any(m.startswith(f"Release {dr.run_id} approved by ") and "(pharmaciens)" in m for m in lines)
        assert any(f"/gardien/releases/{dr.run_id}" in m for m in lines)
        assert sum(m.startswith("Slack notifications:") for m in lines) == 1
        # the run note (written by the plugin's listener from close's XCom) links the board's release page
        from airflow import settings
        from sqlalchemy.orm import Session

        from gardien.airflow.listener import _note_for

        with Session(bind=settings.engine) as session:
            note = _note_for(DAG_ID, dr.run_id, session)
        assert note and note.startswith(f"{dr.run_id} · changeset") and "RELEASED" in note
        assert f"[Release page](/gardien/releases/{dr.run_id})" in note
        noise = [
            (r.name, r.getMessage()[:120]) for r in caplog.records if r.name.startswith("great_expectations")
        ]
        assert not noise, noise[:5]
        assert states["stage_preprod.verify_preprod"] == "success"
        assert states["stage_prod.verify_prod"] == "success"
        assert states["bake_prod"] == "success"
        assert states["rollback"] == "skipped"
        h = history(setup)
        assert h.release.status == "closed"
        baked = [v for v in h.validations if v.environment == "bake:prod"]
        assert len(baked) == 1 and baked[0].passed and baked[0].report["rounds"] >= 3  # t=0, 2, 4, 6 s
        approvers = {a.approver for a in h.approvals}
        assert len(approvers) == 4  # 2 CAB + pharmacist + security, all distinct
        assert approvers & {"pharma.chef", "pharma.adjoint"}  # routed by content: the drug formulary changed
        assert "rssi" in approvers  # routed by content: rights changed
        assert "parametreur" not in approvers  # the requester never approves
        for env in ("preprod", "prod"):
            assert scalar(setup.dsns[env], DOSE) == "10.000"
        # nothing lost: every notification waits in the outbox, and is delivered once Slack is back
        queued = outbox.read_text().splitlines()
        assert len(queued) >= 5
        slack.set_mode("normal")
        from gardien.config import load_config
        from gardien.notify import notifier_from_settings

        notifier = notifier_from_settings(load_config(setup.config_file).notifications, environ=os.environ)
        assert notifier.flush_outbox().remaining == 0
        texts = [m.get("text", "") for m in slack.messages]
        assert any("opened" in t for t in texts) and any("closed: released" in t for t in texts)


def test_release_rejection_ends_failed_and_records_reason(
    release_setup: Callable[..., Setup],
    login: Callable,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    setup = release_setup()

    def decide(detail: dict[str, Any]) -> tuple[str, str, str] | None:
        # only the pharmacist answers; the other seats would wait for ever if nobody withdrew them
        if detail["task_instance"]["task_id"] != "approve_pharmaciens":
            return None
        return detail["assigned_users"][0]["id"], "Reject", "dose maximale à revoir avec la pharmacie"

    caplog.set_level(logging.INFO, logger="gardien")
    dr, states = run(setup, AutoApprover(login, DAG_ID, decide))

    assert dr.state == "failed"
    assert states["approve_pharmaciens"] == "failed"
    assert states["withdraw_approvals"] == "success"
    assert {states[s] for s in ("approve_securite", "approve_cab_1", "approve_cab_2")} == {"skipped"}
    assert states["stage_prod.deploy_prod"] == "upstream_failed"
    assert states["close"] == "failed"
    # the close fails with one line and no traceback (the one traceback is the refusing seat's), never retried
    out = capfd.readouterr()
    logs = out.out + out.err
    assert f"exit_code='Release {dr.run_id}: REJECTED — approval rejected" in logs
    assert logs.count("Task failed with exception") == 1
    assert "action=fail" in logs
    gardien_lines = [r.getMessage() for r in caplog.records if r.name.startswith("gardien")]
    assert any(m.startswith(f"Release {dr.run_id}: REJECTED") for m in gardien_lines)
    # Slack is off (no token): said once for the run, not by every task
    assert sum("Slack notifications are off" in m for m in gardien_lines) == 1
    assert not any("notification not sent" in m for m in gardien_lines)
    h = history(setup)
    assert h.release.status == "rejected"
    assert any("dose maximale à revoir" in (e.reason or "") for e in h.events)
    assert h.deployments == ()
    assert scalar(setup.dsns["prod"], DOSE) == "20.000"


def test_release_approved_after_window_closed_is_missed_nothing_deployed(
    release_setup: Callable[..., Setup], login: Callable
) -> None:
    setup = release_setup(window_minutes=(-30, 10))  # closes in 10 min; a deployment needs 15
    dr, states = run(setup, AutoApprover(login, DAG_ID, first_free_assignee({"parametreur"})))

    assert dr.state == "failed"
    assert states["check_window"] == "failed"
    assert states["stage_preprod.deploy_preprod"] == "upstream_failed"
    assert history(setup).release.status == "missed_window"
    assert scalar(setup.dsns["preprod"], DOSE) == "20.000"


def test_release_conflicting_prod_edit_applies_nothing_to_prod(
    release_setup: Callable[..., Setup], login: Callable
) -> None:
    setup = release_setup()
    edited: list[bool] = []

    def edit_prod(detail: dict[str, Any]) -> None:
        if not edited:  # an operator "fixes" the dose directly in production while approvals are pending
            execute(
                setup.dsns["prod"],
                "UPDATE regle_alerte_dose r SET dose_max = 15 FROM medicament m WHERE m.id = r.medicament_id "
                "AND m.code_ucd = '3400890010078' AND r.population = 'ADULTE'",
            )
            edited.append(True)

    dr, states = run(
        setup, AutoApprover(login, DAG_ID, first_free_assignee({"parametreur"}), before_answer=edit_prod)
    )

    assert dr.state == "failed"
    assert states["stage_prod.deploy_prod"] == "failed"
    assert scalar(setup.dsns["prod"], DOSE) == "15.000"  # the direct edit survives; nothing applied
    assert scalar(setup.dsns["prod"], "SELECT count(*) FROM medicament WHERE code_ucd = '3400899990012'") == 0
    h = history(setup)
    assert any(e.kind == "deployment.conflict" for e in h.events)
    # rollback policy "all": preprod, already deployed, is reverted and the revert proven
    assert scalar(setup.dsns["preprod"], DOSE) == "20.000"
    assert all(r.proven for r in h.rollbacks)


def test_release_verification_failure_in_prod_rolls_back_with_proof(
    release_setup: Callable[..., Setup], login: Callable
) -> None:
    probe = {
        "name": "no_lab_test_without_unit_in_prod",
        "description": "test probe: prod must not hold a lab test without a unit code",
        "sql": "SELECT code FROM examen_labo WHERE unite_code IS NULL AND current_database() LIKE '%\\_prod'",
    }
    setup = release_setup()
    data = yaml.safe_load(setup.config_file.read_text())
    data["smoke_probes"] = [*(data.get("smoke_probes") or []), probe]
    setup.config_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    broken: list[bool] = []

    def break_prod(detail: dict[str, Any]) -> None:
        if not broken:  # an unrelated direct edit in prod: applies fine, fails verification
            execute(
                setup.dsns["prod"],
                "UPDATE examen_labo SET unite_code = NULL WHERE code = (SELECT min(code) FROM "
                "examen_labo WHERE code NOT IN ('4537-7', '2157-6'))",
            )
            broken.append(True)

    dr, states = run(
        setup, AutoApprover(login, DAG_ID, first_free_assignee({"parametreur"}), before_answer=break_prod)
    )

    assert dr.state == "failed"
    assert states["stage_prod.verify_prod"] == "failed"
    assert states["rollback"] == "success"
    h = history(setup)
    assert h.rollbacks and all(r.proven for r in h.rollbacks)
    assert {d.environment: d.status for d in h.deployments}["prod"] == "rolled_back"
    assert scalar(setup.dsns["prod"], DOSE) == "20.000"
    assert scalar(setup.dsns["preprod"], DOSE) == "20.000"  # policy "all" reverts preprod too


def test_emergency_release_outside_windows_needs_reason_and_stronger_policy(
    release_setup: Callable[..., Setup], login: Callable
) -> None:
    setup = release_setup(window_minutes=(600, 720))  # no window open now: an emergency does not wait
    bag_dag = setup.dag
    from airflow.dag_processing.dagbag import DagBag

    emergency = DagBag(dag_folder=str(ROOT / "dags")).dags["gardien_release_emergency"]
    setup.dag = emergency
    approver = AutoApprover(login, "gardien_release_emergency", first_free_assignee({"parametreur"}))
    dr, states = run(
        setup, approver, reason="Correctif urgent : dose maximale d'oxycodone erronée en production"
    )
    setup.dag = bag_dag

    assert dr.state == "success", states
    assert "wait_for_window" not in states
    assert scalar(setup.dsns["prod"], DOSE) == "10.000"
    h = history(setup)
    assert h.release.reason.startswith("Correctif urgent")
    approvers = {a.approver for a in h.approvals}
    # emergency policy, stronger than prod's: the whole CAB, on top of the content routing
    assert {"chef.projet", "resp.exploitation", "dsi.adjoint"} <= approvers
    assert "parametreur" not in approvers


def test_release_bake_probe_catches_a_direct_prod_edit_and_the_rollback_keeps_it(
    release_setup: Callable[..., Setup], login: Callable
) -> None:
    import threading
    import time

    setup = release_setup(extra={"release_paths": _paths_with_bake(2.0, 2)})
    edited = threading.Event()
    stop = threading.Event()

    def edit_prod_once_verified() -> None:
        # Once prod is verified (the bake has begun), someone "fixes" the released dose directly in prod.
        while not stop.is_set():
            try:
                verified = any(
                    d.environment == "prod" and d.status == "verified" for d in history(setup).deployments
                )
            except Exception:  # noqa: BLE001 - the release is not open yet
                verified = False
            if verified:
                execute(
                    setup.dsns["prod"],
                    "UPDATE regle_alerte_dose r SET dose_max = 12 FROM medicament m WHERE m.id = "
                    "r.medicament_id AND m.code_ucd = '3400890010078' AND r.population = 'ADULTE'",
                )
                edited.set()
                return
            time.sleep(0.5)

    editor = threading.Thread(target=edit_prod_once_verified, daemon=True)
    editor.start()
    started = time.monotonic()
    try:
        dr, states = run(setup, AutoApprover(login, DAG_ID, first_free_assignee({"parametreur"})))
    finally:
        stop.set()
        editor.join(timeout=10)

    assert edited.is_set()
    assert dr.state == "failed"
    assert states["stage_prod.verify_prod"] == "success"
    assert states["bake_prod"] == "failed"
    # The colleague's later edit overlaps the deployment's own change (same row, same field): rolling back
    # would silently overwrite it, so prod's rollback is refused with nothing written and the release says
    # the deployment is STILL IN EFFECT there, naming the edit. Preprod (not edited) is rolled back with proof.
    assert states["rollback"] == "failed"
    h = history(setup)
    failed = [e for e in h.events if e.kind == "bake.failed"]
    assert failed and failed[0].subject == "prod" and "edited prod directly" in (failed[0].reason or "")
    refused = [e for e in h.events if e.kind == "deployment.rollback_refused"]
    assert len(refused) == 1 and refused[0].payload["environment"] == "prod"
    assert refused[0].payload["still_deployed"] is True
    edits = refused[0].payload["later_edits"]
    assert any(e.get("table") == "regle_alerte_dose" and e.get("field") == "dose_max" for e in edits), edits
    assert {d.environment: d.status for d in h.deployments} == {
        "preprod": "rolled_back",
        "prod": "rollback_refused",
    }
    assert h.release.status == "failed"
    closed = [e for e in h.events if e.kind == "release.closed"]
    assert closed and closed[0].payload["outcome"] == "rollback_refused"
    assert "STILL IN EFFECT" in closed[0].payload["detail"]
    assert scalar(setup.dsns["prod"], DOSE) == "12.000"  # the direct edit is not lost
    assert scalar(setup.dsns["preprod"], DOSE) == "20.000"  # before-image restored where nobody edited
    assert time.monotonic() - started < 300  # failed at the first probe after the edit, not after 2 minutes

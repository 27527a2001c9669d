"""The release steps as the writer role, and no target change without its ledger record, on real PostgreSQL.

The deploy step commits on the target, then records in the ledger. The tests stop it exactly in between — a
SHARE lock on ledger.deployments makes the record wait — and then kill -9 the process, or cut its ledger
connection (pg_terminate_backend). The next step (rollback, a retried deploy), the drift watch and
`gardien audit reconcile` must find the journal row and record it; `gardien audit verify` must name it first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
import yaml

from gardien import ledger, pg
from gardien.apply import deploy as engine_deploy
from gardien.config import load_config
from gardien.diff import diff
from gardien.errors import GardienError, LedgerError
from gardien.release import stages
from gardien.release.outcome import close
from gardien.release.service import ReleaseService, StepContext

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)
CTX = StepContext(actor="airflow-scheduler", now=NOW)
RID = "R-intent-1"


@dataclass
class Env:
    config_file: Path
    dsns: dict[str, str]
    owner_ledger: str
    writer_ledger: str

    def service(self) -> ReleaseService:
        return ReleaseService(load_config(self.config_file), "standard")


def scalar(dsn: str, query: str, params: Any = None) -> Any:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


@pytest.fixture(scope="module")
def demo(pg_admin_dsn: str) -> Iterator[dict[str, str]]:
    """The demo hospital's three environments, built once per module; tests reset the ones they change."""
    from gardien.demo.generator import build_environments

    prefix = f"gt_int_{uuid.uuid4().hex[:8]}_"
    build = build_environments(pg_admin_dsn, prefix=prefix)
    try:
        yield {e.environment: e.dsn for e in build.environments} | {"_prefix": prefix}
    finally:
        for e in build.environments:
            pg.drop_database(pg_admin_dsn, e.database)


@pytest.fixture
def env(
    demo: dict[str, str], pg_admin_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    """Fresh preprod (a copy of the built one), a migrated ledger, and a config whose ledger DSN is a LOGIN role
    that is only a member of gardien_ledger_writer."""
    prefix = demo["_prefix"]
    suffix = uuid.uuid4().hex[:6]
    preprod = f"{prefix}pp_{suffix}"
    with pg.autocommit(pg_admin_dsn) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{preprod}" TEMPLATE "{prefix}preprod"')
    ledger_db = f"{prefix}ledger_{suffix}"
    owner = pg.create_database(pg_admin_dsn, ledger_db)
    conn = pg.connect(owner)
    ledger.migrate(conn)
    conn.commit()
    conn.close()
    role = f"gt_writer_{suffix}"
    with pg.autocommit(pg_admin_dsn) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE {ledger.WRITER_ROLE}')
    params = psycopg2.extensions.parse_dsn(owner)
    writer = psycopg2.extensions.make_dsn(**{**params, "user": role})
    data = yaml.safe_load((ROOT / "include" / "config" / "gardien.yaml").read_text())
    dsns = {
        "qualif": demo["qualif"],
        "preprod": pg.dsn_for_database(pg_admin_dsn, preprod),
        "prod": demo["prod"],
    }
    for name, dsn in dsns.items():
        data["environments"][name] = {**data["environments"][name], "dsn": dsn}
        data["environments"][name].pop("database", None)
    data["ledger"] = {"dsn": writer}
    data["validation"]["suites_dir"] = str(ROOT / "include" / "expectations")
    data.pop("notifications", None)
    config_file = tmp_path / "gardien.yaml"
    config_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    monkeypatch.setenv("GARDIEN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GARDIEN_CONFIG", str(config_file))
    try:
        yield Env(config_file, dsns, owner, writer)
    finally:
        pg.drop_database(pg_admin_dsn, preprod)
        pg.drop_database(pg_admin_dsn, ledger_db)
        with pg.autocommit(pg_admin_dsn) as conn, conn.cursor() as cur:
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')


def open_release(env: Env) -> ReleaseService:
    svc = env.service()
    svc.open(
        release_id=RID,
        requested_by="parametreur",
        reason="intent tests",
        window_start=None,
        window_end=None,
        ctx=CTX,
    )
    svc.extract(RID, ctx=CTX)
    return svc


def journal_ids(dsn: str) -> list[str]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('gardien.deployment') IS NOT NULL")
            if not cur.fetchone()[0]:
                return []
            cur.execute("SELECT deployment_id FROM gardien.deployment ORDER BY seq")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


class LedgerRecordBlocked:
    """Holds SHARE on ledger.deployments (as the owner): the deploy's record waits right after the target commit."""

    def __init__(self, owner_dsn: str) -> None:
        self.dsn = owner_dsn
        self.conn = psycopg2.connect(owner_dsn)
        with self.conn.cursor() as cur:
            cur.execute("LOCK TABLE ledger.deployments IN SHARE MODE")

    def waiting_pid(
        self, journal_dsn: str, *, proc: subprocess.Popen | None = None, timeout: float = 120.0
    ) -> int:
        """The ledger backend blocked by this lock, once the target's journal holds the committed row."""
        deadline = time.monotonic() + timeout
        # Polled from another connection: inside the lock's transaction pg_stat_activity is a frozen snapshot.
        with pg.autocommit(self.dsn) as watcher:
            while time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(
                        f"the deploy ended early: {proc.stderr.read() if proc.stderr else ''}"
                    )
                with watcher.cursor() as cur:
                    cur.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND pid <> %s",
                        (self.conn.get_backend_pid(),),
                    )
                    row = cur.fetchone()
                if row and journal_ids(journal_dsn):
                    return int(row[0])
                time.sleep(0.2)
        raise AssertionError("the deploy never reached its ledger record")

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


DEPLOY_SCRIPT = """
import sys
from datetime import UTC, datetime
from gardien.release import stages
from gardien.release.service import ReleaseService, StepContext
svc = ReleaseService.from_config_file("standard", sys.argv[1])
stages.deploy(svc, sys.argv[2], "preprod", ctx=StepContext(actor="airflow-scheduler", now=datetime.now(UTC)))
"""


def test_release_steps_run_with_a_writer_only_ledger_role(env: Env) -> None:
    assert (
        scalar(env.writer_ledger, "SELECT has_database_privilege(current_user, current_database(), 'CREATE')")
        is False
    )
    assert scalar(env.writer_ledger, "SELECT has_schema_privilege(current_user, 'ledger', 'CREATE')") is False
    svc = open_release(env)

    deployed = stages.deploy(svc, RID, "preprod", ctx=CTX)
    stages.verify(svc, RID, "preprod", ctx=CTX)
    rolled = stages.rollback(svc, RID, "preprod", reason="operator decision", ctx=CTX)
    outcome = close(svc, RID, ctx=CTX)

    assert deployed["status"] == "applied" and rolled["proven"] is True
    assert outcome.outcome == "rolled_back"
    conn = pg.connect(env.owner_ledger)
    try:
        history = ledger.release_history(conn, RID)
        assert [d.status for d in history.deployments] == ["rolled_back"]
        assert history.release.status == "rolled_back"
        assert ledger.status_mismatches(conn) == ()
        assert ledger.verify_chain(conn).ok
        kinds = [e.kind for e in history.events]
    finally:
        conn.close()
    # the intent precedes the record, and both name the journal row
    assert kinds.index("deployment.started") < kinds.index("deployment.recorded")
    assert kinds.index("rollback.started") < kinds.index("rollback.recorded")
    intent = next(e for e in history.events if e.kind == "deployment.started")
    assert intent.payload["target_deployment_id"] == history.deployments[0].target_deployment_id
    assert journal_ids(env.dsns["preprod"]) == [history.deployments[0].target_deployment_id]


def test_deploy_killed_between_target_commit_and_ledger_record_is_rolled_back_by_the_release(
    env: Env,
) -> None:
    svc = open_release(env)
    blocker = LedgerRecordBlocked(env.owner_ledger)
    proc = subprocess.Popen(
        [sys.executable, "-c", DEPLOY_SCRIPT, str(env.config_file), RID],
        env={**os.environ},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        blocker.waiting_pid(env.dsns["preprod"], proc=proc)
        proc.send_signal(signal.SIGKILL)  # kill -9 between the target commit and the ledger record
        proc.wait(timeout=30)
    finally:
        blocker.release()
    [journal_id] = journal_ids(env.dsns["preprod"])
    assert scalar(env.owner_ledger, "SELECT count(*) FROM ledger.deployments") == 0
    # the intent was committed before the target was touched, with the id the journal row carries
    assert (
        scalar(
            env.owner_ledger,
            "SELECT count(*) FROM ledger.events WHERE kind = 'deployment.started' AND payload->>'target_deployment_id' = %s",
            (journal_id,),
        )
        == 1
    )
    verify = subprocess.run(
        [
            sys.executable,
            "-c",
            "from gardien.cli.main import main; main()",
            "audit",
            "verify",
            "-c",
            str(env.config_file),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == LedgerError.exit_code, verify.stderr
    assert [f["target_deployment_id"] for f in json.loads(verify.stdout)["unrecorded_journal_rows"]] == [
        journal_id
    ]

    result = stages.rollback(svc, RID, "preprod", reason="automatic rollback after a failed stage", ctx=CTX)

    assert result["status"] == "rolled_back" and result["proven"] is True  # not "nothing_to_roll_back"
    conn = pg.connect(env.owner_ledger)
    try:
        history = ledger.release_history(conn, RID)
        assert [(d.target_deployment_id, d.status) for d in history.deployments] == [
            (journal_id, "rolled_back")
        ]
        assert "deployment.reconciled" in {e.kind for e in history.events}
        assert ledger.status_mismatches(conn) == ()
    finally:
        conn.close()


def test_ledger_lost_after_target_commit_then_the_retried_deploy_records_it_once(env: Env) -> None:
    svc = open_release(env)
    blocker = LedgerRecordBlocked(env.owner_ledger)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            stages.deploy(svc, RID, "preprod", ctx=CTX)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        pid = blocker.waiting_pid(env.dsns["preprod"])
        with pg.autocommit(env.owner_ledger) as admin, admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))  # the ledger goes away after the commit
        worker.join(timeout=60)
    finally:
        blocker.release()
    assert errors and isinstance(errors[0], GardienError | psycopg2.Error), errors
    [journal_id] = journal_ids(env.dsns["preprod"])
    assert scalar(env.owner_ledger, "SELECT count(*) FROM ledger.deployments") == 0

    retried = stages.deploy(svc, RID, "preprod", ctx=CTX)  # Airflow's retry of the deploy task

    assert retried["deployment_id"] == journal_id and retried["status"] == "already_applied"
    assert journal_ids(env.dsns["preprod"]) == [journal_id]  # applied once
    conn = pg.connect(env.owner_ledger)
    try:
        history = ledger.release_history(conn, RID)
        assert [(d.target_deployment_id, d.status) for d in history.deployments] == [(journal_id, "applied")]
        reconciled = [e for e in history.events if e.kind == "deployment.reconciled"]
        assert len(reconciled) == 1 and "never recorded" in (reconciled[0].reason or "")
        crosswalked = scalar(env.owner_ledger, "SELECT count(*) FROM ledger.crosswalks")
    finally:
        conn.close()
    assert crosswalked > 0  # the id crosswalk came back from the journal too


def test_audit_reconcile_alerts_on_an_apply_nobody_recorded_then_is_quiet(env: Env) -> None:
    config = load_config(env.config_file)
    changeset = diff(env.dsns["qualif"], env.dsns["preprod"], catalog_config=config.catalog)
    applied = engine_deploy(  # someone applied with the engine directly: no intent, no release
        env.dsns["preprod"], changeset, catalog_config=config.catalog, target="preprod", applied_at=NOW
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "from gardien.cli.main import main; main()",
                "audit",
                *args,
                "-c",
                str(env.config_file),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "GARDIEN_ACTOR": "ops.bob"},
        )

    first = cli("reconcile")
    again = cli("reconcile")
    verify = cli("verify")

    assert first.returncode == LedgerError.exit_code, first.stdout + first.stderr
    assert f"ALERTED: preprod: apply {applied.deployment_id}" in first.stdout
    assert again.returncode == 0 and "every target journal row has its ledger record" in again.stdout
    assert verify.returncode == 0, verify.stdout + verify.stderr
    alert = scalar(
        env.owner_ledger,
        "SELECT actor || ' ' || (payload->>'target_deployment_id') FROM ledger.events WHERE kind = 'deployment.unrecorded'",
    )
    assert alert == f"ops.bob {applied.deployment_id}"


def test_drift_watch_records_an_unrecorded_deployment_before_comparing(env: Env) -> None:
    from gardien.release.drift_watch import watch

    svc = open_release(env)
    blocker = LedgerRecordBlocked(env.owner_ledger)
    proc = subprocess.Popen(
        [sys.executable, "-c", DEPLOY_SCRIPT, str(env.config_file), RID], stderr=subprocess.PIPE, text=True
    )
    try:
        blocker.waiting_pid(env.dsns["preprod"], proc=proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        blocker.release()

    result = watch(load_config(env.config_file), "preprod", actor="drift-watch", now=NOW)

    assert result.reconciled and "recorded now as deployment" in result.reconciled[0]
    assert [d.environment for d in _history(env).deployments] == ["preprod"]
    del svc


def _history(env: Env) -> ledger.ReleaseHistory:
    conn = pg.connect(env.owner_ledger)
    try:
        return ledger.release_history(conn, RID)
    finally:
        conn.close()


def test_manual_rollback_check_finds_a_deployment_killed_before_its_record_and_rolls_it_back(
    env: Env,
) -> None:
    from gardien.release.manual_rollback import check_request, perform

    svc = open_release(env)
    blocker = LedgerRecordBlocked(env.owner_ledger)
    proc = subprocess.Popen(
        [sys.executable, "-c", DEPLOY_SCRIPT, str(env.config_file), RID], stderr=subprocess.PIPE, text=True
    )
    try:
        blocker.waiting_pid(env.dsns["preprod"], proc=proc)
        proc.send_signal(signal.SIGKILL)  # kill -9 between the target commit and the ledger record
        proc.wait(timeout=30)
    finally:
        blocker.release()
    [journal_id] = journal_ids(env.dsns["preprod"])
    assert scalar(env.owner_ledger, "SELECT count(*) FROM ledger.deployments") == 0
    config = load_config(env.config_file)

    # the gardien_rollback DAG's check_request, then its rollback task
    request = check_request(config, RID, "preprod", force=False, ctx=CTX)
    result = perform(svc, request, reason="manual rollback after a killed deploy", ctx=CTX, force=False)

    assert request.target_deployment_id == journal_id  # not "never deployed on preprod"
    assert result["status"] == "rolled_back" and result["proven"] is True
    history = _history(env)
    assert [(d.target_deployment_id, d.status) for d in history.deployments] == [(journal_id, "rolled_back")]
    assert [r.proven for r in history.rollbacks] == [True]
    assert [e.kind for e in history.events].count("deployment.reconciled") == 1
    assert history.release.status == "rolled_back"
    assert (
        scalar(env.owner_ledger, "SELECT count(*) FROM ledger.events WHERE kind = 'deployment.unrecorded'")
        == 0
    )

"""`gardien apply` and `gardien rollback` from the CLI are recorded in the ledger (actor, reason, entry point),
production takes only an approved changeset (or an announced break-glass), and a manual rollback shows in the
release's report — real processes, real PostgreSQL, a fake Slack."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml
from fakeslack import FakeSlack
from test_engine_support import BASE_STATE, CATALOG, database_pair, load, reset

from gardien import ledger, pg
from gardien.changeset import Changeset
from gardien.errors import ApprovalError, UsageError

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def databases(pg_admin_dsn: str) -> Iterator[tuple[str, str, str]]:
    with database_pair(pg_admin_dsn, "clirec") as (src, tgt):
        name = f"gt_clirec_ledger_{uuid.uuid4().hex[:8]}"
        ledger_dsn = pg.create_database(pg_admin_dsn, name)
        try:
            yield src, tgt, ledger_dsn
        finally:
            pg.drop_database(pg_admin_dsn, name)


@pytest.fixture
def setup(databases, tmp_path: Path, fake_slack: FakeSlack) -> dict[str, Any]:
    source, target, ledger_dsn = databases
    for dsn in (source, target):
        reset(dsn)
    load(source, BASE_STATE)
    conn = psycopg2.connect(ledger_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS ledger CASCADE")
    conn.close()
    conn = pg.connect(ledger_dsn)
    ledger.migrate(conn)
    conn.commit()
    conn.close()
    config = tmp_path / "gardien.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "environments": {
                    "src": {"dsn": source, "role": "source"},
                    "tgt": {"dsn": target, "production": True},
                },
                "ledger": {"dsn": ledger_dsn},
                "catalog": CATALOG,
                "release_paths": {"std": {"source": "src", "stages": [{"name": "prod", "targets": ["tgt"]}]}},
                "approvals": {
                    "groups": {"cab": ["chef.projet", "dsi.adjoint", "resp.exploitation"]},
                    "environments": {"tgt": {"quorum": 2, "groups": ["cab"]}},
                },
                "notifications": {
                    "slack": {
                        "channel": "#prod",
                        "token_env": "SLACK_BOT_TOKEN",
                        "base_url_env": "SLACK_BASE_URL",
                        "outbox": str(tmp_path / "outbox.jsonl"),
                    }
                },
            }
        )
    )
    changeset = tmp_path / "cs.json"
    env = {
        "SLACK_BOT_TOKEN": fake_slack.token,
        "SLACK_BASE_URL": fake_slack.base_url,
        "GARDIEN_ACTOR": "ops.alice",
    }
    assert run(config, env, "diff", "src", "tgt", "-o", str(changeset)).returncode == 0
    return {"config": config, "env": env, "changeset": changeset, "ledger": ledger_dsn, "target": target}


def run(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gardien.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "GARDIEN_CONFIG": str(config), **env},
        timeout=180,
        check=False,
    )


def events(ledger_dsn: str) -> list[ledger.Event]:
    conn = pg.connect(ledger_dsn)
    try:
        return list(ledger.list_events(conn))
    finally:
        conn.close()


def journal_count(target: str) -> int:
    conn = psycopg2.connect(target)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('gardien.deployment') IS NOT NULL")
            if not cur.fetchone()[0]:
                return 0
            cur.execute("SELECT count(*) FROM gardien.deployment")
            return cur.fetchone()[0]
    finally:
        conn.close()


def approved_release(
    ledger_dsn: str, changeset_id: str, *, approvers: tuple[str, ...], window: bool = True
) -> None:
    conn = pg.connect(ledger_dsn)
    try:
        start = NOW - timedelta(minutes=5) if window else NOW - timedelta(days=2)
        ledger.create_release(
            conn,
            release_id="R-cli",
            path=["std", "tgt"],
            requested_by="parametreur",
            reason="cli test",
            at=NOW - timedelta(minutes=10),
            window_start=start,
            window_end=start + timedelta(hours=2),
        )
        body = json.loads(Path(changeset_file_of[changeset_id]).read_text())
        cs = Changeset.from_json(json.dumps(body))
        ledger.put_changeset(conn, changeset_id=cs.id, body=cs.body_json())
        ledger.attach_changeset(conn, release_id="R-cli", changeset_id=cs.id, actor="airflow", at=NOW)
        for who in approvers:
            ledger.record_approval(
                conn, release_id="R-cli", changeset_id=cs.id, approver=who, decision="approved", at=NOW
            )
        conn.commit()
    finally:
        conn.close()


changeset_file_of: dict[str, str] = {}


def cs_id(path: Path) -> str:
    cs = Changeset.from_json(path.read_text())
    changeset_file_of[cs.id] = str(path)
    return cs.id


def test_cli_apply_to_production_without_an_approved_release_is_refused(setup) -> None:
    result = run(setup["config"], setup["env"], "apply", str(setup["changeset"]), "tgt")

    assert result.returncode == ApprovalError.exit_code, result.stderr
    assert "production target" in result.stderr and "Nothing was applied" in result.stderr
    assert journal_count(setup["target"]) == 0


def test_cli_apply_with_quorum_not_met_or_window_closed_is_refused(setup) -> None:
    cid = cs_id(setup["changeset"])
    approved_release(setup["ledger"], cid, approvers=("chef.projet",))  # quorum is 2

    result = run(setup["config"], setup["env"], "apply", str(setup["changeset"]), "tgt")

    assert result.returncode == ApprovalError.exit_code and "R-cli: pending (missing:" in result.stderr
    assert journal_count(setup["target"]) == 0


def test_cli_apply_of_an_approved_changeset_is_recorded_and_its_manual_rollback_shows_in_the_report(
    setup, tmp_path: Path
) -> None:
    cid = cs_id(setup["changeset"])
    approved_release(setup["ledger"], cid, approvers=("chef.projet", "dsi.adjoint"))

    applied = run(
        setup["config"], setup["env"], "apply", str(setup["changeset"]), "tgt", "--json", "--reason", "CAB ok"
    )

    assert applied.returncode == 0, applied.stderr
    dep_id = json.loads(applied.stdout)["deployment_id"]
    conn = pg.connect(setup["ledger"])
    try:
        history = ledger.release_history(conn, "R-cli")
        [dep] = history.deployments
        assert (dep.target_deployment_id, dep.status, dep.actor) == (dep_id, "applied", "ops.alice")
        assert dep.fingerprints["entry_point"] == "cli"
        intent = next(e for e in history.events if e.kind == "deployment.started")
        assert (intent.actor, intent.reason, intent.payload["entry_point"]) == ("ops.alice", "CAB ok", "cli")
        ledger.set_deployment_status(conn, deployment_id=dep.id, status="verified", actor="airflow", at=NOW)
        ledger.set_release_status(conn, release_id="R-cli", status="closed", actor="airflow", at=NOW)
        ledger.append_event(
            conn,
            kind="release.closed",
            actor="airflow",
            at=NOW,
            release_id="R-cli",
            payload={"outcome": "released", "ok": True, "detail": "deployed and verified on tgt"},
        )
        conn.commit()
    finally:
        conn.close()

    rolled = run(setup["config"], setup["env"], "rollback", "tgt", dep_id, "--reason", "wrong dose limit")

    assert rolled.returncode == 0, rolled.stderr
    conn = pg.connect(setup["ledger"])
    try:
        history = ledger.release_history(conn, "R-cli")
        assert [d.status for d in history.deployments] == ["rolled_back"]
        assert history.release.status == "rolled_back"
        [rb] = history.rollbacks
        assert rb.actor == "ops.alice" and "wrong dose limit" in rb.reason and "via cli" in rb.reason
    finally:
        conn.close()
    report = run(setup["config"], setup["env"], "report", "R-cli", "-o", str(tmp_path / "r"), "--json")
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    texts = [a["text"] for a in data["alerts"]]
    assert any(t.startswith("ROLLED BACK AFTER THE RELEASE CLOSED on tgt") for t in texts), texts
    assert [d["status"] for d in data["deployments"]] == ["rolled_back"], report.stderr


def test_a_hand_edited_changeset_with_a_recomputed_id_is_refused_on_production(setup, tmp_path: Path) -> None:
    cid = cs_id(setup["changeset"])
    approved_release(setup["ledger"], cid, approvers=("chef.projet", "dsi.adjoint"))
    original = Changeset.from_json(setup["changeset"].read_text())
    forged = dataclasses.replace(original, tables=original.tables[:-1])  # hand-edited, id recomputed
    forged_file = tmp_path / "forged.json"
    forged_file.write_text(forged.to_json())
    assert forged.id != cid

    result = run(setup["config"], setup["env"], "apply", str(forged_file), "tgt")

    assert result.returncode == ApprovalError.exit_code, result.stdout + result.stderr
    assert journal_count(setup["target"]) == 0


def test_break_glass_needs_a_reason_then_is_recorded_and_announced(setup, fake_slack: FakeSlack) -> None:
    no_reason = run(setup["config"], setup["env"], "apply", str(setup["changeset"]), "tgt", "--break-glass")
    assert no_reason.returncode == UsageError.exit_code and "--reason" in no_reason.stderr
    assert journal_count(setup["target"]) == 0

    result = run(
        setup["config"],
        setup["env"],
        "apply",
        str(setup["changeset"]),
        "tgt",
        "--break-glass",
        "--reason",
        "INC-4711 dose limit wrong in production",
    )

    assert result.returncode == 0, result.stderr
    kinds = {e.kind: e for e in events(setup["ledger"])}
    assert {"deployment.started", "break_glass.used", "target.applied"} <= set(kinds)
    glass = kinds["break_glass.used"]
    assert (glass.actor, glass.reason) == ("ops.alice", "INC-4711 dose limit wrong in production")
    assert kinds["target.applied"].payload["break_glass"] is True
    assert any("BREAK-GLASS" in m["text"] and "ops.alice" in m["text"] for m in fake_slack.messages)


def test_break_glass_with_slack_down_still_applies_and_records(setup, fake_slack: FakeSlack) -> None:
    env = {**setup["env"], "SLACK_BASE_URL": "http://127.0.0.1:9/"}
    result = run(
        setup["config"],
        env,
        "apply",
        str(setup["changeset"]),
        "tgt",
        "--break-glass",
        "--reason",
        "INC-1 outage",
    )
    assert result.returncode == 0, result.stderr
    assert "break_glass.used" in {e.kind for e in events(setup["ledger"])}
    [queued] = (
        (setup["config"].parent / "outbox.jsonl").read_text().splitlines()
    )  # kept for when Slack is back
    assert "BREAK-GLASS" in queued


def _rollback_cli_in_process(setup, dep_id: str, monkeypatch, between) -> None:
    """`gardien rollback tgt DEP` in this process; ``between()`` runs after the target's commit, before the record."""
    import gardien.rollback
    from gardien.cli.engine import rollback_cmd

    engine_rollback = gardien.rollback.rollback

    def committed_then_between(*args: Any, **kwargs: Any) -> Any:
        result = engine_rollback(*args, **kwargs)  # committed on the target
        between()
        return result

    monkeypatch.setattr(gardien.rollback, "rollback", committed_then_between)
    rollback_cmd(
        target="tgt", deployment_id=dep_id, config=setup["config"], reason="wrong dose", actor="ops.alice"
    )


def _applied_release_deployment(setup) -> str:
    cid = cs_id(setup["changeset"])
    approved_release(setup["ledger"], cid, approvers=("chef.projet", "dsi.adjoint"))
    applied = run(
        setup["config"], setup["env"], "apply", str(setup["changeset"]), "tgt", "--json", "--reason", "CAB"
    )
    assert applied.returncode == 0, applied.stderr
    return json.loads(applied.stdout)["deployment_id"]


def _rollback_records(ledger_dsn: str) -> tuple[int, int]:
    conn = psycopg2.connect(ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT (SELECT count(*) FROM ledger.rollbacks), "
                "(SELECT count(*) FROM ledger.events WHERE kind IN ('rollback.recorded', 'target.rolled_back', "
                "'rollback.unrecorded'))"
            )
            return cur.fetchone()
    finally:
        conn.close()


def test_cli_rollback_recorded_once_when_a_reconciler_records_it_first(setup, monkeypatch) -> None:
    from gardien.config import load_config
    from gardien.release.reconcile import reconcile_environment
    from gardien.release.service import StepContext

    dep_id = _applied_release_deployment(setup)
    found: list[Any] = []

    def drift_watch_meanwhile() -> None:  # a reconciler (drift watch, audit reconcile) in another thread
        def reconciler() -> None:
            ctx = StepContext(actor="gardien-drift-watch", now=datetime.now(UTC))
            found.extend(reconcile_environment(load_config(setup["config"]), "tgt", ctx=ctx))

        worker = threading.Thread(target=reconciler)
        worker.start()
        worker.join(timeout=120)

    _rollback_cli_in_process(setup, dep_id, monkeypatch, drift_watch_meanwhile)

    assert [(f.what, f.action) for f in found] == [("rolled_back", "recorded")]  # it did record it first
    assert _rollback_records(setup["ledger"]) == (1, 1)  # and the CLI did not record it again
    conn = pg.connect(setup["ledger"])
    try:
        history = ledger.release_history(conn, "R-cli")
        assert [d.status for d in history.deployments] == ["rolled_back"]
        assert history.release.status == "rolled_back"  # the CLI still closes the release's status
        assert ledger.status_mismatches(conn) == ()
    finally:
        conn.close()


def test_cli_rollback_recorded_once_when_a_reconciler_waits_on_its_lock(setup, monkeypatch) -> None:
    """The other order: the CLI asks for the ledger lock first, a reconciler queues behind it (both waiting on a
    lock this test holds); the reconciler's look under the lock sees the CLI's record."""
    from gardien.config import load_config
    from gardien.ledger.store import APPEND_LOCK_KEY
    from gardien.release.reconcile import reconcile_environment
    from gardien.release.service import StepContext

    dep_id = _applied_release_deployment(setup)
    committed, go = threading.Event(), threading.Event()
    found: list[Any] = []

    def pause() -> None:
        committed.set()
        assert go.wait(timeout=120)

    def reconcile() -> None:
        ctx = StepContext(actor="gardien-drift-watch", now=datetime.now(UTC))
        found.extend(reconcile_environment(load_config(setup["config"]), "tgt", ctx=ctx))

    def waiters(count: int) -> None:
        with pg.autocommit(setup["ledger"]) as watcher, watcher.cursor() as cur:
            for _ in range(1200):
                cur.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                if cur.fetchone()[0] >= count:
                    return
                time.sleep(0.1)
        raise AssertionError(f"never {count} waiter(s) on the ledger lock")

    cli = threading.Thread(target=_rollback_cli_in_process, args=(setup, dep_id, monkeypatch, pause))
    reconciler = threading.Thread(target=reconcile)
    holder = psycopg2.connect(setup["ledger"])
    try:
        cli.start()
        assert committed.wait(
            timeout=120
        )  # the target committed the rollback; the ledger knows only the intent
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))  # held to holder.rollback()
        go.set()
        waiters(1)  # the CLI's record waits for the lock
        reconciler.start()
        waiters(2)  # the reconciler saw the row unrecorded and queues behind the CLI
        holder.rollback()
        cli.join(timeout=120)
        reconciler.join(timeout=120)
    finally:
        go.set()
        holder.close()

    assert not cli.is_alive() and not reconciler.is_alive()
    assert found == []  # its second look, under the lock, found the CLI's record
    assert _rollback_records(setup["ledger"]) == (1, 1)


def test_drift_watch_announces_an_unrecorded_apply_on_slack_through_an_outage(
    setup, fake_slack: FakeSlack, monkeypatch
) -> None:
    from gardien.apply import deploy
    from gardien.config import load_config
    from gardien.notify import notifier_from_settings
    from gardien.release import notices
    from gardien.release.drift_watch import watch

    for name, value in setup["env"].items():
        monkeypatch.setenv(name, value)
    config = load_config(setup["config"])
    outbox = setup["config"].parent / "outbox.jsonl"
    assert watch(config, "tgt", actor="gardien-drift-watch", now=NOW).status == "baseline_established"
    applied = deploy(  # someone applies with the engine directly: no intent, no release, no ledger record
        setup["target"],
        Changeset.from_json(setup["changeset"].read_text()),
        catalog_config=config.catalog,
        target="tgt",
        applied_at=NOW,
    )
    fake_slack.set_mode("down")

    result = watch(config, "tgt", actor="gardien-drift-watch", now=NOW)
    notices.announce_watch(config, result)  # what the watch task does with it

    [alert] = result.alerted
    assert applied.deployment_id in alert and result.reconciled == (alert,)
    assert [e.kind for e in events(setup["ledger"])].count("deployment.unrecorded") == 1
    assert fake_slack.messages == []
    [queued] = outbox.read_text().splitlines()  # Slack down: kept for later, the watch went on
    assert "ALERT" in queued and applied.deployment_id in queued

    fake_slack.set_mode("normal")
    notifier_from_settings(config.notifications, environ=os.environ).flush_outbox()
    again = watch(config, "tgt", actor="gardien-drift-watch", now=NOW)
    notices.announce_watch(config, again)

    assert again.reconciled == () and again.alerted == ()  # recorded once, so announced once
    [delivered] = [m for m in fake_slack.messages if "ALERT" in m["text"]]
    assert applied.deployment_id in delivered["text"] and "tgt" in delivered["text"]
    assert outbox.read_text().strip() == ""


def _edit_production_after_the_release(setup) -> None:
    """A direct production edit of a field the release set (a unit's label): no rollback may overwrite it."""
    conn = psycopg2.connect(setup["target"])
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE unit SET label = 'Urgences adultes' WHERE code = 'U1'")
            assert cur.rowcount == 1
    finally:
        conn.close()


def _close_release(ledger_dsn: str) -> None:
    conn = pg.connect(ledger_dsn)
    try:
        [dep] = ledger.release_history(conn, "R-cli").deployments
        ledger.set_deployment_status(conn, deployment_id=dep.id, status="verified", actor="airflow", at=NOW)
        ledger.set_release_status(conn, release_id="R-cli", status="closed", actor="airflow", at=NOW)
        conn.commit()
    finally:
        conn.close()


def test_cli_rollback_refused_by_a_later_production_edit_is_recorded_and_shown_still_in_effect(
    setup, tmp_path: Path
) -> None:
    from gardien.board import BoardSettings, pages
    from gardien.board.views import AirflowFacts, Viewer
    from gardien.config import load_config

    dep_id = _applied_release_deployment(setup)
    _close_release(setup["ledger"])
    _edit_production_after_the_release(setup)

    refused = run(setup["config"], setup["env"], "rollback", "tgt", dep_id, "--reason", "wrong dose limit")

    assert refused.returncode == 10, refused.stderr  # README: 10 rollback
    assert "cannot be rolled back" in refused.stderr and "Nothing was changed" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "Refused rollback recorded in the ledger" in refused.stderr
    assert [r[0] for r in _query(setup["target"], "SELECT label FROM unit WHERE code = 'U1'")] == [
        "Urgences adultes"
    ]
    conn = pg.connect(setup["ledger"])
    try:
        history = ledger.release_history(conn, "R-cli")
        assert [d.status for d in history.deployments] == ["rollback_refused"]
        assert history.release.status == "closed"  # the release stays what it was: nothing was undone
        assert history.rollbacks == ()
        [ev] = [e for e in history.events if e.kind == "deployment.rollback_refused"]
        assert ev.actor == "ops.alice"
        assert "wrong dose limit" in ev.reason and "via cli" in ev.reason
        assert ev.payload["still_deployed"] is True and ev.payload["entry_point"] == "cli"
        [edit] = ev.payload["later_edits"]
        assert (edit["table"], edit["key"], edit["field"], edit["now"]) == (
            "unit",
            ["U1"],
            "label",
            "Urgences adultes",
        )
        assert ledger.status_mismatches(conn) == ()
    finally:
        conn.close()
    report = run(setup["config"], setup["env"], "report", "R-cli", "-o", str(tmp_path / "r"), "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    texts = [a["text"] for a in data["alerts"]]
    assert any(t.startswith("ROLLBACK REFUSED on tgt") and "STILL IN EFFECT" in t for t in texts), texts
    cfg = load_config(setup["config"])
    settings = BoardSettings.from_config(cfg)
    conn = pg.connect(setup["ledger"])
    try:
        html = pages.release_html(
            conn,
            row=pages.release_row(conn, "R-cli"),
            settings=settings,
            viewer=Viewer(user_id="cab", name="cab", can_rollback=False),
            facts=AirflowFacts(),
            root="/gardien",
            now=datetime.now(UTC),
        )
    finally:
        conn.close()
    assert "ROLLBACK REFUSED on tgt" in html and "STILL IN" in html and "EFFECT" in html
    verify = run(setup["config"], setup["env"], "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_cli_rollback_refused_outside_a_release_is_recorded(setup) -> None:
    applied = run(
        setup["config"],
        setup["env"],
        "apply",
        str(setup["changeset"]),
        "tgt",
        "--json",
        "--break-glass",
        "--reason",
        "INC-9 hotfix",
    )
    assert applied.returncode == 0, applied.stderr
    dep_id = json.loads(applied.stdout)["deployment_id"]
    _edit_production_after_the_release(setup)

    refused = run(setup["config"], setup["env"], "rollback", "tgt", dep_id, "--reason", "undo INC-9")

    assert refused.returncode == 10, refused.stderr
    [ev] = [e for e in events(setup["ledger"]) if e.kind == "target.rollback_refused"]
    assert ev.actor == "ops.alice" and ev.reason.startswith("undo INC-9")
    assert ev.payload["target_deployment_id"] == dep_id and ev.payload["environment"] == "tgt"
    assert ev.payload["still_deployed"] is True and ev.payload["entry_point"] == "cli"
    assert [e["field"] for e in ev.payload["later_edits"]] == ["label"]


def test_cli_rollback_refused_while_the_ledger_is_unreachable_says_so(
    setup, monkeypatch, pg_admin_dsn: str
) -> None:
    import gardien.rollback
    from gardien.cli.engine import rollback_cmd
    from gardien.errors import RollbackError

    dep_id = _applied_release_deployment(setup)
    _edit_production_after_the_release(setup)
    ledger_db = psycopg2.extensions.parse_dsn(setup["ledger"])["dbname"]
    engine_rollback = gardien.rollback.rollback

    def ledger_down_then_engine(*args: Any, **kwargs: Any) -> Any:  # after the intent, before the outcome
        with pg.autocommit(pg_admin_dsn) as admin, admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{ledger_db}" ALLOW_CONNECTIONS false')
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (ledger_db,)
            )
        return engine_rollback(*args, **kwargs)

    monkeypatch.setattr(gardien.rollback, "rollback", ledger_down_then_engine)
    try:
        with pytest.raises(RollbackError) as caught:
            rollback_cmd(
                target="tgt",
                deployment_id=dep_id,
                config=setup["config"],
                reason="wrong dose",
                actor="ops.alice",
            )
    finally:
        with pg.autocommit(pg_admin_dsn) as admin, admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{ledger_db}" ALLOW_CONNECTIONS true')

    message = str(caught.value)
    assert caught.value.exit_code == 10 and caught.value.changed is False
    assert "Nothing was written to tgt" in message
    assert "could not be recorded in the ledger" in message and "cannot connect" in message
    kinds = [e.kind for e in events(setup["ledger"])]
    assert "rollback.started" in kinds and "deployment.rollback_refused" not in kinds


def _query(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall()
    finally:
        conn.close()

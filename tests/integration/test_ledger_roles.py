"""The ledger's roles on real PostgreSQL: the writer writes but cannot forge a status or run DDL, statuses
follow the chained events, and a status forged by the owner with triggers off is named by `audit verify` and
by the release report. `gardien ledger migrate` is the only DDL, once per schema version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest

from gardien import ledger, pg
from gardien.errors import LedgerError

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
BODY = '{"tables":[]}'
CS = __import__("hashlib").sha256(BODY.encode()).hexdigest()


def gardien(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gardien.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=180,
        check=False,
    )


def as_role(dsn: str, role: str) -> str:
    """``dsn`` connecting as ``role`` (the test server trusts local connections)."""
    params = psycopg2.extensions.parse_dsn(dsn)
    params.pop("password", None)
    return psycopg2.extensions.make_dsn(**{**params, "user": role})


@pytest.fixture
def writer_login(pg_admin_dsn: str) -> Iterator[Callable[[str], str]]:
    """Factory: a fresh LOGIN role that is only a member of gardien_ledger_writer; ``dsn`` → its DSN."""
    roles: list[str] = []

    def make(dsn: str) -> str:
        role = f"gt_writer_{uuid.uuid4().hex[:8]}"
        with pg.autocommit(pg_admin_dsn) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE {ledger.WRITER_ROLE}')
        roles.append(role)
        return as_role(dsn, role)

    yield make
    with pg.autocommit(pg_admin_dsn) as conn, conn.cursor() as cur:
        for role in roles:
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def owner_ledger(make_db: Callable[[str], str]) -> str:
    dsn = make_db("ledger")
    conn = pg.connect(dsn)
    try:
        state = ledger.migrate(conn)
        conn.commit()
    finally:
        conn.close()
    assert state.applied and state.version == ledger.SCHEMA_VERSION
    return dsn


def record_rolled_back_release(dsn: str) -> int:
    """A release deployed, rolled back with proof and closed as rolled_back — written as the given role."""
    conn = pg.connect(dsn)
    try:
        at = iter(T0 + timedelta(minutes=i) for i in range(50))
        ledger.create_release(
            conn,
            release_id="R-1",
            path=["std", "prod"],
            requested_by="parametreur",
            reason="test",
            at=next(at),
        )
        ledger.put_changeset(conn, changeset_id=CS, body=BODY)
        ledger.attach_changeset(conn, release_id="R-1", changeset_id=CS, actor="airflow", at=next(at))
        ledger.set_release_status(conn, release_id="R-1", status="deploying", actor="airflow", at=next(at))
        dep = ledger.record_deployment(
            conn,
            release_id="R-1",
            environment="prod",
            changeset_id=CS,
            status="applied",
            actor="airflow",
            at=next(at),
            target_deployment_id="dep-1",
        )
        ledger.record_rollback(
            conn,
            deployment_id=dep.id,
            proven=True,
            fingerprints={"expected": "a" * 64, "restored": "a" * 64},
            reason="verification failed",
            actor="airflow",
            at=next(at),
        )
        ledger.set_release_status(conn, release_id="R-1", status="rolled_back", actor="airflow", at=next(at))
        ledger.append_event(
            conn,
            kind="release.closed",
            actor="airflow",
            at=next(at),
            release_id="R-1",
            payload={"outcome": "rolled_back", "ok": False, "detail": "rolled back on prod, proven"},
        )
        conn.commit()
        return dep.id
    finally:
        conn.close()


def scalar(dsn: str, query: str) -> object:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_statuses_follow_events_written_by_the_writer_role(owner_ledger: str, writer_login) -> None:
    writer = writer_login(owner_ledger)
    dep_id = record_rolled_back_release(writer)  # the least-privileged role can record a whole release

    assert scalar(owner_ledger, "SELECT status FROM ledger.releases WHERE id = 'R-1'") == "rolled_back"
    assert scalar(owner_ledger, f"SELECT status FROM ledger.deployments WHERE id = {dep_id}") == "rolled_back"
    assert scalar(owner_ledger, "SELECT changeset_id FROM ledger.releases WHERE id = 'R-1'") == CS
    conn = pg.connect(owner_ledger)
    try:
        assert ledger.status_mismatches(conn) == ()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.deployments SET status = 'verified' WHERE status = 'rolled_back'",
        "UPDATE ledger.releases SET status = 'closed'",
        "UPDATE ledger.releases SET changeset_id = NULL",
        "SELECT set_config('gardien.applying_event', '1', true); UPDATE ledger.releases SET status = 'closed'",
        "CREATE TABLE ledger.extra (x int)",
        "ALTER TABLE ledger.events DISABLE TRIGGER USER",
        "DELETE FROM ledger.deployments",
    ],
    ids=[
        "deployment-status",
        "release-status",
        "release-changeset",
        "spoofed-event-flag",
        "ddl",
        "triggers",
        "delete",
    ],
)
def test_writer_role_cannot_forge_or_run_ddl(owner_ledger: str, writer_login, statement: str) -> None:
    writer = writer_login(owner_ledger)
    record_rolled_back_release(writer)
    conn = psycopg2.connect(writer)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()
    assert scalar(owner_ledger, "SELECT status FROM ledger.releases WHERE id = 'R-1'") == "rolled_back"


def test_owner_update_with_triggers_on_is_refused(owner_ledger: str) -> None:
    record_rolled_back_release(owner_ledger)
    conn = psycopg2.connect(owner_ledger)
    try:
        with pytest.raises(psycopg2.Error, match="change only through a chained event"), conn.cursor() as cur:
            cur.execute("UPDATE ledger.deployments SET status = 'verified' WHERE status = 'rolled_back'")
    finally:
        conn.close()


def _forge(dsn: str) -> None:
    """The owner (here a superuser) disables triggers for the session and rewrites the outcome."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            cur.execute("UPDATE ledger.deployments SET status = 'verified' WHERE status = 'rolled_back'")
            cur.execute("UPDATE ledger.releases SET status = 'closed'")
    finally:
        conn.close()


def test_forged_statuses_are_named_by_audit_verify(owner_ledger: str) -> None:
    dep_id = record_rolled_back_release(owner_ledger)
    ok = gardien("audit", "verify", "--dsn", owner_ledger, "--no-journals")
    assert ok.returncode == 0, ok.stderr

    _forge(owner_ledger)
    result = gardien("audit", "verify", "--dsn", owner_ledger, "--no-journals")

    assert result.returncode == LedgerError.exit_code, result.stdout + result.stderr
    assert (
        f"ledger.deployments row {dep_id} (release R-1): status is 'verified' but its chained events say "
        "'rolled_back'" in result.stdout
    )
    assert (
        "ledger.releases row R-1 (release R-1): status is 'closed' but its chained events say 'rolled_back'"
        in (result.stdout)
    )
    assert "2 record(s) whose status does not match their chained events" in result.stderr
    as_json = gardien("audit", "verify", "--dsn", owner_ledger, "--no-journals", "--json")
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and {m["table"] for m in data["status_mismatches"]} == {
        "releases",
        "deployments",
    }


def test_forged_status_raises_an_alert_in_the_report(owner_ledger: str, tmp_path) -> None:
    record_rolled_back_release(owner_ledger)
    _forge(owner_ledger)

    result = gardien("report", "R-1", "--dsn", owner_ledger, "-o", str(tmp_path), "--json")

    assert result.returncode == LedgerError.exit_code, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    texts = [a["text"] for a in report["alerts"] if a["level"] == "danger"]
    assert any("STATUS NOT BACKED BY THE AUDIT CHAIN" in t and "'verified'" in t for t in texts), texts
    assert "STATUS NOT BACKED BY THE AUDIT CHAIN" in (tmp_path / "report.html").read_text()


def test_migrate_is_versioned_and_idempotent(owner_ledger: str) -> None:
    conn = pg.connect(owner_ledger)
    try:
        again = ledger.migrate(conn)
        conn.commit()
    finally:
        conn.close()
    assert not again.applied
    assert scalar(owner_ledger, "SELECT count(*) FROM ledger.schema_versions") == 1
    cli = gardien("ledger", "migrate", "--dsn", owner_ledger)
    assert cli.returncode == 0, cli.stderr
    assert f"already at version {ledger.SCHEMA_VERSION}" in cli.stdout
    assert scalar(owner_ledger, "SELECT count(*) FROM ledger.schema_versions") == 1


def test_migrate_upgrades_a_ledger_of_the_previous_version(owner_ledger: str, writer_login) -> None:
    """A ledger made by the unversioned schema (writer could UPDATE statuses) is brought to this version."""
    conn = psycopg2.connect(owner_ledger)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("DROP TABLE ledger.schema_versions")
            cur.execute("GRANT UPDATE (status) ON ledger.deployments TO gardien_ledger_writer")
    finally:
        conn.close()
    writer = writer_login(owner_ledger)
    step = pg.connect(writer)
    try:
        with pytest.raises(LedgerError, match=r"gardien ledger migrate"):
            ledger.require_schema(step)
    finally:
        step.close()

    cli = gardien("ledger", "migrate", "--dsn", owner_ledger, "--json")

    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["applied"] is True
    assert (
        scalar(
            owner_ledger,
            "SELECT has_column_privilege('gardien_ledger_writer', 'ledger.deployments', 'status', 'UPDATE')",
        )
        is False
    )
    step = pg.connect(writer)
    try:
        ledger.require_schema(step)
    finally:
        step.close()


def test_migrate_as_the_writer_is_refused_naming_the_owner(owner_ledger: str, writer_login) -> None:
    writer = writer_login(owner_ledger)
    conn = psycopg2.connect(owner_ledger)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE ledger.schema_versions SET digest = repeat('0', 64)")  # an older schema text
    finally:
        conn.close()

    result = gardien("ledger", "migrate", "--dsn", writer, "--no-create-database")

    assert result.returncode == LedgerError.exit_code, result.stdout + result.stderr
    assert "as the ledger's owner" in result.stderr and "Traceback" not in result.stderr
    assert scalar(owner_ledger, "SELECT digest FROM ledger.schema_versions") == "0" * 64  # nothing changed


def test_migrate_grants_the_writer_role_to_a_login(owner_ledger: str, pg_admin_dsn: str) -> None:
    role = f"gt_login_{uuid.uuid4().hex[:8]}"
    with pg.autocommit(pg_admin_dsn) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        result = gardien("ledger", "migrate", "--dsn", owner_ledger, "--grant-writer", role)
        assert result.returncode == 0, result.stderr
        record_rolled_back_release(as_role(owner_ledger, role))
    finally:
        with pg.autocommit(pg_admin_dsn) as conn, conn.cursor() as cur:
            cur.execute(f'DROP ROLE "{role}"')

"""Releases, changesets and records in the ledger: each refusal, and a whole release's story on the chain."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from gardien import pg
from gardien.errors import ApprovalError, ChangesetError, LedgerError
from gardien.ledger import (
    AirflowIds,
    attach_changeset,
    create_release,
    crosswalk_digest,
    ensure_schema,
    get_changeset,
    get_crosswalk,
    get_release,
    next_release_id,
    put_changeset,
    record_approval,
    record_crosswalk,
    record_deployment,
    record_rollback,
    record_validation,
    release_history,
    set_deployment_status,
    set_release_status,
    verify_chain,
)

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
LEDGER_TABLES = (
    "events",
    "crosswalks",
    "rollbacks",
    "deployments",
    "approvals",
    "validation_results",
    "releases",
    "changesets",
)
BODY = json.dumps(
    {"inserts": {"medicament": [["UCD-1"]]}, "version": 1}, sort_keys=True, separators=(",", ":")
)
BODY_ID = hashlib.sha256(BODY.encode()).hexdigest()
RID = "R-2026-11-28-001"


@pytest.fixture(scope="module")
def shared_ledger(pg_admin_dsn: str) -> Iterator[str]:
    """One ledger database per module (creating one per test costs seconds); each test resets it."""
    name = f"gt_ledger_{uuid.uuid4().hex[:10]}"
    dsn = pg.create_database(pg_admin_dsn, name)
    conn = pg.connect(dsn)
    ensure_schema(conn)
    conn.commit()
    conn.close()
    yield dsn
    pg.drop_database(pg_admin_dsn, name)


@pytest.fixture
def ledger_dsn(shared_ledger: str) -> str:
    """The shared ledger, emptied as only a superuser can: guards off, truncate, guards back on."""
    tables = sql.SQL(", ").join(sql.Identifier("ledger", t) for t in LEDGER_TABLES)
    conn = pg.connect(shared_ledger)
    try:
        with conn.cursor() as cur:
            for table in LEDGER_TABLES:
                cur.execute(
                    sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier("ledger", table))
                )
            cur.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(tables))
            for table in LEDGER_TABLES:
                cur.execute(
                    sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier("ledger", table))
                )
        conn.commit()
    finally:
        conn.close()
    return shared_ledger


@pytest.fixture
def conn(ledger_dsn: str) -> Iterator[psycopg2.extensions.connection]:
    connection = pg.connect(ledger_dsn)
    yield connection
    connection.close()


@pytest.fixture
def release(conn: psycopg2.extensions.connection) -> str:
    """A release carrying BODY, requested by chef.projet."""
    create_release(
        conn,
        release_id=RID,
        path=["qualif", "preprod", "prod"],
        requested_by="chef.projet",
        reason="Nouveau médicament au livret",
        at=T0,
        window_start=T0 + timedelta(hours=2),
        window_end=T0 + timedelta(hours=4),
    )
    put_changeset(conn, changeset_id=BODY_ID, body=BODY)
    attach_changeset(conn, release_id=RID, changeset_id=BODY_ID, actor="svc-airflow", at=T0)
    conn.commit()
    return RID


def test_release_full_story_recorded_and_chained(conn: psycopg2.extensions.connection, release: str) -> None:
    airflow = AirflowIds(dag_id="gardien_release", run_id="manual__R1", task_id="deploy_prod")
    record_validation(
        conn,
        release_id=release,
        changeset_id=BODY_ID,
        environment="preprod",
        passed=True,
        report={"failures": [], "checked": 12},
        actor="svc-airflow",
        at=T0,
    )
    record_approval(
        conn, release_id=release, changeset_id=BODY_ID, approver="pharma.chef", decision="approved", at=T0
    )
    deployment = record_deployment(
        conn,
        release_id=release,
        environment="prod",
        changeset_id=BODY_ID,
        status="applied",
        actor="svc-airflow",
        at=T0,
        target_deployment_id="dep-7",
        fingerprints={"before": "a" * 64, "after": "b" * 64},
        airflow=airflow,
    )
    cw = record_crosswalk(
        conn,
        deployment_id=deployment.id,
        table="medicament",
        entries={("UCD-1",): 873, ("UCD-2",): "874"},
        actor="svc-airflow",
        at=T0,
    )
    set_deployment_status(conn, deployment_id=deployment.id, status="failed", actor="svc-airflow", at=T0)
    rollback = record_rollback(
        conn,
        deployment_id=deployment.id,
        proven=True,
        fingerprints={"restored": "a" * 64, "before": "a" * 64},
        reason="verification failed",
        actor="resp.exploitation",
        at=T0,
    )
    set_release_status(conn, release_id=release, status="rolled_back", actor="resp.exploitation", at=T0)
    conn.commit()

    history = release_history(conn, release)
    assert history.release.status == "rolled_back"
    assert [v.passed for v in history.validations] == [True]
    assert [(a.approver, a.decision) for a in history.approvals_for(BODY_ID)] == [("pharma.chef", "approved")]
    assert [d.status for d in history.deployments] == ["rolled_back"]
    assert [r.id for r in history.rollbacks] == [rollback.id]
    assert [e.kind for e in history.events] == [
        "release.created",
        "changeset.attached",
        "validation.recorded",
        "approval.recorded",
        "deployment.recorded",
        "crosswalk.recorded",
        "deployment.status_changed",
        "rollback.recorded",
        "release.status_changed",
    ]
    deployed = history.events[4]
    assert (deployed.airflow, deployed.subject, deployed.payload["target_deployment_id"]) == (
        airflow,
        BODY_ID,
        "dep-7",
    )
    assert get_crosswalk(conn, deployment_id=deployment.id, table="medicament") == {
        ("UCD-1",): "873",
        ("UCD-2",): "874",
    }
    assert crosswalk_digest(conn, deployment_id=deployment.id, table="medicament") == cw.digest
    assert history.events[5].payload == {
        "count": 2,
        "deployment_id": deployment.id,
        "digest": cw.digest,
        "table": "medicament",
    }
    assert verify_chain(conn).checked == 9


def test_put_changeset_twice_is_idempotent(conn: psycopg2.extensions.connection) -> None:
    assert put_changeset(conn, changeset_id=BODY_ID, body=BODY) is True
    assert put_changeset(conn, changeset_id=BODY_ID, body=BODY) is False
    assert get_changeset(conn, BODY_ID) == BODY


@pytest.mark.parametrize(
    ("changeset_id", "body", "error", "match"),
    [
        ("0" * 64, BODY, ChangesetError, "does not match its id"),
        (BODY_ID, BODY.replace("UCD-1", "UCD-9"), ChangesetError, "does not match its id"),
        ("not-a-hash", BODY, LedgerError, "not a SHA-256"),
        (hashlib.sha256(b"{oops").hexdigest(), "{oops", ChangesetError, "is not JSON"),
    ],
    ids=["wrong-id", "altered-body", "malformed-id", "not-json"],
)
def test_put_changeset_bad_input_refused(
    conn: psycopg2.extensions.connection, changeset_id: str, body: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        put_changeset(conn, changeset_id=changeset_id, body=body)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM ledger.changesets")
        assert cur.fetchone()[0] == 0


def test_changeset_tampered_in_database_refused_on_read(make_db: Callable[[str], str]) -> None:
    conn = pg.connect(make_db("ledger"))  # its own database: the test drops a constraint
    try:
        ensure_schema(conn)
        put_changeset(conn, changeset_id=BODY_ID, body=BODY)
        conn.commit()
        with pytest.raises(psycopg2.errors.RaiseException, match="append-only"), conn.cursor() as cur:
            cur.execute("UPDATE ledger.changesets SET body = '{}'")
        conn.rollback()
        with pytest.raises(psycopg2.errors.CheckViolation, match="content_address"), conn.cursor() as cur:
            cur.execute("ALTER TABLE ledger.changesets DISABLE TRIGGER USER")
            cur.execute("UPDATE ledger.changesets SET body = '{}'")
        conn.rollback()
        with conn.cursor() as cur:  # a determined superuser removes every guard
            cur.execute("ALTER TABLE ledger.changesets DISABLE TRIGGER USER")
            cur.execute("ALTER TABLE ledger.changesets DROP CONSTRAINT changesets_content_address")
            cur.execute("UPDATE ledger.changesets SET body = '{}'")
        conn.commit()
        with pytest.raises(LedgerError, match="no longer matches its hash"):
            get_changeset(conn, BODY_ID)
    finally:
        conn.close()


def test_get_changeset_unknown_id_refused(conn: psycopg2.extensions.connection) -> None:
    with pytest.raises(LedgerError, match=f"unknown changeset {BODY_ID}"):
        get_changeset(conn, BODY_ID)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: get_release(c, "R-404"),
        lambda c: set_release_status(c, release_id="R-404", status="closed", actor="a", at=T0),
        lambda c: attach_changeset(c, release_id="R-404", changeset_id=BODY_ID, actor="a", at=T0),
        lambda c: record_approval(
            c, release_id="R-404", changeset_id=BODY_ID, approver="x", decision="approved", at=T0
        ),
        lambda c: record_validation(
            c,
            release_id="R-404",
            changeset_id=BODY_ID,
            environment="preprod",
            passed=True,
            report={},
            actor="a",
            at=T0,
        ),
        lambda c: record_deployment(
            c,
            release_id="R-404",
            environment="prod",
            changeset_id=BODY_ID,
            status="applied",
            actor="a",
            at=T0,
        ),
    ],
    ids=["get", "status", "attach", "approval", "validation", "deployment"],
)
def test_unknown_release_refused_naming_it(
    conn: psycopg2.extensions.connection, call: Callable[[psycopg2.extensions.connection], object]
) -> None:
    with pytest.raises(LedgerError, match="unknown release 'R-404'"):
        call(conn)


def test_record_approval_stale_changeset_refused(conn: psycopg2.extensions.connection, release: str) -> None:
    newer = json.dumps({"version": 2})
    newer_id = hashlib.sha256(newer.encode()).hexdigest()
    put_changeset(conn, changeset_id=newer_id, body=newer)
    attach_changeset(
        conn, release_id=release, changeset_id=newer_id, actor="svc-airflow", at=T0, reason="recapture"
    )
    with pytest.raises(ApprovalError, match="stale"):
        record_approval(
            conn, release_id=release, changeset_id=BODY_ID, approver="pharma.chef", decision="approved", at=T0
        )


def test_record_approval_by_requester_refused(conn: psycopg2.extensions.connection, release: str) -> None:
    with pytest.raises(ApprovalError, match="separation of duties"):
        record_approval(
            conn, release_id=release, changeset_id=BODY_ID, approver="chef.projet", decision="approved", at=T0
        )


def test_record_approval_unknown_decision_refused(conn: psycopg2.extensions.connection, release: str) -> None:
    with pytest.raises(LedgerError, match="decision 'maybe'"):
        record_approval(
            conn, release_id=release, changeset_id=BODY_ID, approver="rssi", decision="maybe", at=T0
        )


def test_record_approval_rejection_keeps_comment_as_reason(
    conn: psycopg2.extensions.connection, release: str
) -> None:
    record_approval(
        conn,
        release_id=release,
        changeset_id=BODY_ID,
        approver="rssi",
        decision="rejected",
        comment="droits trop larges",
        at=T0,
    )
    event = release_history(conn, release).events[-1]
    assert (event.kind, event.actor, event.reason, event.payload["decision"]) == (
        "approval.recorded",
        "rssi",
        "droits trop larges",
        "rejected",
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"release_id": "R 1"}, "is not allowed"),
        ({"path": []}, "at least one environment"),
        ({"reason": ""}, "both required"),
        ({"window_end": T0 - timedelta(hours=1), "window_start": T0}, "window ends"),
    ],
    ids=["bad-id", "empty-path", "no-reason", "inverted-window"],
)
def test_create_release_bad_input_refused(
    conn: psycopg2.extensions.connection, kwargs: dict, match: str
) -> None:
    arguments = {"release_id": RID, "path": ["prod"], "requested_by": "a", "reason": "r", "at": T0, **kwargs}
    with pytest.raises(LedgerError, match=match):
        create_release(conn, **arguments)


def test_create_release_duplicate_id_refused(conn: psycopg2.extensions.connection, release: str) -> None:
    with pytest.raises(LedgerError, match="already exists"):
        create_release(conn, release_id=release, path=["prod"], requested_by="a", reason="r", at=T0)


def test_next_release_id_counts_per_day(conn: psycopg2.extensions.connection, release: str) -> None:
    assert next_release_id(conn, day=date(2026, 11, 28)) == "R-2026-11-28-002"
    assert next_release_id(conn, day=date(2026, 11, 29)) == "R-2026-11-29-001"


def test_record_deployment_off_path_environment_refused(
    conn: psycopg2.extensions.connection, release: str
) -> None:
    with pytest.raises(LedgerError, match="not on release"):
        record_deployment(
            conn,
            release_id=release,
            environment="formation",
            changeset_id=BODY_ID,
            status="applied",
            actor="a",
            at=T0,
        )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda c: set_deployment_status(c, deployment_id=999, status="verified", actor="a", at=T0),
            "unknown deployment 999",
        ),
        (
            lambda c: record_rollback(
                c, deployment_id=999, proven=True, fingerprints={}, reason="x", actor="a", at=T0
            ),
            "unknown deployment 999",
        ),
        (
            lambda c: set_release_status(c, release_id=RID, status="done", actor="a", at=T0),
            "status 'done' is unknown",
        ),
    ],
    ids=["deployment-status", "rollback", "release-status"],
)
def test_unknown_deployment_or_status_refused(
    conn: psycopg2.extensions.connection, release: str, call: Callable, match: str
) -> None:
    with pytest.raises(LedgerError, match=match):
        call(conn)


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({(1.5,): 3}, "holds a float"),
        ([(("mg",), None)], "no usable target id"),
        ([(("mg",), "")], "no usable target id"),
    ],
    ids=["float-key", "none-target", "empty-target"],
)
def test_record_crosswalk_bad_entry_refused_nothing_written(
    conn: psycopg2.extensions.connection, release: str, entries: object, match: str
) -> None:
    deployment = record_deployment(
        conn, release_id=release, environment="prod", changeset_id=BODY_ID, status="applied", actor="a", at=T0
    )
    with pytest.raises(LedgerError, match=match):
        record_crosswalk(
            conn, deployment_id=deployment.id, table="unite_mesure", entries=entries, actor="a", at=T0
        )
    assert get_crosswalk(conn, deployment_id=deployment.id, table="unite_mesure") == {}


@pytest.mark.parametrize(
    ("call", "table"),
    [
        (
            lambda c, at: record_validation(
                c,
                release_id=RID,
                changeset_id=BODY_ID,
                environment="prod",
                passed=True,
                report={},
                actor="a",
                at=at,
            ),
            "validation_results",
        ),
        (
            lambda c, at: record_approval(
                c, release_id=RID, changeset_id=BODY_ID, approver="rssi", decision="approved", at=at
            ),
            "approvals",
        ),
        (
            lambda c, at: record_deployment(
                c,
                release_id=RID,
                environment="prod",
                changeset_id=BODY_ID,
                status="applied",
                actor="a",
                at=at,
            ),
            "deployments",
        ),
    ],
    ids=["validation", "approval", "deployment"],
)
def test_record_naive_time_refused_before_any_row_written(
    conn: psycopg2.extensions.connection, release: str, call: Callable, table: str
) -> None:
    with pytest.raises(LedgerError, match="no time zone"):
        call(conn, datetime(2026, 11, 28, 20, 0))
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM ledger.{table}")
        assert cur.fetchone()[0] == 0

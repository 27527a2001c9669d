"""The event log on a real PostgreSQL: appends, round trips, database refusals, forgery detection, concurrency."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from gardien import pg
from gardien.errors import LedgerError
from gardien.ledger import (
    GENESIS_HASH,
    WRITER_ROLE,
    AirflowIds,
    append_event,
    canonical_payload,
    ensure_schema,
    list_events,
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
# Verbatim from docs/adr/0002-ledger-hash-chain.md: the auditor's check with psql alone.
AUDITOR_SQL = """
SELECT seq FROM (
    SELECT seq, hash, prev_hash,
           encode(sha256(convert_to(ledger.event_canonical(e), 'UTF8')), 'hex') AS recomputed,
           coalesce(lag(hash) OVER (ORDER BY seq), repeat('0', 64)) AS expected_prev
      FROM ledger.events e
) AS chain
WHERE hash <> recomputed OR prev_hash <> expected_prev
ORDER BY seq LIMIT 1;
"""


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


def _append_many(conn: psycopg2.extensions.connection, count: int, *, actor: str = "chef.projet") -> None:
    for i in range(count):
        append_event(
            conn,
            kind="test.appended",
            actor=actor,
            at=T0 + timedelta(minutes=i),
            release_id="R-2026-11-28-001",
            payload={"i": i},
            airflow=AirflowIds(dag_id="gardien_release", run_id="scheduled__x", task_id=f"t{i}"),
        )
    conn.commit()


def _forge(conn: psycopg2.extensions.connection, statement: str, params: tuple[object, ...]) -> None:
    """What a superuser with psql could do: switch the guards off, edit history, switch them back on."""
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE ledger.events DISABLE TRIGGER USER")
        cur.execute(statement, params)
        cur.execute("ALTER TABLE ledger.events ENABLE TRIGGER USER")
    conn.commit()


def test_verify_chain_n_appended_events_intact(conn: psycopg2.extensions.connection) -> None:
    _append_many(conn, 25)
    report = verify_chain(conn)
    events = list_events(conn)
    assert (report.ok, report.checked, report.head_seq) == (True, 25, 25)
    assert report.head_hash == events[-1].hash
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:], strict=False))


def test_event_hash_recomputed_in_sql_matches_python(conn: psycopg2.extensions.connection) -> None:
    append_event(
        conn, kind="test.sql", actor="rssi", at=T0, reason="multi\nline ✓", payload={"é": [1.5, None]}
    )
    _append_many(conn, 3)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE hash = encode(sha256(convert_to(ledger.event_canonical(e), 'UTF8')), "
            "'hex')), count(*) FROM ledger.events e"
        )
        matching, total = cur.fetchone()
    assert (matching, total) == (4, 4)


@pytest.mark.parametrize(
    ("forgery", "params", "first_bad"),
    [
        (None, (), None),
        ("UPDATE ledger.events SET payload_text = %s WHERE seq = 3", ('{"i":42}',), 3),
        ("DELETE FROM ledger.events WHERE seq = %s", (2,), 3),
    ],
    ids=["intact", "forged-payload", "deleted-row"],
)
def test_auditor_sql_finds_same_first_break_as_python(
    conn: psycopg2.extensions.connection,
    forgery: str | None,
    params: tuple[object, ...],
    first_bad: int | None,
) -> None:
    _append_many(conn, 5)
    if forgery:
        _forge(conn, forgery, params)
    with conn.cursor() as cur:
        cur.execute(AUDITOR_SQL)
        row = cur.fetchone()
    report = verify_chain(conn)
    assert (row[0] if row else None) == first_bad
    assert (report.first_broken.seq if report.first_broken else None) == first_bad


@pytest.mark.parametrize(
    "payload",
    [
        {"texte": "Unité de soins intensifs — 急诊 🏥", "clé": "ü"},
        {"z": {"y": {"x": [1, {"b": 2, "a": 1}]}}, "a": []},
        {"one_float": 1.0, "one_int": 1, "huge": 1e20, "tiny": 5e-324, "neg_zero": -0.0, "big_int": 2**70},
        {"nothing": None, "flags": [True, False, None]},
        {},
    ],
    ids=["unicode", "nested", "floats-vs-ints", "none", "empty"],
)
def test_append_event_payload_round_trip_keeps_hash(
    conn: psycopg2.extensions.connection, payload: dict
) -> None:
    written = append_event(conn, kind="test.round_trip", actor="a", at=T0, payload=payload)
    conn.commit()
    (read,) = list_events(conn)
    assert read.payload_text == canonical_payload(payload) == written.payload_text
    assert read.hash == written.hash
    assert read.at == written.at
    assert verify_chain(conn).ok


@pytest.mark.parametrize(
    ("statement", "match"),
    [
        ("UPDATE ledger.events SET reason = 'edited' WHERE seq = 2", "append-only: UPDATE refused"),
        ("DELETE FROM ledger.events WHERE seq = 2", "append-only: DELETE refused"),
        ("TRUNCATE ledger.events", "append-only: TRUNCATE refused"),
    ],
    ids=["update", "delete", "truncate"],
)
def test_events_change_by_owner_refused_by_trigger(
    conn: psycopg2.extensions.connection, statement: str, match: str
) -> None:
    _append_many(conn, 3)
    with pytest.raises(psycopg2.errors.RaiseException, match=match), conn.cursor() as cur:
        cur.execute(statement)
    conn.rollback()
    assert verify_chain(conn).checked == 3


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.events SET reason = 'edited' WHERE seq = 2",
        "DELETE FROM ledger.events WHERE seq = 2",
        "TRUNCATE ledger.events",
    ],
    ids=["update", "delete", "truncate"],
)
def test_events_change_by_writer_role_refused_by_privileges(
    conn: psycopg2.extensions.connection, statement: str
) -> None:
    _append_many(conn, 3)
    with conn.cursor() as cur:
        cur.execute(f"SET ROLE {WRITER_ROLE}")
    with (
        pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"),
        conn.cursor() as cur,
    ):
        cur.execute(statement)
    conn.rollback()


def test_append_event_as_writer_role_allowed(conn: psycopg2.extensions.connection) -> None:
    _append_many(conn, 2)
    with conn.cursor() as cur:
        cur.execute(f"SET ROLE {WRITER_ROLE}")
    event = append_event(conn, kind="test.writer", actor="svc-airflow", at=T0)
    conn.commit()
    assert event.seq == 3
    assert verify_chain(conn).checked == 3


def test_insert_bypassing_python_with_wrong_prev_hash_refused(conn: psycopg2.extensions.connection) -> None:
    _append_many(conn, 2)
    with pytest.raises(psycopg2.errors.IntegrityConstraintViolation, match="does not extend the head"):
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO ledger.events (at, kind, actor, payload_text, prev_hash, hash, canonical) "
                "VALUES (now(), 'x', 'intrus', '{}', %s, %s, 'x')",
                (GENESIS_HASH, "f" * 64),
            )
    conn.rollback()


def test_verify_chain_forged_payload_names_seq_and_field(conn: psycopg2.extensions.connection) -> None:
    _append_many(conn, 6)
    _forge(conn, "UPDATE ledger.events SET payload_text = %s WHERE seq = 4", ('{"i":42}',))
    report = verify_chain(conn)
    assert not report.ok
    assert report.checked == 3
    assert report.first_broken is not None
    assert (report.first_broken.seq, report.first_broken.altered_fields) == (4, ("payload",))
    assert "seq 4" in report.first_broken.describe()


def test_verify_chain_deleted_middle_row_detected(conn: psycopg2.extensions.connection) -> None:
    _append_many(conn, 6)
    _forge(conn, "DELETE FROM ledger.events WHERE seq = %s", (3,))
    report = verify_chain(conn)
    assert report.first_broken is not None
    assert report.first_broken.seq == 4
    assert "between seq 2 and 4 are missing" in report.first_broken.problem


def test_append_event_concurrent_writers_one_unbroken_chain(ledger_dsn: str) -> None:
    per_thread, errors = 20, []
    barrier = threading.Barrier(3)

    def writer(name: str) -> None:
        connection = pg.connect(ledger_dsn)
        try:
            barrier.wait()
            for i in range(per_thread):
                append_event(connection, kind="test.concurrent", actor=name, at=T0, payload={"i": i})
                connection.commit()
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    connection = pg.connect(ledger_dsn)
    try:
        report = verify_chain(connection)
        with connection.cursor() as cur:
            cur.execute("SELECT count(DISTINCT prev_hash), count(*) FROM ledger.events")
            distinct_prev, total = cur.fetchone()
    finally:
        connection.close()
    assert (report.ok, report.checked) == (True, 3 * per_thread)
    assert distinct_prev == total == 3 * per_thread


def test_ensure_schema_concurrent_and_repeated_calls_succeed(make_db: Callable[[str], str]) -> None:
    dsn, errors = make_db("ledger"), []

    def init() -> None:
        connection = pg.connect(dsn)
        try:
            ensure_schema(connection)
            connection.commit()
            ensure_schema(connection)
            connection.commit()
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=init) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    connection = pg.connect(dsn)
    try:
        assert append_event(connection, kind="test.ready", actor="a", at=T0).seq >= 1
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "Bad Kind"}, "not allowed"),
        ({"at": datetime(2026, 11, 28, 12, 0)}, "no time zone"),
        ({"actor": ""}, "needs an actor"),
        ({"reason": "a\x00b"}, "NUL"),
        ({"payload": {"x": float("inf")}}, "not canonical JSON"),
    ],
    ids=["kind", "naive-at", "no-actor", "nul-reason", "infinite-float"],
)
def test_append_event_bad_input_refused_nothing_written(
    conn: psycopg2.extensions.connection, kwargs: dict, match: str
) -> None:
    arguments = {"kind": "test.ok", "actor": "a", "at": T0, **kwargs}
    with pytest.raises(LedgerError, match=match):
        append_event(conn, **arguments)
    conn.rollback()
    assert list_events(conn) == ()


def test_append_event_without_schema_says_run_migrate(make_db: Callable[[str], str]) -> None:
    connection = pg.connect(make_db("ledger"))
    try:
        with pytest.raises(LedgerError, match="gardien ledger migrate"):
            append_event(connection, kind="test.none", actor="a", at=T0)
    finally:
        connection.close()

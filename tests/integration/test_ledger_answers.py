"""Approval answers in the ledger: recorded once whoever records first, found again by a retried seat, chained;
and the API server's middleware records exactly the answers Airflow accepted for Gardien seats."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from gardien import pg
from gardien.airflow.answer_recorder import AnswerRecorder
from gardien.ledger import AirflowIds, answers, ensure_schema, list_events, verify_chain

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 20, 0, 0, 123456, tzinfo=UTC)
CS = "a" * 64


@pytest.fixture
def ledger_dsn(pg_admin_dsn: str) -> Iterator[str]:
    name = f"gt_answers_{uuid.uuid4().hex[:10]}"
    dsn = pg.create_database(pg_admin_dsn, name)
    conn = pg.connect(dsn)
    ensure_schema(conn)
    conn.commit()
    conn.close()
    yield dsn
    pg.drop_database(pg_admin_dsn, name)


def request(task_id: str = "approve_pharmaciens", changeset: str = CS) -> answers.SeatRequest:
    return answers.SeatRequest(
        release_id="R-42",
        changeset_id=changeset,
        seat=0,
        role="pharmaciens",
        airflow=AirflowIds(dag_id="gardien_release_standard", run_id="scheduled__1", task_id=task_id),
        assigned=("pharma.adjoint", "pharma.chef"),
    )


def give(
    conn: Any, req: answers.SeatRequest, *, at: datetime = T0, source: str = "api"
) -> answers.SeatAnswer:
    return answers.record_answer(
        conn,
        req,
        responder="pharma.chef",
        responded_at=at,
        chosen_options=["Approve"],
        params_input={"changeset_id": req.changeset_id, "reason": "  vu avec la pharmacie "},
        source=source,
    )


def test_answer_recorded_once_and_found_by_a_retry_for_the_same_changeset_only(ledger_dsn: str) -> None:
    conn = pg.connect(ledger_dsn)
    req = request()
    answers.record_request(conn, req, at=T0 - timedelta(seconds=5))
    assert (
        answers.find_request(
            conn, dag_id=req.airflow.dag_id, run_id="scheduled__1", task_id=req.airflow.task_id
        )
        == req
    )
    first = give(conn, req)
    again = give(conn, req, source="task")  # the resumed task records the same answer: no second record
    conn.commit()

    assert again == first and first.source == "api"
    found = answers.find_answer(conn, req)
    assert found is not None
    assert (found.responder, found.responded_at, found.comment, found.request.role) == (
        "pharma.chef",
        T0,
        "vu avec la pharmacie",
        "pharmaciens",
    )
    # An answer given for another changeset is void: a seat asking about a new changeset finds nothing.
    assert answers.find_answer(conn, request(changeset="b" * 64)) is None
    assert answers.find_answer(conn, request(task_id="approve_cab_1")) is None
    kinds = [e.kind for e in list_events(conn, release_id="R-42")]
    assert kinds == ["approval.requested", "approval.answered"]
    assert verify_chain(conn).ok
    conn.close()


def test_answer_recorded_concurrently_by_server_and_task_is_recorded_once(ledger_dsn: str) -> None:
    first, second = pg.connect(ledger_dsn), pg.connect(ledger_dsn)
    req = request()
    answers.record_request(first, req, at=T0 - timedelta(seconds=5))
    first.commit()
    give(first, req)  # holds the answer lock until it commits
    result: dict[str, Any] = {}
    started = threading.Event()

    def task_side() -> None:
        started.set()
        result["answer"] = give(second, req, source="task")
        second.commit()

    thread = threading.Thread(target=task_side)
    thread.start()
    started.wait()
    with first.cursor() as cur:  # the task's transaction must be waiting for the lock, not racing past it
        for _ in range(100):
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            if cur.fetchone()[0]:
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the second recorder never waited for the answer lock")
    first.commit()
    thread.join(timeout=30)

    assert result["answer"].source == "api"  # it found the server's record instead of adding its own
    assert (
        len(
            answers.task_answers(
                first, dag_id=req.airflow.dag_id, run_id="scheduled__1", task_id=req.airflow.task_id
            )
        )
        == 1
    )
    first.close()
    second.close()


# --- the API server's middleware ---------------------------------------------------------------------


def call(app: AnswerRecorder, path: str, method: str = "PATCH") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": method, "path": path}, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def airflow_answering(status: int, body: dict[str, Any]) -> Any:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raw = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": raw[:10], "more_body": True})
        await send({"type": "http.response.body", "body": raw[10:]})

    return inner


def opener_of(dsn: str) -> Any:
    @contextmanager
    def open_ledger() -> Iterator[Any]:
        conn = pg.connect(dsn)
        try:
            yield conn
            conn.commit()
        finally:
            conn.close()

    return open_ledger


resumed: list[dict[str, Any]] = []


def no_resume(**ids: Any) -> bool:
    resumed.append(ids)
    return False


ANSWER = {
    "responded_by": {"id": "pharma.chef", "name": "pharma.chef"},
    "responded_at": "2026-12-01T20:00:03.250000Z",
    "chosen_options": ["Approve"],
    "params_input": {"changeset_id": CS, "reason": ""},
}
PATH = "/api/v2/dags/gardien_release_standard/dagRuns/scheduled__1/taskInstances/{task}/-1/hitlDetails"


def test_middleware_records_accepted_answers_to_gardien_seats_only(ledger_dsn: str) -> None:
    conn = pg.connect(ledger_dsn)
    answers.record_request(conn, request(), at=T0)
    conn.commit()
    opener = opener_of(ledger_dsn)
    resumed.clear()

    status, body = call(
        AnswerRecorder(airflow_answering(200, ANSWER), opener, no_resume),
        PATH.format(task="approve_pharmaciens"),
    )
    assert status == 200 and json.loads(body) == ANSWER  # the client gets Airflow's answer, whole
    # Refused by Airflow (403), or a task that is not a Gardien seat: nothing recorded.
    call(
        AnswerRecorder(airflow_answering(403, {"detail": "no"}), opener, no_resume),
        PATH.format(task="approve_pharmaciens"),
    )
    call(
        AnswerRecorder(airflow_answering(200, ANSWER), opener, no_resume), PATH.format(task="some_other_hitl")
    )

    [given] = answers.task_answers(
        conn, dag_id="gardien_release_standard", run_id="scheduled__1", task_id="approve_pharmaciens"
    )
    assert (given.responder, given.source, given.comment) == ("pharma.chef", "api", None)
    assert given.responded_at == datetime(2026, 12, 1, 20, 0, 3, 250000, tzinfo=UTC)  # Airflow's time
    assert [e.kind for e in list_events(conn)] == ["approval.requested", "approval.answered"]
    # Only the accepted answer to a Gardien seat is checked for a task Airflow left parked.
    assert [r["task_id"] for r in resumed] == ["approve_pharmaciens"]
    conn.close()


def test_middleware_never_turns_an_accepted_answer_into_an_error_when_the_ledger_is_down() -> None:
    def unreachable() -> Any:
        raise psycopg2.OperationalError("connection refused")

    status, body = call(
        AnswerRecorder(airflow_answering(200, ANSWER), unreachable, no_resume), PATH.format(task="t")
    )
    assert status == 200 and json.loads(body) == ANSWER

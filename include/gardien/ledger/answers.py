"""Answers to approval seats, recorded when Airflow receives them, so that no person's answer is ever lost.

Airflow 3.3.2 can lose an answer given while an approval task is still pausing into ``awaiting_input``: the
task is retried and the retry wipes the answer from Airflow's ``hitl_detail`` row. Gardien therefore keeps
its own record, as two chained events (docs/adr/0011-approval-answers.md):

- ``approval.requested``: written by the seat's task *before* Airflow shows the Required Action (release,
  changeset, seat, role, who may answer). It is what ties an Airflow task to a release seat.
- ``approval.answered``: written by the API server the moment it accepts an answer (and again, idempotently,
  by the task when it resumes): responder, the time Airflow received it, seat, role, option, comment.

A retried seat looks up ``approval.answered`` for its task and changeset before asking again.
Functions receiving a connection never commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2.extensions

from gardien.ledger.chain import AirflowIds, Event
from gardien.ledger.store import _EVENT_COLUMNS, _row_to_stored, append_event, database_errors

REQUESTED = "approval.requested"
ANSWERED = "approval.answered"
REQUESTER = "gardien-approval"  # the actor of a request event: the seat's task, not a person
# Serialises the check-then-append of one seat's answer (the API server and the resumed task both record it).
ANSWER_LOCK_KEY = 7305517364913261081


@dataclass(frozen=True, slots=True)
class SeatRequest:
    """One approval seat of a release, as asked in one Airflow task."""

    release_id: str
    changeset_id: str
    seat: int  # 0-based index in the release's requirement
    role: str  # the seat's group label, e.g. "pharmaciens"
    airflow: AirflowIds
    map_index: int = -1
    assigned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeatAnswer:
    """A person's answer to a seat, as Airflow received it."""

    request: SeatRequest
    responder: str
    responded_at: datetime  # when Airflow received the answer (its hitl_detail.responded_at)
    chosen_options: tuple[str, ...]
    params_input: Mapping[str, Any] = field(default_factory=dict)
    source: str = "api"  # "api": recorded by the API server when given; "task": by the resumed task

    @property
    def comment(self) -> str | None:
        """What the approver typed in the form's ``reason`` field (None when left empty)."""
        return str(self.params_input.get("reason") or "").strip() or None

    def event_payload(self) -> dict[str, Any]:
        """The task-side answer (Airflow's HITL return value shape), for the operator to resume from."""
        return {
            "chosen_options": list(self.chosen_options),
            "params_input": dict(self.params_input),
            "responded_at": self.responded_at,
            "responded_by_user": {"id": self.responder, "name": self.responder},
        }


def record_request(conn: psycopg2.extensions.connection, request: SeatRequest, *, at: datetime) -> Event:
    """Append ``approval.requested`` for ``request`` (each try asks again: one event per request)."""
    return append_event(
        conn,
        kind=REQUESTED,
        actor=REQUESTER,
        at=at,
        release_id=request.release_id,
        subject=request.changeset_id,
        payload={
            "seat": request.seat,
            "role": request.role,
            "map_index": request.map_index,
            "assigned": list(request.assigned),
        },
        airflow=request.airflow,
    )


def find_request(
    conn: psycopg2.extensions.connection, *, dag_id: str, run_id: str, task_id: str, map_index: int = -1
) -> SeatRequest | None:
    """The latest request made by that Airflow task, or None (not a Gardien seat, or never asked)."""
    for event in reversed(_events(conn, REQUESTED, dag_id=dag_id, run_id=run_id, task_id=task_id)):
        if event.payload.get("map_index", -1) == map_index:
            return _request_of(event)
    return None


def record_answer(
    conn: psycopg2.extensions.connection,
    request: SeatRequest,
    *,
    responder: str,
    responded_at: datetime,
    chosen_options: Sequence[str],
    params_input: Mapping[str, Any] | None = None,
    source: str = "api",
) -> SeatAnswer:
    """Append ``approval.answered`` once per answer: recording the same answer again returns the first record.

    An answer is identified by its task, responder and the time Airflow received it; the API server and the
    resumed task both record it, whichever comes first.
    """
    answer = SeatAnswer(
        request=request,
        responder=responder,
        responded_at=responded_at,
        chosen_options=tuple(chosen_options),
        params_input=dict(params_input or {}),
        source=source,
    )
    with database_errors("record an approval answer"), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (ANSWER_LOCK_KEY,))
    a = request.airflow
    for known in task_answers(conn, dag_id=a.dag_id, run_id=a.run_id, task_id=a.task_id):
        if (known.responder, known.responded_at, known.request.map_index) == (
            responder,
            responded_at,
            request.map_index,
        ):
            return known
    event = append_event(
        conn,
        kind=ANSWERED,
        actor=responder,
        at=responded_at,
        release_id=request.release_id,
        subject=request.changeset_id,
        payload={
            "seat": request.seat,
            "role": request.role,
            "map_index": request.map_index,
            "chosen_options": list(answer.chosen_options),
            "params_input": dict(answer.params_input),
            "source": source,
        },
        reason=answer.comment,
        airflow=request.airflow,
    )
    return _answer_of(event)  # as stored, so both recorders get the same value


def find_answer(conn: psycopg2.extensions.connection, request: SeatRequest) -> SeatAnswer | None:
    """The first answer given to this task's seat for the same changeset, or None.

    An answer stands for its (run, task, changeset): a retry of the seat finds it instead of asking again;
    an answer given for another changeset is void and never found here.
    """
    a = request.airflow
    for answer in task_answers(conn, dag_id=a.dag_id, run_id=a.run_id, task_id=a.task_id):
        if (
            answer.request.map_index == request.map_index
            and answer.request.changeset_id == request.changeset_id
            and answer.request.seat == request.seat
        ):
            return answer
    return None


def release_answers(conn: psycopg2.extensions.connection, release_id: str) -> tuple[SeatAnswer, ...]:
    """Every answer given to a seat of ``release_id``, in the order they were recorded."""
    with database_errors(f"read the approval answers of {release_id}"), conn.cursor() as cur:
        cur.execute(
            f"SELECT {_EVENT_COLUMNS.as_string(cur)} FROM ledger.events "  # noqa: S608 - fixed column list
            "WHERE kind = %s AND release_id = %s ORDER BY seq",
            (ANSWERED, release_id),
        )
        return tuple(_answer_of(_row_to_stored(row).event) for row in cur.fetchall())


# --- reading events -----------------------------------------------------------------------------------
def _events(
    conn: psycopg2.extensions.connection,
    kind: str,
    *,
    dag_id: str | None,
    run_id: str | None,
    task_id: str | None,
) -> list[Event]:
    with database_errors("read the approval events"), conn.cursor() as cur:
        cur.execute(
            f"SELECT {_EVENT_COLUMNS.as_string(cur)} FROM ledger.events "  # noqa: S608 - fixed column list
            "WHERE kind = %s AND dag_id = %s AND run_id = %s AND task_id = %s ORDER BY seq",
            (kind, dag_id, run_id, task_id),
        )
        return [_row_to_stored(row).event for row in cur.fetchall()]


def task_answers(
    conn: psycopg2.extensions.connection, *, dag_id: str | None, run_id: str | None, task_id: str | None
) -> list[SeatAnswer]:
    """Every answer recorded for one Airflow task (all its tries), in recording order."""
    return [_answer_of(e) for e in _events(conn, ANSWERED, dag_id=dag_id, run_id=run_id, task_id=task_id)]


def _request_of(event: Event) -> SeatRequest:
    p = event.payload
    return SeatRequest(
        release_id=str(event.release_id),
        changeset_id=str(event.subject),
        seat=int(p["seat"]),
        role=str(p["role"]),
        airflow=event.airflow,
        map_index=int(p.get("map_index", -1)),
        assigned=tuple(p.get("assigned") or ()),
    )


def _answer_of(event: Event) -> SeatAnswer:
    p = event.payload
    return SeatAnswer(
        request=_request_of(event),
        responder=event.actor,
        responded_at=event.at,
        chosen_options=tuple(p.get("chosen_options") or ()),
        params_input=dict(p.get("params_input") or {}),
        source=str(p.get("source") or "api"),
    )

"""Recording approval answers the moment Airflow accepts them, and finding them again on a retried seat.

Airflow 3.3.2 can lose an answer given while the approval task is still pausing into ``awaiting_input`` (the
task is retried and the retry wipes the answer). So:

- ``AnswerRecorder``, an ASGI middleware the Gardien plugin installs in the API server, writes every answer
  it accepts (HTTP 200 to ``PATCH .../hitlDetails``, from the UI, the CLI or any client) into the ledger as
  a chained ``approval.answered`` event, with Airflow's own response time, before the client hears "done".
- ``previous_try_answer`` lets a retried seat read the answer Airflow still holds from the earlier try.

Only answers to tasks that recorded an ``approval.requested`` event (Gardien seats) are written.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gardien.ledger.answers import SeatAnswer, SeatRequest
from gardien.ledger.chain import AirflowIds

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

LedgerOpener = Callable[[], AbstractContextManager[Any]]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

# The public route answering a Required Action (map index optional: -1 when absent).
ANSWER_PATH = re.compile(
    r"^/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/(?P<run_id>[^/]+)/taskInstances/(?P<task_id>[^/]+)"
    r"(?:/(?P<map_index>-?\d+))?/hitlDetails/?$"
)


def config_file(path: str | Path | None = None) -> Path:
    """`path`, else $GARDIEN_CONFIG, else include/config/gardien.yaml beside the package (read at run time)."""
    return Path(path or os.environ.get("GARDIEN_CONFIG") or Path(__file__).parents[2] / "config/gardien.yaml")


def ledger_from_config(path: str | Path | None = None, *, check_schema: bool = True) -> LedgerOpener:
    """An opener of a ledger transaction (committed on success) from gardien.yaml's `ledger`, read when called.

    Like the release steps it works as the writer role: the schema comes from `gardien ledger migrate`.
    ``check_schema=False`` for the API server: a seat's request exists only in a ledger its task checked,
    and Airflow's answers must not wait for more than the record itself.
    """

    @contextmanager
    def open_ledger() -> Iterator[Any]:
        from gardien import ledger, pg
        from gardien.config import ledger_dsn, load_config

        conn = pg.connect(ledger_dsn(load_config(config_file(path))), application_name="gardien approval")
        try:
            if check_schema:
                ledger.require_schema(conn)
            yield conn
            conn.commit()
        finally:
            conn.rollback()  # no-op after the commit; undoes a half-written record on error
            conn.close()

    return open_ledger


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def previous_try_answer(context: Context) -> dict[str, Any] | None:
    """The answer Airflow's hitl_detail row still holds from an earlier try of this task, if any.

    On retry Airflow keeps the row (and its answer) until the new try asks again, which wipes it.
    """
    ti = context["ti"]
    if int(getattr(ti, "try_number", 1) or 1) <= 1:
        return None
    from airflow.sdk.execution_time.hitl import get_hitl_detail_content_detail

    try:
        detail = get_hitl_detail_content_detail(ti.id)
    except Exception:  # noqa: BLE001 - no row (first ask) or the API refused: nothing was given
        return None
    user = getattr(detail, "responded_by_user", None)
    responded_at = as_datetime(getattr(detail, "responded_at", None))
    if not getattr(detail, "response_received", False) or user is None or responded_at is None:
        return None
    return {
        "responder": str(user.id),
        "responded_at": responded_at,
        "chosen_options": list(detail.chosen_options or ()),
        "params_input": dict(detail.params_input or {}),
    }


def seat_request(
    ti: Any, *, release_id: str, changeset_id: str, seat: int, role: str, assigned: list[str]
) -> SeatRequest:
    """The request a seat's task instance ``ti`` makes (what ties its answers to the release seat)."""
    return SeatRequest(
        release_id=release_id,
        changeset_id=changeset_id,
        seat=seat,
        role=role,
        airflow=AirflowIds(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id),
        map_index=_map_index(ti),
        assigned=tuple(assigned),
    )


def answer_already_given(opener: LedgerOpener, context: Context, request: SeatRequest) -> SeatAnswer | None:
    """An answer to this seat given in an earlier try: the ledger's, else Airflow's row of that try."""
    from gardien.ledger import answers

    with opener() as conn:
        found = answers.find_answer(conn, request)
        if found is not None:
            return found
        previous = previous_try_answer(context)
        if previous is None:
            return None
        # Airflow still holds it (the retry has not asked again yet): record it before asking wipes it.
        return answers.record_answer(conn, request, source="airflow", **previous)


def record_task_answer(
    opener: LedgerOpener, ti: Any, answer: Mapping[str, Any], *, request: SeatRequest | None
) -> SeatRequest | None:
    """Make sure the ledger holds the answer a seat resumed with (the API server normally recorded it).

    Returns the seat's request (None when no request was recorded, e.g. a task from before this version).
    """
    from gardien.ledger import answers

    responded_at = as_datetime(answer.get("responded_at"))
    with opener() as conn:
        request = request or answers.find_request(
            conn, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=_map_index(ti)
        )
        if request is None or responded_at is None:
            log.warning("%s: no recorded request to attach the answer to", ti.task_id)
            return request
        answers.record_answer(
            conn,
            request,
            responder=str(answer["responded_by_user"]["id"]),
            responded_at=responded_at,
            chosen_options=list(answer.get("chosen_options") or ()),
            params_input=dict(answer.get("params_input") or {}),
            source="task",
        )
    return request


def _map_index(ti: Any) -> int:
    index = getattr(ti, "map_index", -1)
    return -1 if index is None else int(index)


def record_api_answer(
    *, dag_id: str, run_id: str, task_id: str, map_index: int, body: dict[str, Any], opener: LedgerOpener
) -> bool:
    """Record the answer the API server just accepted; False when the task is not a Gardien seat."""
    from gardien.ledger import answers

    responded_at = as_datetime(body.get("responded_at"))
    responder = (body.get("responded_by") or body.get("responded_by_user") or {}).get("id")
    if responded_at is None or not responder:
        return False
    with opener() as conn:
        request = answers.find_request(
            conn, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index
        )
        if request is None:
            return False
        answers.record_answer(
            conn,
            request,
            responder=str(responder),
            responded_at=responded_at,
            chosen_options=list(body.get("chosen_options") or ()),
            params_input=dict(body.get("params_input") or {}),
            source="api",
        )
    return True


def resume_if_stranded(*, dag_id: str, run_id: str, task_id: str, map_index: int) -> bool:
    """Resume an answered task that Airflow left parked in ``awaiting_input`` (Airflow 3.3.2 race).

    An answer accepted while the task was still pausing can leave it parked with its answer stored and no
    resume: it would then wait until the timeout turned a person's approval into a rejection. Runs after the
    answer is committed, holding the task's row lock as Airflow's own answer route does: if the park comes
    later it sees the answer itself; if it came earlier, this resumes the task exactly as that route would.
    """
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalar(
            select(TaskInstance)
            .where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
            .with_for_update(of=TaskInstance)
            .execution_options(populate_existing=True)
        )
        if ti is None or ti.state != TaskInstanceState.AWAITING_INPUT:
            return False
        detail = session.scalar(
            select(HITLDetail).where(HITLDetail.ti_id == ti.id).with_for_update(of=HITLDetail)
        )
        if detail is None or not detail.response_received:
            return False
        handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
    log.warning("Resumed %s/%s/%s: Airflow had left it parked with its answer", dag_id, run_id, task_id)
    return True


class AnswerRecorder:
    """ASGI middleware: record each accepted answer to a Gardien approval seat in the ledger.

    The answer is recorded before the response reaches the client, so "approved" on the CLI or in the UI
    means it is in the ledger. A ledger failure is logged loudly (the answer stays in Airflow; the seat's
    task records it again when it resumes) and never turns Airflow's answer into an error.
    """

    def __init__(
        self,
        app: ASGIApp,
        opener: LedgerOpener | None = None,
        resume: Callable[..., bool] | None = None,
    ) -> None:
        self.app = app
        self.opener = opener
        self.resume = resume or resume_if_stranded

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        match = ANSWER_PATH.match(scope.get("path", "")) if scope.get("type") == "http" else None
        if match is None or scope.get("method") != "PATCH":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if start["status"] == 200:
                await self._record(match, body)
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)

    async def _record(self, match: re.Match[str], body: bytes) -> None:
        from starlette.concurrency import run_in_threadpool

        ids = {
            "dag_id": match["dag_id"],
            "run_id": match["run_id"],
            "task_id": match["task_id"],
            "map_index": int(match["map_index"] or -1),
        }
        try:
            recorded = await run_in_threadpool(
                record_api_answer,
                body=json.loads(body),
                opener=self.opener or ledger_from_config(check_schema=False),
                **ids,
            )
        except Exception:  # noqa: BLE001 - never fail an answer Airflow accepted; the task records it again
            log.exception("Gardien could not record the answer to %s in the ledger", ids)
            recorded = True  # a Gardien seat as far as we know: still check it was not left parked
        if not recorded:
            return
        try:
            await run_in_threadpool(self.resume, **ids)
        except Exception:  # noqa: BLE001 - the answer stands; only the stranded-task repair failed
            log.exception("Gardien could not check whether %s was left parked with its answer", ids)

"""No approval answer is lost or misattributed: the ledger records each answer when Airflow accepts it, a retried
seat resumes from it, and the approver's form never carries the requester's words."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from hitl_support import Approvers
from test_approval_operator import DAG_FOLDER, approval_dags, run_release, xcom

from gardien.cli.approvals import REJECT
from gardien.ledger import answers
from gardien.restapi import AirflowAPI

pytestmark = [pytest.mark.dag, pytest.mark.timeout(240)]

RACE_DAG = "gardien_test_approval_race"
CHANGESET = "cs-a1b2c3d4e5f6"


@pytest.fixture(scope="module")
def bag(airflow_db: Path, approval_ledger: str) -> Iterator[Any]:
    with approval_dags(DAG_FOLDER) as dags:
        yield dags


def recorded(ledger_dsn: str, dag_id: str, run_id: str, *task_ids: str) -> list[answers.SeatAnswer]:
    """The answers the ledger holds for these tasks of one run."""
    conn = psycopg2.connect(ledger_dsn)
    try:
        return [
            a for t in task_ids for a in answers.task_answers(conn, dag_id=dag_id, run_id=run_id, task_id=t)
        ]
    finally:
        conn.close()


def never_asked_again(
    login: Callable[[str], AirflowAPI], asked_again: list[dict[str, Any]]
) -> Callable[[Callable[[str], dict]], None]:
    """An approvers script that answers nothing and notes any request made by a retry (try 2 and later):
    a seat that asks again has lost the first answer. It rejects such a request so dag.test() ends."""

    def script(wait_for: Callable[[str], dict]) -> None:
        admin = login("admin")
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            for detail in admin.pending_actions(RACE_DAG, "~"):
                ti = detail["task_instance"]
                if ti["try_number"] >= 2:
                    asked_again.append(detail)
                    login("pharma.adjoint").answer(
                        dag_id=RACE_DAG,
                        run_id=ti["dag_run_id"],
                        task_id=ti["task_id"],
                        option=REJECT,
                        params_input={"changeset_id": CHANGESET, "reason": "asked again"},
                    )
                    return
            time.sleep(0.3)

    return script


def airflow_answer(run_id: str, dag_id: str, task_id: str) -> dict[str, Any]:
    """What Airflow's own hitl_detail row says (its responded_at is when it received the answer)."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(HITLDetail.responded_at, HITLDetail.responded_by, HITLDetail.params_input)
            .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
            .where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
        ).one()
        return {"responded_at": row[0], "responded_by": row[1], "params_input": row[2]}


def test_answer_given_while_the_seat_pauses_survives_the_retry(
    bag: Any,
    login: Callable[[str], AirflowAPI],
    api_url: str,
    passwords: dict[str, str],
    approval_ledger: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GARDIEN_TEST_API_URL", api_url)
    monkeypatch.setenv("GARDIEN_TEST_ANSWER_USER", "pharma.chef")
    monkeypatch.setenv("GARDIEN_TEST_ANSWER_PASSWORD", passwords["pharma.chef"])
    monkeypatch.setenv("GARDIEN_TEST_ANSWER_REASON", "vérifié avec la pharmacie")
    asked_again: list[dict[str, Any]] = []

    approvers = Approvers(login, never_asked_again(login, asked_again), RACE_DAG)
    dr, states = run_release(
        bag.dags[RACE_DAG], approvers, environment="preprod", tables_touched=["medicament"]
    )

    assert asked_again == []
    assert states == {"approve_seat_1": "success", "deploy": "success"}
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert tis["approve_seat_1"].try_number == 2  # the first try really was lost
    result = xcom(login("admin"), dr.run_id, "approve_seat_1", dag_id=RACE_DAG)
    assert (result["responded_by_user"]["id"], result["approved"], result["role"]) == (
        "pharma.chef",
        True,
        "pharmaciens",
    )
    [given] = recorded(approval_ledger, RACE_DAG, dr.run_id, "approve_seat_1")
    assert (given.responder, given.source, given.request.seat, given.request.role) == (
        "pharma.chef",
        "api",  # recorded by the API server when it accepted the answer, before the try was lost
        0,
        "pharmaciens",
    )
    assert given.comment == "vérifié avec la pharmacie" and given.chosen_options == ("Approve",)
    assert given.request.release_id == "R-1" and given.request.changeset_id == CHANGESET


def test_form_reason_is_empty_and_each_answer_is_recorded_with_its_airflow_time(
    bag: Any, login: Callable[[str], AirflowAPI], approval_ledger: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.chu.example/")
    seen: dict[str, Any] = {}

    def script(wait_for: Callable[[str], dict]) -> None:
        for task_id, user, comment in (
            ("approve_seat_1", "pharma.chef", None),  # answers without typing: sends the form as shown
            ("approve_seat_2", "dsi.adjoint", "ok pour la DSI"),
        ):
            detail = wait_for(task_id)
            seen[task_id] = detail
            form = {k: v.get("value") for k, v in (detail.get("params") or {}).items()}
            if comment is not None:
                form["reason"] = comment
            ti = detail["task_instance"]
            login(user).answer(
                dag_id=ti["dag_id"],
                run_id=ti["dag_run_id"],
                task_id=task_id,
                option="Approve",
                params_input=form,
            )

    dr, states = run_release(
        bag.dags["gardien_test_approval"],
        Approvers(login, script, "gardien_test_approval"),
        environment="preprod",
        tables_touched=["medicament"],
        reason="urgence: dose pédiatrique du paracétamol",
    )

    assert dr.state == "success", states
    # The requester's reason is shown in the body, never pre-filled as the approver's own comment.
    assert seen["approve_seat_1"]["params"]["reason"]["value"] in (None, "")
    assert "urgence: dose pédiatrique" in seen["approve_seat_1"]["body"]
    # The request links to the board's review page of the release.
    assert "https://airflow.chu.example/gardien/releases/R-1/review" in seen["approve_seat_1"]["body"]
    given = {
        a.request.airflow.task_id: a
        for a in recorded(
            approval_ledger, "gardien_test_approval", dr.run_id, "approve_seat_1", "approve_seat_2"
        )
    }
    assert set(given) == {"approve_seat_1", "approve_seat_2"}
    assert given["approve_seat_1"].comment is None
    assert given["approve_seat_2"].comment == "ok pour la DSI"
    for task_id, answer in given.items():
        airflow = airflow_answer(dr.run_id, "gardien_test_approval", task_id)
        assert answer.responded_at == airflow["responded_at"]  # when Airflow received it, not when recorded
        assert answer.responder == airflow["responded_by"]["id"]
    assert (given["approve_seat_2"].request.seat, given["approve_seat_2"].request.role) == (1, "cab")


def test_rejection_given_while_the_seat_pauses_is_not_lost_either(
    bag: Any,
    login: Callable[[str], AirflowAPI],
    api_url: str,
    passwords: dict[str, str],
    approval_ledger: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GARDIEN_TEST_API_URL", api_url)
    monkeypatch.setenv("GARDIEN_TEST_ANSWER_USER", "pharma.adjoint")
    monkeypatch.setenv("GARDIEN_TEST_ANSWER_PASSWORD", passwords["pharma.adjoint"])
    monkeypatch.setenv("GARDIEN_TEST_ANSWER_OPTION", REJECT)
    monkeypatch.setenv("GARDIEN_TEST_ANSWER_REASON", "posologie à revoir")

    asked_again: list[dict[str, Any]] = []
    dr, states = run_release(
        bag.dags[RACE_DAG],
        Approvers(login, never_asked_again(login, asked_again), RACE_DAG),
        environment="preprod",
        tables_touched=["medicament"],
    )

    assert asked_again == []
    assert states["approve_seat_1"] == "failed" and dr.state == "failed"
    rejection = xcom(login("admin"), dr.run_id, "approve_seat_1", "rejection", dag_id=RACE_DAG)
    assert (rejection["by"], rejection["reason"]) == ("pharma.adjoint", "posologie à revoir")

"""Test DAG: Airflow 3.3.2's answer race, made deterministic.

On a loaded machine a person can answer while the approval task is still pausing into ``awaiting_input``;
the scheduler then loses the resume and the task is retried (the retry used to wipe the answer and ask again).
``AnswerInThePause`` reproduces exactly that: on its first try, once the Required Action exists but before
the task has parked, the assigned user answers through the real REST API (GARDIEN_TEST_API_URL, ..._USER,
..._PASSWORD), then the try fails as the scheduler would make it fail.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, chain
from airflow.sdk.exceptions import TaskAwaitingInput

from gardien.airflow.approval import GardienApprovalOperator
from gardien.restapi import AirflowAPI


class AnswerInThePause(GardienApprovalOperator):
    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except TaskAwaitingInput:
            if context["ti"].try_number > 1:
                raise
            ti = context["ti"]
            api = AirflowAPI(
                base_url=os.environ["GARDIEN_TEST_API_URL"],
                username=os.environ["GARDIEN_TEST_ANSWER_USER"],
                password=os.environ["GARDIEN_TEST_ANSWER_PASSWORD"],
            )
            api.answer(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                option=os.environ.get("GARDIEN_TEST_ANSWER_OPTION", "Approve"),
                params_input={
                    "changeset_id": context["dag_run"].conf["changeset_id"],
                    "reason": os.environ.get("GARDIEN_TEST_ANSWER_REASON", ""),
                },
            )
            raise RuntimeError(
                "the scheduler lost the resume of an answered task (Airflow 3.3.2 race)"
            ) from None


with DAG(
    dag_id="gardien_test_approval_race",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
) as dag:
    seat = AnswerInThePause(
        task_id="approve_seat_1",
        seat_index=0,
        environment="preprod",
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
    chain(seat, EmptyOperator(task_id="deploy"))

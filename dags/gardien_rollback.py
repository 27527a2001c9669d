"""Manual rollback (gardien_rollback): roll back one past release on one environment, behind approvals.

check the request against the ledger → approval seats (Required Actions) → rollback with the engine's proof →
close (run note: release · changeset · ROLLBACK outcome). Wiring only: every task calls
gardien.airflow.maintenance; nothing here touches a database at parse time.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, TriggerRule, chain, task

from gardien.airflow import maintenance as mnt
from gardien.airflow.approval import GardienApprovalOperator, policy_from_yaml
from gardien.airflow.callbacks import on_task_failure

CONFIG = os.environ.get("GARDIEN_CONFIG", "include/config/gardien.yaml")
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=30), "on_failure_callback": on_task_failure}

with DAG(
    dag_id="gardien_rollback",
    description="Gardien manual rollback of one release on one environment, with proof of restoration",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one rollback at a time: each takes the target's deployment lock anyway
    default_args=RETRIES,
    params={
        "release": Param(
            type="string", minLength=1, description="Release id to roll back (e.g. R-standard-…)"
        ),
        "environment": Param(type="string", minLength=1, description="Environment where it is in effect"),
        "reason": Param(
            type="string", minLength=10, description="Why (recorded in the ledger; ≥ 10 characters)"
        ),
        "force": Param(
            False,
            type="boolean",
            description="Restore these rows even if a later release overwrote them (that release is named)",
        ),
        "keep_later_edits": Param(
            False,
            type="boolean",
            description="Keep production edits made since the release on fields it did not change (recorded "
            "in the ledger); off: any later edit of a row it touched refuses the rollback, nothing written",
        ),
    },
    tags=["gardien", "rollback"],
    doc_md=__doc__,
) as dag:
    # Retried: a read-only check (plus one idempotent ledger event).
    checked = task(task_id="check_request")(mnt.check_rollback_request)()

    seat_ids = [f"approval_seat_{i + 1}" for i in range(mnt.rollback_seats(CONFIG))]
    seats = [
        GardienApprovalOperator(
            task_id=seat_id,
            seat_index=i,
            environment="{{ params.environment }}",
            policy=policy_from_yaml(CONFIG),
            release_facts=mnt.rollback_facts(),
            earlier_seats=seat_ids[:i],
            # Decisions fail with AirflowFailException (never retried); one retry covers Airflow 3.3.2's race
            # when an answer lands while the task is still pausing into awaiting_input.
            retries=1,
            retry_delay=timedelta(seconds=5),
        )
        for i, seat_id in enumerate(seat_ids)
    ]
    approved = task(task_id="record_approvals")(mnt.record_rollback_approvals)(checked, seat_ids)
    # Idempotent: the journal knows a deployment already rolled back; refusals and failed proofs never retry.
    rolled_back = task(task_id="rollback", retries=1)(mnt.manual_rollback)(checked)
    closed = task(task_id="close", trigger_rule=TriggerRule.ALL_DONE, retries=1)(mnt.close_rollback)(seat_ids)

    chain(checked, *seats, approved, rolled_back, closed)

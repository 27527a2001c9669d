"""Drift watch (gardien_drift_watch): every hour, compare each production target with its last released state.

production targets (read at run time) → one mapped watch per target (unreachable → retried, then failed) →
close (run note; the run fails on drift). A drift is recorded in the ledger (drift.detected, rows by natural
key) and announced on Slack once per distinct drifted state. Trigger manually with rebaseline=true and a
reason to accept the current state as the new baseline. Wiring only: nothing here touches a database.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, TriggerRule, task

from gardien.airflow import maintenance as mnt
from gardien.airflow.callbacks import on_task_failure

RETRIES = {"retries": 2, "retry_delay": timedelta(minutes=2), "on_failure_callback": on_task_failure}

with DAG(
    dag_id="gardien_drift_watch",
    description="Gardien drift watch: unauthorised direct edits of production configuration",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),  # never pile up behind the next hourly run
    default_args=RETRIES,
    params={
        "rebaseline": Param(
            False, type="boolean", description="Accept the current state as the new baseline"
        ),
        "reason": Param("", type="string", description="Why the current state is accepted (with rebaseline)"),
        "max_rows": Param(20, type="integer", minimum=1, maximum=1000, description="Rows named per table"),
    },
    tags=["gardien", "drift"],
    doc_md=__doc__,
) as dag:
    targets = task(task_id="production_targets")(mnt.production_targets)()
    # Idempotent (a drift is recorded once per distinct state): retried when a target is unreachable.
    watched = task(task_id="watch", retries=3)(mnt.watch_target).expand(environment=targets)
    closed = task(task_id="close", trigger_rule=TriggerRule.ALL_DONE, retries=1)(mnt.close_drift_watch)()

    targets >> watched >> closed

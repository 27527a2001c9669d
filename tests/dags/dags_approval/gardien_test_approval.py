"""Test DAG: three approval seats for one release, then a marker task (seats the stage does not need pass)."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, chain

from gardien.airflow.approval import GardienApprovalOperator

with DAG(
    dag_id="gardien_test_approval",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
) as dag:
    seats = [
        GardienApprovalOperator(
            task_id=f"approve_seat_{i + 1}",
            seat_index=i,
            environment="{{ dag_run.conf.get('environment', 'preprod') }}",
            earlier_seats=[f"approve_seat_{j + 1}" for j in range(i)],
        )
        for i in range(3)
    ]
    chain(*seats, EmptyOperator(task_id="deploy"))

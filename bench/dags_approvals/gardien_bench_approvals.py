"""Benchmark DAG (bench/approvals_race.py): ten independent approval seats per run, answered by the benchmark.

Each seat is the production operator (GardienApprovalOperator) with the release DAG's retry settings; the run
conf names the release and its changeset (facts_from_conf), so no target database is needed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from gardien.airflow.approval import GardienApprovalOperator

SEATS = 10

with DAG(
    dag_id="gardien_bench_approvals",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=64,
    max_active_tasks=SEATS,
    tags=["gardien", "bench"],
) as dag:
    for i in range(SEATS):
        GardienApprovalOperator(
            task_id=f"approve_{i:02d}",
            seat_index=0,
            environment="preprod",
            retries=1,
            retry_delay=timedelta(seconds=5),
        )

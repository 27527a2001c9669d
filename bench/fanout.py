"""Fan-out benchmark: one release to 10 production targets vs to 1 target, on the distributed (Celery) stack.

    .venv/bin/python bench/fanout.py [--targets 10] [--keep]

Builds the demo environments under the prefix ``gardien_fanout_``, copies production into N targets (and into
one for the baseline), points the distributed Airflow at a configuration with two release paths
(``fanout_n`` and ``fanout_1``), runs the 1-target release then the N-target release on the same stack, and
prints JSON: each run's wall time (trigger → end, approvals answered through the REST API as in the
distributed test) and the multi-target stage's wall time (first deploy start → last verify end, from the task
instances). All targets live on one PostgreSQL server here, so the ratio shows Gardien's and Airflow's
fan-out overhead, not a real network of establishments. Figures: docs/benchmarks-fanout.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The fleet, configuration and run driver are the distributed test's: one definition of how a GHT is built.
sys.path.insert(0, str(ROOT / "tests" / "distributed"))

from distributed_support import (  # noqa: E402
    CONFIG_NAME,
    Driver,
    Scenario,
    build_fleet,
    drop_fleet,
    write_config,
)

from gardien import pg  # noqa: E402
from gardien.demo import airflow_distributed  # noqa: E402

STAGE = "stage_etablissements."


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def stage_figures(task_instances: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall time of the multi-target stage and the sum of its task durations (what a serial run would take)."""
    tis = [ti for ti in task_instances if ti["task_id"].startswith(STAGE)]
    starts = [s for s in (_ts(ti.get("start_date")) for ti in tis) if s]
    ends = [e for e in (_ts(ti.get("end_date")) for ti in tis) if e]
    busy = sum(float(ti.get("duration") or 0) for ti in tis)
    return {
        "stage_wall_seconds": round((max(ends) - min(starts)).total_seconds(), 1)
        if starts and ends
        else None,
        "stage_task_seconds_sum": round(busy, 1),
        "stage_tasks": len(tis),
        "workers": sorted({ti["hostname"] for ti in tis if ti.get("hostname")}),
    }


def run_one(driver: Driver, scenario: Scenario) -> dict[str, Any]:
    started = time.monotonic()
    run_id = driver.trigger(scenario.dag_id)
    state = driver.drive({scenario.dag_id: run_id}, timeout=1800)[scenario.dag_id]
    wall = round(time.monotonic() - started, 1)
    tis = driver.api("admin").task_instances(scenario.dag_id, run_id)
    return {"targets": scenario.targets, "state": state, "run_wall_seconds": wall, **stage_figures(tis)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/fanout.py")
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases afterwards")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    admin = pg.admin_dsn()
    many = Scenario(path="fanout_n", env_prefix="n_", targets=args.targets, policy="failed_target")
    one = Scenario(path="fanout_1", env_prefix="o_", targets=1, policy="failed_target")
    scenarios = (many, one)
    fleet = build_fleet(admin, prefix="gardien_fanout_", scenarios=scenarios)
    try:
        config_file = airflow_distributed.state_dir(ROOT) / CONFIG_NAME
        written_at = datetime.now(UTC)
        write_config(config_file, fleet=fleet, scenarios=scenarios, now=written_at)
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
            settings = airflow_distributed.start(ROOT, admin, config=str(config_file))
        driver = Driver(f"http://127.0.0.1:{settings['AIRFLOW__API__PORT']}")
        driver.wait_parsed([s.dag_id for s in scenarios], since=written_at)
        baseline = run_one(driver, one)
        fanned = run_one(driver, many)
    finally:
        if not args.keep:
            drop_fleet(admin, fleet)
    ratio = (
        round(fanned["stage_wall_seconds"] / baseline["stage_wall_seconds"], 2)
        if fanned["stage_wall_seconds"] and baseline["stage_wall_seconds"]
        else None
    )
    result = {
        "benchmark": "fanout",
        "executor": "CeleryExecutor",
        "workers": len(airflow_distributed.WORKERS),
        "worker_concurrency": airflow_distributed.WORKER_CONCURRENCY,
        "pool_slots": airflow_distributed.POOL_SLOTS,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "one_target": baseline,
        "many_targets": fanned,
        "stage_wall_ratio": ratio,
    }
    print(json.dumps(result, indent=2))
    return 0 if baseline["state"] == fanned["state"] == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())

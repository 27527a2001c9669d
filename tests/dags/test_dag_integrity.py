"""DAG integrity: every DAG file imports, serialises (timetable registered) and has the expected shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.dag

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dagbag_has_no_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert {"gardien_release_standard", "gardien_release_emergency"} <= set(dagbag.dags)


def test_every_dag_serialises_and_round_trips(dagbag: Any) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id, dag in dagbag.dags.items():
        data = DagSerialization.to_dict(dag)
        back = DagSerialization.from_dict(data)
        assert back.dag_id == dag_id
        assert set(back.task_ids) == set(dag.task_ids)


def test_release_dag_uses_the_release_window_timetable(dagbag: Any) -> None:
    from gardien.airflow.timetable import ReleaseWindowTimetable

    assert isinstance(dagbag.dags["gardien_release_standard"].timetable, ReleaseWindowTimetable)
    # emergencies run outside the windows: no schedule, triggered on demand only
    emergency = dagbag.dags["gardien_release_emergency"].timetable
    assert type(emergency).__name__ == "ManualReleaseTimetable"
    assert emergency.can_be_scheduled is False


@pytest.mark.parametrize("dag_id", ["gardien_release_standard", "gardien_release_emergency"])
def test_release_dag_run_ids_are_release_ids_after_serialisation(dagbag: Any, dag_id: str) -> None:
    """What the scheduler and the trigger API call (on the deserialised DAG) makes R-<path>-… run ids."""
    import pendulum
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import DataInterval
    from airflow.utils.types import DagRunType

    from gardien.release.ids import is_release_id

    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags[dag_id])).timetable
    path = dag_id.removeprefix("gardien_release_")
    at = pendulum.datetime(2026, 12, 8, 19, 0, tz="UTC")
    window = DataInterval(start=at, end=at.add(hours=3))
    ids = {
        timetable.generate_run_id(run_type=run_type, run_after=after, data_interval=window)
        for run_type in (DagRunType.SCHEDULED, DagRunType.MANUAL)
        for after in (at, at.add(minutes=5))
    }
    assert len(ids) == 4  # a scheduled and a manual run of one window never share an id
    assert all(is_release_id(i, path_name=path) and i.startswith(f"R-{path}-20261208-1900-") for i in ids)


def _downstream(dag: Any, task_id: str) -> set[str]:
    return set(dag.get_task(task_id).downstream_task_ids)


def test_release_dag_task_graph(dagbag: Any) -> None:
    dag = dagbag.dags["gardien_release_standard"]
    assert _downstream(dag, "open_release") >= {"extract"}
    assert _downstream(dag, "extract") == {"validate"}
    seats = {"approve_pharmaciens", "approve_securite", "approve_cab_1", "approve_cab_2"}
    # every seat of the policy is labelled by role and leads to record_approvals; seats with disjoint candidates
    # wait side by side, the quorum seats one after the other (one person fills one seat of the quorum)
    assert _downstream(dag, "validate") == seats
    for seat in seats - {"approve_cab_1"}:
        assert _downstream(dag, seat) == {"record_approvals", "withdraw_approvals"}
    assert _downstream(dag, "approve_cab_1") == {"approve_cab_2", "record_approvals", "withdraw_approvals"}
    assert dag.get_task("approve_cab_2").upstream_task_ids == {"validate", "approve_cab_1"}
    assert dag.get_task("approve_pharmaciens").upstream_task_ids == {"validate"}
    for seat in seats:
        assert dag.get_task(seat).__class__.__name__ == "RoleApprovalOperator"
        assert dag.get_task(seat).retries == 3  # only tries Airflow lost; decisions are never retried
    assert dag.get_task("withdraw_approvals").trigger_rule == "one_failed"
    assert _downstream(dag, "record_approvals") == {"wait_for_window"}
    assert _downstream(dag, "wait_for_window") == {"check_window"}
    assert _downstream(dag, "check_window") == {"stage_preprod.deploy_preprod"}
    assert _downstream(dag, "stage_preprod.deploy_preprod") == {"stage_preprod.verify_preprod"}
    assert _downstream(dag, "stage_preprod.verify_preprod") == {"stage_prod.deploy_prod", "rollback"}
    assert _downstream(dag, "stage_prod.verify_prod") == {"rollback", "close"}
    assert _downstream(dag, "rollback") == {"close"}
    assert dag.get_task("rollback").trigger_rule == "all_done"
    assert dag.get_task("close").trigger_rule == "all_done"
    # waiting holds no worker slot: the window wait defers, approvals park in awaiting_input
    assert dag.get_task("wait_for_window").__class__.__name__ == "WaitForWindowSensor"  # deferrable
    # every task has the failure callback; idempotent steps retry, decisions do not
    for task in dag.tasks:
        assert task.on_failure_callback, task.task_id
    assert dag.get_task("stage_prod.deploy_prod").retries >= 1
    assert dag.get_task("validate").retries == 0
    # the DAG has the owner the configuration names
    assert {t.owner for t in dag.tasks} == {"equipe-parametrage-dpi"}
    assert dag.get_task("close").retry_policy is not None  # a decided failure is never retried


def test_emergency_dag_requires_a_reason_and_skips_the_window(dagbag: Any) -> None:
    dag = dagbag.dags["gardien_release_emergency"]
    assert "wait_for_window" not in dag.task_ids
    # the emergency rule: the whole CAB (3), on top of the content routing
    assert {"approve_cab_1", "approve_cab_2", "approve_cab_3", "approve_pharmaciens"} <= set(dag.task_ids)
    assert dag.params.get_param("reason").schema.get("minLength") == 10


def test_dag_files_parse_without_heavy_imports_or_database(tmp_path: Path) -> None:
    """Parse each DAG file in a fresh interpreter: no GX/pandas import, no database connection."""
    script = (
        "import importlib.util, json, sys, time\n"
        "import airflow.sdk, airflow.providers.standard.operators.hitl\n"
        "import psycopg2\n"
        "def refuse(*a, **k): raise RuntimeError('database access at parse time')\n"
        "psycopg2.connect = refuse\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    t = time.perf_counter()\n"
        "    spec = importlib.util.spec_from_file_location('dagfile', path)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "    out[path] = time.perf_counter() - t\n"
        "heavy = [m for m in ('great_expectations', 'pandas') if m in sys.modules]\n"
        "print(json.dumps({'seconds': out, 'heavy': heavy}))\n"
    )
    files = sorted(str(p) for p in (ROOT / "dags").glob("*.py"))
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-c", script, *files],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert set(report["seconds"]) == set(files)


def test_release_run_note_links_the_release_page_from_the_start(airflow_db: Path) -> None:
    from gardien.airflow.listener import opening_note

    rid = "R-standard-20261208-1900-0a1b2c"
    assert opening_note(rid) == f"Release {rid} · [release page](/gardien/releases/{rid})"

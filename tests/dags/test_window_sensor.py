"""The window wait defers (no worker slot) before the window, and does not detour once it is open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.dag


def test_wait_for_window_before_opening_defers_to_triggerer() -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from gardien.airflow.window import WaitForWindowSensor

    opens = datetime.now(UTC) + timedelta(hours=2)
    sensor = WaitForWindowSensor(task_id="wait_for_window", target_time=opens.isoformat())
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert deferred.value.trigger.moment == opens


def test_wait_for_window_already_open_returns_without_deferring() -> None:
    from gardien.airflow.window import WaitForWindowSensor

    opened = datetime.now(UTC) - timedelta(minutes=5)
    assert WaitForWindowSensor(task_id="wait_for_window", target_time=opened.isoformat()).execute({}) is None

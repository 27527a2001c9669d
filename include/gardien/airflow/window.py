"""Waiting for the release window without holding a worker slot, and without a detour when it is open."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import timezone


class WaitForWindowSensor(DateTimeSensorAsync):
    """Defers to the triggerer until the window opens; returns at once when it is already open.

    The stock async sensor always defers, which costs a triggerer round trip (tens of seconds) even when the
    approvals arrive inside the window — the usual case.
    """

    def execute(self, context: Any) -> None:
        if timezone.utcnow() >= self._moment:
            self.log.info("Release window opened at %s: no wait.", self._moment)
            return None
        self.log.info(
            "Waiting (deferred, no worker slot) for the release window opening at %s.", self._moment
        )
        return super().execute(context)

"""ReleaseWindowTimetable: one DAG run per open release window; the run's data interval is the window."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.exceptions import AirflowTimetableInvalid
from airflow.sdk import timezone
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable
from airflow.timetables.simple import NullTimetable

from gardien.calendar import Calendar, Window, load_calendar_file, parse_calendar
from gardien.errors import GardienError
from gardien.release.ids import new_release_id

if TYPE_CHECKING:
    from airflow.timetables.base import TimeRestriction
    from airflow.utils.types import DagRunType
    from pendulum import DateTime

log = logging.getLogger(__name__)


def _pendulum(value: dt.datetime) -> DateTime:
    return pendulum.instance(value.astimezone(dt.UTC))


def _interval(window: Window) -> DataInterval:
    return DataInterval(start=_pendulum(window.start), end=_pendulum(window.end))


class ReleaseWindowTimetable(Timetable):
    """Schedule one run per open release window of a Gardien calendar.

    The plugin registers this class and DAG files import it from this same module: serialization finds it
    by that import path. ``serialize()`` carries the whole calendar definition, so the scheduler needs no
    configuration file.

    - ``run_after`` is the window's start and the data interval is the window [start, end).
    - Windows cancelled by a freeze or a public holiday get no run.
    - ``catchup=True``: every window from ``start_date`` on. ``catchup=False``: windows already closed are
      skipped, but a window open right now still gets its run (it can still be used until it closes).
    - ``clock`` exists for tests; Airflow's own timetables read the clock the same way for catchup=False.
    - With ``release_path``, every run id this timetable makes (scheduled runs, and manual runs triggered
      without an explicit id: UI, REST, CLI) is the release id ``R-<path>-…`` (see ``generate_run_id``).
    """

    def __init__(
        self,
        calendar: Calendar,
        *,
        release_path: str | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.calendar = calendar
        self.release_path = release_path
        self._clock = clock or timezone.utcnow
        self.description = _describe(calendar)

    @classmethod
    def from_config_file(cls, path: str | Path, *, release_path: str | None = None) -> ReleaseWindowTimetable:
        """Build from the ``calendar:`` section of a Gardien YAML file (cheap: no database, no holidays).

        Raises ConfigurationError when the file is missing or unreadable or the section is invalid.
        """
        return cls(load_calendar_file(path), release_path=release_path)

    # -- serialization -----------------------------------------------------------------------------------

    def serialize(self) -> dict[str, Any]:
        return {
            "calendar": self.calendar.config.model_dump(mode="json"),
            "source": self.calendar.source,
            "release_path": self.release_path,
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        return cls(
            parse_calendar(data["calendar"], source=data.get("source", "<serialized DAG>")),
            release_path=data.get("release_path"),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReleaseWindowTimetable):
            return NotImplemented
        return self.calendar.config == other.calendar.config and self.release_path == other.release_path

    def __hash__(self) -> int:
        return hash((self.calendar.config, self.release_path))

    # -- run ids -----------------------------------------------------------------------------------------

    def generate_run_id(
        self,
        *,
        run_type: DagRunType,
        run_after: DateTime,
        data_interval: DataInterval | None,
        **extra: Any,
    ) -> str:
        """The release id, so that release R-standard-… is found by its run id in every Airflow screen.

        Airflow calls this for scheduled runs (the scheduler) and for manual runs triggered without an
        explicit run id (UI, REST API, ``airflow dags trigger``). The id is anchored on the window's start
        and made unique per request by the run type and the trigger instant.
        """
        if self.release_path is None:
            return super().generate_run_id(
                run_type=run_type, run_after=run_after, data_interval=data_interval
            )
        return release_run_id(
            self.release_path, run_type=run_type, run_after=run_after, data_interval=data_interval
        )

    # -- description -----------------------------------------------------------------------------------

    @property
    def summary(self) -> str:
        return f"release windows ({self.calendar.config.timezone})"

    def validate(self) -> None:
        if not self.calendar.config.windows and not self.calendar.config.one_off:
            raise AirflowTimetableInvalid(
                f"{self.calendar.source}: the calendar declares no window, so this DAG would never run: "
                "add a recurring window under calendar.windows or a one-off under calendar.one_off"
            )

    # -- scheduling ------------------------------------------------------------------------------------

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        if last_automated_data_interval is not None:
            # Windows never overlap, so the next one starts at or after the previous one's end.
            floor = last_automated_data_interval.end
        elif restriction.earliest is not None:
            floor = restriction.earliest
        else:
            floor = self._clock()
        if restriction.earliest is not None:
            floor = max(floor, restriction.earliest)
        try:
            if not restriction.catchup:
                now = self._clock()
                current = self.calendar.window_at(now)
                floor = max(floor, current.start if current is not None else now)
            window = self.calendar.next_window(floor)
        except GardienError as exc:
            # A calendar problem must not crash the scheduler: no run is scheduled, and the reason is logged.
            log.error("release calendar %s: no run scheduled: %s", self.calendar.source, exc)
            return None
        if window is None:
            return None
        if restriction.latest is not None and window.start > restriction.latest:
            return None
        return DagRunInfo(run_after=_pendulum(window.start), data_interval=_interval(window))

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        """The window open at ``run_after``; else the next open window (the run waits for it to open).

        Without any window ahead, the exact instant ``run_after`` (the run then finds no window to deploy in).
        """
        try:
            window = self.calendar.window_at(run_after) or self.calendar.next_window(run_after)
        except GardienError as exc:
            log.error("release calendar %s: %s", self.calendar.source, exc)
            window = None
        if window is None:
            return DataInterval.exact(_pendulum(run_after))
        return _interval(window)


class ManualReleaseTimetable(NullTimetable):
    """No schedule (an emergency release is triggered by hand), but run ids that are release ids."""

    def __init__(self, *, release_path: str) -> None:
        super().__init__()
        self.release_path = release_path

    def serialize(self) -> dict[str, Any]:
        return {"release_path": self.release_path}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        return cls(release_path=data["release_path"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ManualReleaseTimetable):
            return NotImplemented
        return self.release_path == other.release_path

    def __hash__(self) -> int:
        return hash(self.release_path)

    def generate_run_id(
        self,
        *,
        run_type: DagRunType,
        run_after: DateTime,
        data_interval: DataInterval | None,
        **extra: Any,
    ) -> str:
        return release_run_id(
            self.release_path, run_type=run_type, run_after=run_after, data_interval=data_interval
        )


def release_run_id(
    path_name: str, *, run_type: DagRunType | str, run_after: dt.datetime, data_interval: DataInterval | None
) -> str:
    """The release id used as run id: anchored on the window start (else the trigger instant)."""
    anchor = data_interval.start if data_interval is not None else run_after
    return new_release_id(path_name=path_name, anchor=anchor, seed=f"{run_type}|{run_after.isoformat()}")


def _describe(calendar: Calendar) -> str:
    config = calendar.config
    parts = [
        f"{','.join(w.days)} {w.start:%H:%M}–{w.end:%H:%M}{' (+1 day)' if w.overnight else ''}"
        for w in config.windows
    ]
    if config.one_off:
        parts.append(f"{len(config.one_off)} one-off window(s)")
    if config.freezes:
        parts.append(f"{len(config.freezes)} freeze(s)")
    if config.public_holidays.enabled:
        parts.append(f"no release on {config.public_holidays.country} public holidays")
    return f"Release windows in {config.timezone}: " + "; ".join(parts)

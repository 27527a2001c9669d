"""ReleaseWindowTimetable: run sequences, catchup, restrictions, manual runs, serialization, plugin registration."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.exceptions import AirflowTimetableInvalid
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction

from gardien.airflow.timetable import ReleaseWindowTimetable
from gardien.calendar import parse_calendar
from gardien.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
RAW: dict[str, Any] = {
    "timezone": "Europe/Paris",
    "windows": [{"name": "soir", "days": ["tue", "thu"], "start": "20:00", "end": "23:00"}],
    "one_off": [{"name": "correctif", "start": "2026-12-05T06:00", "end": "2026-12-05T07:30"}],
    "freezes": [{"name": "passage-version-DPI", "start": "2026-12-14", "end": "2026-12-20"}],
    "public_holidays": {"country": "FR"},
}


def utc(text: str) -> pendulum.DateTime:
    return pendulum.instance(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC))


def timetable(now: str = "2026-11-28T12:00", raw: dict[str, Any] | None = None) -> ReleaseWindowTimetable:
    return ReleaseWindowTimetable(parse_calendar(raw or RAW, source="cal.yaml"), clock=lambda: utc(now))


def runs(
    tt: ReleaseWindowTimetable, restriction: TimeRestriction, count: int, last: DataInterval | None = None
) -> list[tuple[str, str]]:
    found = []
    for _ in range(count):
        info = tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        if info is None:
            break
        assert info.data_interval is not None and info.run_after == info.data_interval.start
        assert isinstance(info.run_after, pendulum.DateTime)
        found.append((info.data_interval.start.isoformat(), info.data_interval.end.isoformat()))
        last = info.data_interval
    return found


def test_next_dagrun_info_catchup_runs_every_open_window_from_start_date() -> None:
    restriction = TimeRestriction(earliest=utc("2026-12-08T00:00"), latest=None, catchup=True)
    assert runs(timetable(now="2027-01-01T00:00"), restriction, 4) == [
        ("2026-12-08T19:00:00+00:00", "2026-12-08T22:00:00+00:00"),
        ("2026-12-10T19:00:00+00:00", "2026-12-10T22:00:00+00:00"),
        # 15th and 17th are frozen
        ("2026-12-22T19:00:00+00:00", "2026-12-22T22:00:00+00:00"),
        ("2026-12-24T19:00:00+00:00", "2026-12-24T22:00:00+00:00"),
    ]


def test_next_dagrun_info_includes_one_off_and_skips_holiday() -> None:
    restriction = TimeRestriction(earliest=utc("2026-12-02T00:00"), latest=None, catchup=True)
    assert [start for start, _ in runs(timetable(), restriction, 3)] == [
        "2026-12-03T19:00:00+00:00",
        "2026-12-05T05:00:00+00:00",
        "2026-12-08T19:00:00+00:00",
    ]
    summer = TimeRestriction(earliest=utc("2027-07-13T00:00"), latest=None, catchup=True)
    # 2027-07-14 is a Wednesday; 2027-05-06 (Ascension) a Thursday: check the latter.
    ascension = TimeRestriction(earliest=utc("2027-05-05T00:00"), latest=None, catchup=True)
    assert runs(timetable(), ascension, 1) == [("2027-05-11T18:00:00+00:00", "2027-05-11T21:00:00+00:00")]
    assert runs(timetable(), summer, 1) == [("2027-07-13T18:00:00+00:00", "2027-07-13T21:00:00+00:00")]


@pytest.mark.parametrize(
    ("earliest", "expected"),
    [
        ("2026-03-24T00:00", ["2026-03-24T19:00", "2026-03-26T19:00", "2026-03-31T18:00"]),
        ("2026-10-20T00:00", ["2026-10-20T18:00", "2026-10-22T18:00", "2026-10-27T19:00"]),
    ],
    ids=["march-change", "october-change"],
)
def test_next_dagrun_info_across_dst_keeps_20h_paris(earliest: str, expected: list[str]) -> None:
    restriction = TimeRestriction(earliest=utc(earliest), latest=None, catchup=True)
    assert [start for start, _ in runs(timetable(), restriction, 3)] == [f"{e}:00+00:00" for e in expected]


@pytest.mark.parametrize(
    ("now", "last", "expected"),
    [
        ("2026-12-01T12:00", None, "2026-12-01T19:00"),
        ("2026-12-01T20:30", None, "2026-12-01T19:00"),
        ("2026-12-01T22:00", None, "2026-12-03T19:00"),
        ("2026-12-10T12:00", ("2026-12-01T19:00", "2026-12-01T22:00"), "2026-12-10T19:00"),
        ("2026-12-01T20:30", ("2026-12-01T19:00", "2026-12-01T22:00"), "2026-12-03T19:00"),
    ],
    ids=[
        "before-window-that-window",
        "window-open-now-still-runs",
        "window-just-closed-next-one",
        "missed-windows-skipped",
        "current-window-already-run",
    ],
)
def test_next_dagrun_info_without_catchup_starts_from_now(
    now: str, last: tuple[str, str] | None, expected: str
) -> None:
    restriction = TimeRestriction(earliest=utc("2026-11-01T00:00"), latest=None, catchup=False)
    interval = DataInterval(utc(last[0]), utc(last[1])) if last else None
    info = timetable(now=now).next_dagrun_info(last_automated_data_interval=interval, restriction=restriction)
    assert info is not None and info.run_after == utc(expected)


@pytest.mark.parametrize(
    ("restriction", "last"),
    [
        (
            TimeRestriction(earliest=utc("2026-12-01T00:00"), latest=utc("2026-12-01T18:59"), catchup=True),
            None,
        ),
        (
            TimeRestriction(earliest=utc("2026-12-01T00:00"), latest=utc("2026-12-10T00:00"), catchup=True),
            DataInterval(utc("2026-12-08T19:00"), utc("2026-12-08T22:00")),
        ),
    ],
    ids=["before-first-window", "after-last-allowed"],
)
def test_next_dagrun_info_past_latest_is_none(
    restriction: TimeRestriction, last: DataInterval | None
) -> None:
    assert timetable().next_dagrun_info(last_automated_data_interval=last, restriction=restriction) is None


def test_next_dagrun_info_latest_is_inclusive() -> None:
    restriction = TimeRestriction(
        earliest=utc("2026-12-01T00:00"), latest=utc("2026-12-01T19:00"), catchup=True
    )
    info = timetable().next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert info == DagRunInfo(
        run_after=utc("2026-12-01T19:00"),
        data_interval=DataInterval(utc("2026-12-01T19:00"), utc("2026-12-01T22:00")),
    )


def test_next_dagrun_info_no_window_ahead_is_none() -> None:
    raw = {**RAW, "windows": []}
    restriction = TimeRestriction(earliest=utc("2026-12-06T00:00"), latest=None, catchup=True)
    assert (
        timetable(raw=raw).next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
        is None
    )


def test_next_dagrun_info_calendar_error_logs_and_schedules_nothing(caplog: pytest.LogCaptureFixture) -> None:
    tt = timetable(raw={**RAW, "public_holidays": {"country": "ZZ"}})
    restriction = TimeRestriction(earliest=utc("2026-12-01T00:00"), latest=None, catchup=True)
    with caplog.at_level(logging.ERROR, logger="gardien.airflow.timetable"):
        assert tt.next_dagrun_info(last_automated_data_interval=None, restriction=restriction) is None
    assert "Country ZZ not available" in caplog.text


@pytest.mark.parametrize(
    ("run_after", "expected"),
    [
        ("2026-12-01T20:00", ("2026-12-01T19:00", "2026-12-01T22:00")),
        ("2026-12-01T12:00", ("2026-12-01T19:00", "2026-12-01T22:00")),
        ("2026-12-15T20:00", ("2026-12-22T19:00", "2026-12-22T22:00")),
    ],
    ids=["inside-window", "before-window", "frozen-window-next-open"],
)
def test_infer_manual_data_interval_window_containing_or_next(
    run_after: str, expected: tuple[str, str]
) -> None:
    interval = timetable().infer_manual_data_interval(run_after=utc(run_after))
    assert interval == DataInterval(utc(expected[0]), utc(expected[1]))


def test_infer_manual_data_interval_no_window_is_exact() -> None:
    raw = {**RAW, "windows": []}
    at = utc("2027-01-01T00:00")
    assert timetable(raw=raw).infer_manual_data_interval(run_after=at) == DataInterval.exact(at)


def test_serialize_round_trip_keeps_calendar_and_schedule() -> None:
    tt = timetable()
    back = ReleaseWindowTimetable.deserialize(tt.serialize())
    assert back == tt and back.description == tt.description
    restriction = TimeRestriction(earliest=utc("2026-12-02T00:00"), latest=None, catchup=True)
    assert back.next_dagrun_info(
        last_automated_data_interval=None, restriction=restriction
    ) == tt.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)


def test_description_and_summary_name_the_windows() -> None:
    tt = timetable()
    assert tt.summary == "release windows (Europe/Paris)"
    assert tt.description.startswith("Release windows in Europe/Paris: tue,thu 20:00–23:00")


def test_validate_calendar_without_window_is_invalid() -> None:
    with pytest.raises(AirflowTimetableInvalid, match="declares no window"):
        timetable(raw={**RAW, "windows": [], "one_off": []}).validate()
    timetable().validate()


def test_from_config_file_reads_repository_calendar() -> None:
    tt = ReleaseWindowTimetable.from_config_file(ROOT / "include" / "config" / "gardien.yaml")
    assert tt.calendar.config.timezone == "Europe/Paris"


def test_from_config_file_bad_calendar_is_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "gardien.yaml"
    path.write_text("calendar:\n  timezone: Europe/Atlantis\n  windows: []\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="unknown IANA timezone 'Europe/Atlantis'"):
        ReleaseWindowTimetable.from_config_file(path)


def test_plugin_registers_the_timetable_under_its_module_path() -> None:
    from airflow import plugins_manager

    registered = plugins_manager.get_timetables_plugins()
    assert registered["gardien.airflow.timetable.ReleaseWindowTimetable"] is ReleaseWindowTimetable


def test_dag_with_timetable_serializes_and_deserializes() -> None:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    tt = timetable()
    with DAG(
        "gardien_timetable_probe", schedule=tt, start_date=dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    ) as dag:
        EmptyOperator(task_id="noop")
    data = DagSerialization.to_dict(dag)
    assert data["dag"]["timetable"]["__type"] == "gardien.airflow.timetable.ReleaseWindowTimetable"
    back = DagSerialization.from_dict(data)
    assert isinstance(back.timetable, ReleaseWindowTimetable)
    assert back.timetable == tt

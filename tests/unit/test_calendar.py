"""Release calendar: windows across DST, freezes, public holidays, one-off windows, and every bad input."""

from __future__ import annotations

import copy
import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gardien.calendar import Calendar, load_calendar_file, parse_calendar, resolve_local
from gardien.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
PARIS = ZoneInfo("Europe/Paris")
BASE: dict[str, Any] = {
    "timezone": "Europe/Paris",
    "windows": [{"name": "soir", "days": ["tue", "thu"], "start": "20:00", "end": "23:00"}],
    "public_holidays": {"enabled": False},
}


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def calendar(**changes: Any) -> Calendar:
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return parse_calendar(raw, source="cal.yaml")


# -- time rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "start", "end"),
    [
        ("2026-12-01T00:00", "2026-12-01T19:00", "2026-12-01T22:00"),
        ("2026-06-01T00:00", "2026-06-02T18:00", "2026-06-02T21:00"),
        ("2026-03-24T19:00:01", "2026-03-26T19:00", "2026-03-26T22:00"),
        ("2026-03-27T00:00", "2026-03-31T18:00", "2026-03-31T21:00"),
        ("2026-10-21T00:00", "2026-10-22T18:00", "2026-10-22T21:00"),
        ("2026-10-23T00:00", "2026-10-27T19:00", "2026-10-27T22:00"),
        ("2026-12-01T19:00", "2026-12-01T19:00", "2026-12-01T22:00"),
        ("2026-12-01T19:00:01", "2026-12-03T19:00", "2026-12-03T22:00"),
    ],
    ids=[
        "winter-20h-is-19Z",
        "summer-20h-is-18Z",
        "thursday-before-march-change-still-winter",
        "tuesday-after-march-change-summer",
        "thursday-before-october-change-still-summer",
        "tuesday-after-october-change-winter",
        "start-equal-after-included",
        "start-just-passed-next-one",
    ],
)
def test_next_window_across_dst_follows_paris_wall_clock(after: str, start: str, end: str) -> None:
    window = calendar().next_window(utc(after))
    assert window is not None
    assert (window.start, window.end) == (utc(start), utc(end))


@pytest.mark.parametrize(
    ("wall", "expected"),
    [
        ("2026-01-15T20:00", "2026-01-15T19:00"),
        ("2026-07-15T20:00", "2026-07-15T18:00"),
        ("2026-03-29T02:30", "2026-03-29T01:00"),
        ("2026-03-29T02:00", "2026-03-29T01:00"),
        ("2026-03-29T03:00", "2026-03-29T01:00"),
        ("2026-10-25T02:30", "2026-10-25T00:30"),
        ("2026-10-25T03:00", "2026-10-25T02:00"),
    ],
    ids=[
        "winter",
        "summer",
        "march-gap-moves-to-gap-end",
        "march-gap-start",
        "march-first-valid-time",
        "october-ambiguous-is-first-occurrence",
        "october-after-repeat",
    ],
)
def test_resolve_local_dst_edges_follow_documented_rule(wall: str, expected: str) -> None:
    assert resolve_local(dt.datetime.fromisoformat(wall), PARIS) == utc(expected)


@pytest.mark.parametrize(
    ("window", "after", "start", "end"),
    [
        ({"start": "02:30", "end": "03:30"}, "2026-03-28T00:00", "2026-03-29T01:00", "2026-03-29T01:30"),
        ({"start": "02:00", "end": "02:45"}, "2026-03-28T00:00", "2026-04-05T00:00", "2026-04-05T00:45"),
        ({"start": "02:30", "end": "03:30"}, "2026-10-24T00:00", "2026-10-25T00:30", "2026-10-25T02:30"),
        ({"start": "01:00", "end": "04:00"}, "2026-03-28T00:00", "2026-03-29T00:00", "2026-03-29T02:00"),
    ],
    ids=[
        "march-window-starting-in-gap-starts-at-gap-end",
        "march-window-wholly-in-gap-does-not-occur",
        "october-window-in-repeated-hour-lasts-two-hours",
        "march-window-over-gap-lasts-two-hours",
    ],
)
def test_next_window_on_dst_sunday_is_deterministic(
    window: dict[str, str], after: str, start: str, end: str
) -> None:
    cal = calendar(windows=[{"name": "nuit", "days": ["sun"], **window}])
    found = cal.next_window(utc(after))
    assert found is not None
    assert (found.start, found.end) == (utc(start), utc(end))


def test_next_window_overnight_window_ends_next_day() -> None:
    cal = calendar(
        windows=[{"name": "nuit", "days": ["sat"], "start": "22:00", "end": "02:00", "overnight": True}]
    )
    window = cal.next_window(utc("2026-12-01T00:00"))
    assert window is not None
    assert (window.start, window.end, window.day) == (
        utc("2026-12-05T21:00"),
        utc("2026-12-06T01:00"),
        dt.date(2026, 12, 5),
    )


@pytest.mark.parametrize("method", ["next_window", "is_open", "freeze_at", "window_at"], ids=lambda m: m)
def test_calendar_naive_datetime_is_refused(method: str) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        getattr(calendar(), method)(dt.datetime(2026, 12, 1, 20, 0))


# -- freezes, holidays, one-off windows ------------------------------------------------------------------

FREEZE = {
    "name": "passage-version-DPI",
    "start": "2026-12-14",
    "end": "2026-12-20",
    "reason": "montée de version",
}


def test_next_window_freeze_spanning_windows_skips_them() -> None:
    cal = calendar(freezes=[FREEZE])
    window = cal.next_window(utc("2026-12-11T00:00"))
    assert window is not None and window.start == utc("2026-12-22T19:00")
    slots = cal.slots_between(utc("2026-12-11T00:00"), utc("2026-12-21T00:00"))
    assert [(s.window.day, [f.name for f in s.cancelled_by]) for s in slots] == [
        (dt.date(2026, 12, 15), ["passage-version-DPI"]),
        (dt.date(2026, 12, 17), ["passage-version-DPI"]),
    ]


def test_freeze_partial_overlap_cancels_overnight_window() -> None:
    cal = calendar(
        windows=[{"name": "nuit", "days": ["tue"], "start": "22:00", "end": "02:00", "overnight": True}],
        freezes=[{"name": "gel", "start": "2026-12-02", "end": "2026-12-02"}],
    )
    assert cal.windows_between(utc("2026-12-01T00:00"), utc("2026-12-03T00:00")) == ()
    window = cal.next_window(utc("2026-12-01T00:00"))
    assert window is not None and window.day == dt.date(2026, 12, 8)


@pytest.mark.parametrize(
    ("at", "name"),
    [
        ("2026-12-13T22:59:59", None),
        ("2026-12-13T23:00", "passage-version-DPI"),
        ("2026-12-20T22:59:59", "passage-version-DPI"),
        ("2026-12-20T23:00", None),
    ],
    ids=["just-before-first-local-day", "first-local-midnight", "end-of-last-day", "day-after"],
)
def test_freeze_at_covers_whole_local_days(at: str, name: str | None) -> None:
    found = calendar(freezes=[FREEZE]).freeze_at(utc(at))
    assert (found.name if found else None) == name


@pytest.mark.parametrize(
    ("after", "enabled", "expected_day"),
    [
        ("2026-07-13T00:00", True, dt.date(2026, 7, 16)),
        ("2026-07-13T00:00", False, dt.date(2026, 7, 14)),
        ("2026-05-13T00:00", True, dt.date(2026, 5, 19)),
        ("2027-11-10T00:00", True, dt.date(2027, 11, 16)),
    ],
    ids=["bastille-day-tuesday", "holidays-disabled", "ascension-thursday", "armistice-2027-thursday"],
)
def test_next_window_public_holiday_cancels_window(after: str, enabled: bool, expected_day: dt.date) -> None:
    cal = calendar(public_holidays={"enabled": enabled, "country": "FR"})
    window = cal.next_window(utc(after))
    assert window is not None and window.day == expected_day


def test_freeze_at_public_holiday_is_named_in_french() -> None:
    cal = calendar(public_holidays={"country": "FR"})
    found = cal.freeze_at(utc("2026-07-14T12:00"))
    assert found is not None
    assert (found.kind, found.name, found.uid) == (
        "public_holiday",
        "Fête nationale",
        "holiday-20260714@gardien",
    )


def test_freeze_at_configured_freeze_wins_over_holiday() -> None:
    cal = calendar(
        public_holidays={"country": "FR"},
        freezes=[{"name": "ete", "start": "2026-07-13", "end": "2026-07-15"}],
    )
    found = cal.freeze_at(utc("2026-07-14T12:00"))
    assert found is not None and found.name == "ete"


def test_unknown_holiday_country_is_reported_when_computed() -> None:
    cal = calendar(public_holidays={"country": "ZZ"})
    with pytest.raises(
        ConfigurationError, match=r"public_holidays: Country ZZ not available.*enabled: false"
    ):
        cal.next_window(utc("2026-12-01T00:00"))
    with pytest.raises(ConfigurationError, match="Country ZZ"):
        cal.check()


ONE_OFF = {"name": "correctif", "start": "2026-12-05T06:00", "end": "2026-12-05T07:30"}


def test_next_window_one_off_window_is_scheduled() -> None:
    window = calendar(one_off=[ONE_OFF]).next_window(utc("2026-12-04T00:00"))
    assert window is not None
    assert (window.name, window.kind, window.start, window.end) == (
        "correctif",
        "one_off",
        utc("2026-12-05T05:00"),
        utc("2026-12-05T06:30"),
    )


def test_next_window_one_off_inside_freeze_is_cancelled() -> None:
    cal = calendar(
        one_off=[{**ONE_OFF, "start": "2026-12-16T06:00", "end": "2026-12-16T07:00"}], freezes=[FREEZE]
    )
    window = cal.next_window(utc("2026-12-11T00:00"))
    assert window is not None and window.start == utc("2026-12-22T19:00")


def test_next_window_only_one_offs_ends_after_the_last() -> None:
    cal = calendar(
        windows=[],
        one_off=[
            ONE_OFF,
            {**ONE_OFF, "name": "loin", "start": "2028-06-01T06:00", "end": "2028-06-01T07:00"},
        ],
    )
    far = cal.next_window(utc("2026-12-06T00:00"))
    assert far is not None and far.name == "loin"
    assert cal.next_window(utc("2028-06-02T00:00")) is None


# -- open / upcoming -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "is_open"),
    [
        ("2026-12-01T18:59:59", False),
        ("2026-12-01T19:00", True),
        ("2026-12-01T21:59:59", True),
        ("2026-12-01T22:00", False),
        ("2026-12-15T20:00", False),
        ("2026-12-02T20:00", False),
    ],
    ids=["before", "start-inclusive", "last-second", "end-exclusive", "frozen-window", "wednesday"],
)
def test_is_open_half_open_and_freeze_aware(at: str, is_open: bool) -> None:
    assert calendar(freezes=[FREEZE]).is_open(utc(at)) is is_open


def test_upcoming_lists_open_now_then_cancelled_between_open_ones() -> None:
    slots = calendar(freezes=[FREEZE]).upcoming(utc("2026-12-10T20:00"), 2)
    assert [(s.window.day, s.cancelled) for s in slots] == [
        (dt.date(2026, 12, 10), False),
        (dt.date(2026, 12, 15), True),
        (dt.date(2026, 12, 17), True),
        (dt.date(2026, 12, 22), False),
    ]


def test_upcoming_zero_count_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        calendar().upcoming(utc("2026-12-01T00:00"), 0)


def test_windows_between_counts_a_month_of_tuesdays_and_thursdays() -> None:
    windows = calendar().windows_between(utc("2026-12-01T00:00"), utc("2027-01-01T00:00"))
    assert len(windows) == 10  # five Tuesdays (1st–29th), five Thursdays (3rd–31st)
    assert all(w.start < w.end for w in windows)
    assert len({w.uid for w in windows}) == 10


@settings(max_examples=60, deadline=None)
@given(after=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2028, 12, 31)))
def test_next_window_property_no_open_window_is_skipped(after: dt.datetime) -> None:
    cal = calendar(freezes=[FREEZE], public_holidays={"country": "FR"}, one_off=[ONE_OFF])
    at = after.replace(tzinfo=dt.UTC)
    window = cal.next_window(at)
    assert window is not None and window.start >= at
    assert cal.windows_between(at, window.start) == ()
    assert cal.is_open(window.start) and cal.freeze_at(window.start) is None


# -- bad input -------------------------------------------------------------------------------------------

W = {"name": "soir", "days": ["tue"], "start": "20:00", "end": "23:00"}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"windows": [W, {**W, "name": "tard", "start": "22:00", "end": "23:30"}]},
            r"windows 'soir' \(tue 20:00–23:00\) and 'tard' \(tue 22:00–23:30\) overlap",
        ),
        (
            {
                "windows": [
                    {**W, "days": ["sun"], "start": "23:00", "end": "01:00", "overnight": True},
                    {**W, "name": "lundi", "days": ["mon"], "start": "00:30", "end": "02:00"},
                ]
            },
            "'soir' .* and 'lundi' .* overlap",
        ),
        (
            {"windows": [{**W, "end": "19:00"}]},
            r"windows\[0\] 'soir': .*ends \(19:00\) at or before it starts \(20:00\).*overnight: true",
        ),
        ({"windows": [{**W, "end": "20:00"}]}, "at or before it starts"),
        ({"windows": [{**W, "overnight": True}]}, "remove 'overnight: true'"),
        ({"timezone": "Mars/Olympus"}, r"calendar.timezone: unknown IANA timezone 'Mars/Olympus'"),
        (
            {"windows": [{**W, "days": ["tue", "funday"]}]},
            r"windows\[0\] 'soir'.days: unknown weekday 'funday'",
        ),
        ({"windows": [{**W, "days": ["tue", "mardi"]}]}, "listed twice"),
        ({"windows": [{**W, "days": []}]}, "at least one weekday"),
        ({"windows": [{**W, "start": "25:00"}]}, r"start: bad time '25:00': use HH:MM"),
        ({"windows": [{**W, "start": "8h"}]}, "bad time '8h'"),
        ({"windows": [{**W, "start": 1200}]}, "got the number 1200: quote the time"),
        (
            {"freezes": [{**FREEZE, "end": "2026-12-01"}]},
            r"freezes\[0\] 'passage-version-DPI': .*before it starts.*swap the dates",
        ),
        ({"freezes": [{**FREEZE, "start": dt.datetime(2026, 12, 14, 8)}]}, "freezes are whole days"),
        ({"freezes": [FREEZE, FREEZE]}, "freeze name 'passage-version-DPI' is used twice"),
        (
            {"one_off": [{**ONE_OFF, "end": "2026-12-05T05:00"}]},
            r"one_off\[0\] 'correctif': ends .* at or before it starts",
        ),
        ({"one_off": [{**ONE_OFF, "start": "2026-12-05T06:00+01:00"}]}, "bad date-time"),
        (
            {"one_off": [{**ONE_OFF, "start": dt.datetime(2026, 12, 5, 6, tzinfo=dt.UTC)}]},
            "carries a UTC offset",
        ),
        (
            {
                "one_off": [
                    ONE_OFF,
                    {**ONE_OFF, "name": "autre", "start": "2026-12-05T07:00", "end": "2026-12-05T08:00"},
                ]
            },
            "one-off windows 'correctif' and 'autre' overlap",
        ),
        (
            {"one_off": [{**ONE_OFF, "start": "2026-12-01T22:30", "end": "2026-12-01T23:30"}]},
            "one-off window 'correctif' overlaps recurring window 'soir' on 2026-12-01",
        ),
        ({"one_off": [{**ONE_OFF, "name": "soir"}]}, "window name 'soir' is used twice"),
        ({"windows": [{**W, "name": "avec espace"}]}, "bad name 'avec espace'"),
        ({"windows": [{**W, "stat": "20:00"}]}, r"windows\[0\] 'soir'.stat: unknown key"),
        ({"public_holidays": {"country": "France"}}, "bad country 'France'"),
    ],
    ids=[
        "overlapping-windows",
        "overlap-across-week-wrap",
        "end-before-start",
        "end-equal-start",
        "overnight-but-same-day",
        "unknown-timezone",
        "unknown-weekday",
        "duplicate-weekday",
        "no-weekday",
        "bad-time-hour",
        "bad-time-format",
        "unquoted-yaml-time",
        "freeze-end-before-start",
        "freeze-with-time",
        "duplicate-freeze",
        "one-off-end-before-start",
        "one-off-string-offset",
        "one-off-aware-datetime",
        "one-offs-overlap",
        "one-off-overlaps-recurring",
        "duplicate-window-name",
        "bad-name",
        "unknown-key",
        "bad-country",
    ],
)
def test_parse_calendar_bad_input_names_entry_and_fix(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        calendar(**changes)
    assert str(info.value).startswith("cal.yaml: ")


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (None, "'calendar' section is missing or is not a mapping"),
        ([], "is not a mapping"),
        ({"windows": []}, "calendar.timezone: Field required"),
    ],
    ids=["missing", "list", "no-timezone"],
)
def test_parse_calendar_bad_section_is_configuration_error(raw: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_calendar(raw, source="cal.yaml")


def test_parse_calendar_several_problems_are_all_listed() -> None:
    with pytest.raises(ConfigurationError, match=r"2 problems(.|\n)*timezone(.|\n)*weekday"):
        calendar(timezone="Nowhere/City", windows=[{**W, "days": ["xyz"]}])


def test_parse_calendar_accepts_french_day_names_and_empty_sections() -> None:
    cal = calendar(windows=[{**W, "days": ["mardi", "Jeudi"]}], freezes=None, one_off=None)
    assert cal.config.windows[0].days == ("tue", "thu")
    assert cal.config.freezes == ()


def test_parse_calendar_round_trips_through_json_dump() -> None:
    cal = calendar(freezes=[FREEZE], one_off=[ONE_OFF])
    assert parse_calendar(cal.config.model_dump(mode="json"), source="copy") == Calendar(cal.config, "copy")


# -- files -----------------------------------------------------------------------------------------------


def test_load_calendar_file_repository_config_parses() -> None:
    cal = load_calendar_file(ROOT / "include" / "config" / "gardien.yaml")
    assert cal.config.timezone == "Europe/Paris"
    assert cal.next_window(utc("2026-12-11T00:00")) is not None


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "cannot read the configuration file"),
        ("calendar: [unclosed", "is not valid YAML"),
        ("version: 1\n", "'calendar' section is missing"),
        (
            "calendar:\n  timezone: Europe/Paris\n  windows:\n    - {name: a, days: [tue], start: 20:00, end: '23:00'}\n",
            "quote the time",
        ),
    ],
    ids=["missing-file", "bad-yaml", "no-section", "unquoted-time"],
)
def test_load_calendar_file_bad_file_is_configuration_error(
    tmp_path: Path, content: str | None, match: str
) -> None:
    path = tmp_path / "gardien.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=match):
        load_calendar_file(path)


def test_calendar_import_and_parse_load_neither_airflow_nor_holidays() -> None:
    # DAG files parse the calendar: the holidays package (~1 s to import) must wait until windows are computed.
    code = (
        "import sys; from gardien.calendar import load_calendar_file; import gardien.cli.windows;"
        f"load_calendar_file({str(ROOT / 'include' / 'config' / 'gardien.yaml')!r});"
        "print(sorted(m for m in ('airflow', 'holidays') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@settings(max_examples=80, deadline=None)
@given(
    day=st.sampled_from(
        [dt.date(2026, 3, 29), dt.date(2026, 10, 25), dt.date(2027, 3, 28), dt.date(2027, 10, 31)]
    ),
    first=st.integers(min_value=0, max_value=1439),
    second=st.integers(min_value=0, max_value=1439),
)
def test_resolve_local_on_dst_days_never_goes_backwards(day: dt.date, first: int, second: int) -> None:
    # The property that keeps every window's end at or after its start, whatever the DST change.
    early, late = sorted((first, second))
    midnight = dt.datetime.combine(day, dt.time())
    a = resolve_local(midnight + dt.timedelta(minutes=early), PARIS)
    b = resolve_local(midnight + dt.timedelta(minutes=late), PARIS)
    assert a <= b

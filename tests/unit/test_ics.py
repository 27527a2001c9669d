"""iCalendar export: RFC 5545 structure, CRLF, folding at 75 octets, stable UIDs, cancelled windows, freezes."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from gardien.calendar import Calendar, parse_calendar, to_ics
from gardien.calendar.ics import escape, fold

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
RAW = {
    "timezone": "Europe/Paris",
    "windows": [{"name": "soir-mardi-jeudi", "days": ["tue", "thu"], "start": "20:00", "end": "23:00"}],
    "one_off": [{"name": "correctif", "start": "2026-12-05T06:00", "end": "2026-12-05T07:30"}],
    "freezes": [
        {
            "name": "passage-version-DPI",
            "start": "2026-12-14",
            "end": "2026-12-20",
            "reason": "montée de version majeure; DPI, lot 2 — avec une raison assez longue pour être repliée",
        }
    ],
    "public_holidays": {"country": "FR"},
}


@pytest.fixture(scope="module")
def cal() -> Calendar:
    return parse_calendar(RAW, source="cal.yaml")


def unfold(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")[:-1]


def events(text: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for line in unfold(text):
        if line == "BEGIN:VEVENT":
            found.append({})
        elif found and line != "END:VEVENT" and ":" in line:
            key, value = line.split(":", 1)
            found[-1][key] = value
    return found


def test_to_ics_structure_is_a_crlf_vcalendar(cal: Calendar) -> None:
    text = to_ics(cal, now=NOW, horizon_days=40)
    assert text.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:")
    assert text.endswith("END:VCALENDAR\r\n")
    assert "\n" not in text.replace("\r\n", "")
    assert text.count("BEGIN:VEVENT") == text.count("END:VEVENT") > 0


def test_to_ics_every_physical_line_fits_75_octets(cal: Calendar) -> None:
    text = to_ics(cal, now=NOW, horizon_days=40)
    lines = text.split("\r\n")[:-1]
    assert max(len(line.encode()) for line in lines) <= 75
    assert any(line.startswith(" ") for line in lines)  # the long freeze reason really was folded


def test_to_ics_windows_and_freezes_in_horizon(cal: Calendar) -> None:
    found = events(to_ics(cal, now=NOW, horizon_days=40))
    windows = [e for e in found if e["CATEGORIES"] == "RELEASE-WINDOW"]
    freezes = [e for e in found if e["CATEGORIES"] == "FREEZE"]
    # 2026-11-28 + 40 days = 2027-01-07: 11 Tue/Thu windows and the Saturday one-off.
    assert len(windows) == 12
    assert {e["SUMMARY"] for e in freezes} == {
        "Release freeze: passage-version-DPI",
        "Public holiday\\, no release: Noël",
        "Public holiday\\, no release: Jour de l'an",
    }
    assert all(e["DTSTAMP"] == "20261128T120000Z" for e in found)


def test_to_ics_cancelled_window_names_the_freeze(cal: Calendar) -> None:
    found = {e["UID"]: e for e in events(to_ics(cal, now=NOW, horizon_days=40))}
    frozen = found["window-soir-mardi-jeudi-20261215@gardien"]
    assert frozen["STATUS"] == "CANCELLED"
    assert frozen["DESCRIPTION"].startswith("Cancelled by: passage-version-DPI (montée de version majeure\\;")
    assert found["window-soir-mardi-jeudi-20261201@gardien"]["STATUS"] == "CONFIRMED"


def test_to_ics_times_are_utc_and_freeze_days_exclusive_end(cal: Calendar) -> None:
    text = to_ics(cal, now=NOW, horizon_days=40)
    found = {e["UID"]: e for e in events(text)}
    window = found["window-soir-mardi-jeudi-20261201@gardien"]
    assert (window["DTSTART"], window["DTEND"]) == ("20261201T190000Z", "20261201T220000Z")
    assert "DTSTART;VALUE=DATE:20261214\r\nDTEND;VALUE=DATE:20261221\r\n" in text


def test_to_ics_summer_window_is_18z() -> None:
    cal = parse_calendar({**RAW, "one_off": [], "freezes": []}, source="cal.yaml")
    found = {
        e["UID"]: e for e in events(to_ics(cal, now=dt.datetime(2027, 6, 1, tzinfo=dt.UTC), horizon_days=3))
    }
    assert found["window-soir-mardi-jeudi-20270603@gardien"]["DTSTART"] == "20270603T180000Z"


def test_to_ics_uids_are_unique_and_stable_across_exports(cal: Calendar) -> None:
    first = [e["UID"] for e in events(to_ics(cal, now=NOW, horizon_days=40))]
    later = [e["UID"] for e in events(to_ics(cal, now=NOW + dt.timedelta(days=3), horizon_days=40))]
    assert len(first) == len(set(first))
    shared = set(first) & set(later)
    assert "window-soir-mardi-jeudi-20261203@gardien" in shared
    assert "freeze-passage-version-DPI@gardien" in shared
    assert all(re.fullmatch(r"[\w.-]+@gardien", uid) for uid in first)


@pytest.mark.parametrize(
    ("now", "horizon", "match"),
    [
        (dt.datetime(2026, 11, 28, 12), 90, "timezone-aware"),
        (NOW, 0, "at least 1"),
    ],
    ids=["naive-now", "zero-horizon"],
)
def test_to_ics_bad_arguments_are_refused(cal: Calendar, now: dt.datetime, horizon: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        to_ics(cal, now=now, horizon_days=horizon)


@pytest.mark.parametrize(
    "line",
    ["A" * 75, "A" * 76, "B" * 200, "DESCRIPTION:" + "é" * 70, "SUMMARY:" + "€" * 40 + "x"],
    ids=["exactly-75", "76", "long-ascii", "two-byte-chars", "three-byte-chars"],
)
def test_fold_splits_at_75_octets_without_cutting_characters(line: str) -> None:
    folded = fold(line)
    parts = folded.split("\r\n")
    assert all(len(part.encode()) <= 75 for part in parts)
    assert all(part.startswith(" ") for part in parts[1:])
    assert folded.replace("\r\n ", "") == line
    assert (len(parts) > 1) is (len(line.encode()) > 75)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a;b,c", "a\\;b\\,c"),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines", "two\\nlines"),
        ("plain", "plain"),
    ],
    ids=["semicolon-comma", "backslash", "newline", "plain"],
)
def test_escape_text_values(text: str, expected: str) -> None:
    assert escape(text) == expected

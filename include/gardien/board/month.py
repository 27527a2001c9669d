"""The calendar page's month grid: windows, cancelled windows, freezes, holidays and releases (pure)."""

from __future__ import annotations

import calendar as cal
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from gardien.board.queries import ReleaseRow
from gardien.calendar import Calendar


@dataclass(frozen=True, slots=True)
class DayEntry:
    kind: str  # window | cancelled | freeze | public_holiday | release
    text: str
    href: str | None = None


@dataclass(frozen=True, slots=True)
class Day:
    date: dt.date
    in_month: bool
    today: bool
    entries: tuple[DayEntry, ...]


@dataclass(frozen=True, slots=True)
class MonthView:
    year: int
    month: int
    title: str
    weeks: tuple[tuple[Day, ...], ...]
    previous: str
    following: str
    timezone: str


def month_bounds(calendar: Calendar, year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    """UTC bounds of the weeks shown for ``year``/``month`` (Monday before the 1st to Sunday after the end)."""
    first = dt.date(year, month, 1)
    start = first - dt.timedelta(days=first.weekday())
    last = dt.date(year, month, cal.monthrange(year, month)[1])
    end = last + dt.timedelta(days=7 - last.weekday())
    tz = calendar.tz
    return (
        dt.datetime.combine(start, dt.time(), tz).astimezone(dt.UTC),
        dt.datetime.combine(end, dt.time(), tz).astimezone(dt.UTC),
    )


def month_view(
    calendar: Calendar, *, year: int, month: int, releases: Sequence[ReleaseRow], now: dt.datetime
) -> MonthView:
    """The month grid: windows (open or cancelled), freezes, public holidays and releases, local days."""
    tz = calendar.tz
    start, end = month_bounds(calendar, year, month)
    by_day: dict[dt.date, list[DayEntry]] = {}

    def add(day: dt.date, entry: DayEntry) -> None:
        by_day.setdefault(day, []).append(entry)

    for freeze in calendar.freezes_between(start, end):
        day = freeze.first_day
        while day <= freeze.last_day:
            label = "public holiday" if freeze.kind == "public_holiday" else "freeze"
            add(
                day,
                DayEntry(
                    freeze.kind,
                    f"{label}: {freeze.name}"
                    + (f" ({freeze.reason})" if freeze.reason and freeze.kind == "freeze" else ""),
                ),
            )
            day += dt.timedelta(days=1)
    for slot in calendar.slots_between(start, end):
        w = slot.window
        hours = f"{w.start.astimezone(tz):%H:%M}–{w.end.astimezone(tz):%H:%M}"
        if slot.cancelled:
            why = ", ".join(f.name for f in slot.cancelled_by)
            add(w.day, DayEntry("cancelled", f"window {w.name} {hours} cancelled ({why})"))
        else:
            add(w.day, DayEntry("window", f"window {w.name} {hours}"))
    for r in releases:
        at = (r.window_start or r.created_at).astimezone(tz)
        add(at.date(), DayEntry("release", f"{r.id} · {r.status}", href=f"releases/{r.id}"))
    today = now.astimezone(tz).date()
    weeks = []
    for week in cal.Calendar(firstweekday=0).monthdatescalendar(year, month):
        weeks.append(
            tuple(
                Day(date=d, in_month=d.month == month, today=d == today, entries=tuple(by_day.get(d, ())))
                for d in week
            )
        )
    prev_month = dt.date(year, month, 1) - dt.timedelta(days=1)
    next_month = dt.date(year, month, 28) + dt.timedelta(days=7)
    return MonthView(
        year=year,
        month=month,
        title=f"{cal.month_name[month]} {year}",
        weeks=tuple(weeks),
        previous=f"{prev_month:%Y-%m}",
        following=f"{next_month.replace(day=1):%Y-%m}",
        timezone=calendar.config.timezone,
    )

"""The release calendar as a pure value: concrete windows, freezes and holidays for given UTC instants."""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

from gardien.calendar.config import WEEKDAYS, CalendarConfig, zone
from gardien.errors import ConfigurationError

UTC = dt.UTC
# How far next_window()/upcoming() look ahead before concluding there is no window: a freeze longer than a
# year is not a release calendar any more.
SEARCH_HORIZON = dt.timedelta(days=366)
_CHUNK = dt.timedelta(days=28)


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """One concrete release window [start, end) in UTC; ``day`` is its local start date."""

    name: str
    kind: str  # "recurring" | "one_off"
    start: dt.datetime
    end: dt.datetime
    day: dt.date

    @property
    def uid(self) -> str:
        """Stable identifier of this occurrence (an entry starts at most once per local day)."""
        return f"window-{self.name}-{self.day:%Y%m%d}@gardien"

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        """True when [self.start, self.end) and [start, end) share an instant."""
        return self.start < end and start < self.end


@dataclasses.dataclass(frozen=True, slots=True)
class Freeze:
    """A period without releases: local days ``first_day``..``last_day`` included, as UTC [start, end)."""

    name: str
    kind: str  # "freeze" | "public_holiday"
    first_day: dt.date
    last_day: dt.date
    start: dt.datetime
    end: dt.datetime
    reason: str = ""

    @property
    def uid(self) -> str:
        """Stable identifier: by name for configured freezes, by date for public holidays."""
        if self.kind == "public_holiday":
            return f"holiday-{self.first_day:%Y%m%d}@gardien"
        return f"freeze-{self.name}@gardien"


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """A window and the freezes/holidays that cancel it (empty when the window is open for releases)."""

    window: Window
    cancelled_by: tuple[Freeze, ...] = ()

    @property
    def cancelled(self) -> bool:
        """Whether a freeze or holiday cancels this window."""
        return bool(self.cancelled_by)


def resolve_local(wall: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of the naive wall-clock time ``wall`` in ``tz``, deterministic on DST days.

    - An ambiguous time (the repeated hour in autumn) means its FIRST occurrence (PEP 495 ``fold=0``, still
      summer time): 02:30 on the last Sunday of October in Paris is 00:30Z.
    - A nonexistent time (the skipped hour in spring) means the instant the gap ends: 02:30 on the last
      Sunday of March in Paris is 01:00Z (03:00 local). This keeps resolution monotonic, so a window never
      ends before it starts; a window lying wholly inside the skipped hour has no duration and does not occur.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists; if ambiguous, fold=0 is its first occurrence
    # Nonexistent: fold=1 reads it with the offset after the gap (an instant before the transition), fold=0
    # with the offset before (an instant after). Bisect for the transition, in whole seconds.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    before = low.astimezone(tz).utcoffset()
    while high - low > dt.timedelta(seconds=1):
        middle = low + dt.timedelta(seconds=(high - low).total_seconds() // 2)
        if middle.astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


def _aware_utc(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    value = value.astimezone(UTC)
    # Rebuilt as a plain datetime: subclasses (pendulum's, from Airflow) differ in arithmetic and comparison.
    return dt.datetime(*value.timetuple()[:6], value.microsecond, tzinfo=UTC)


@lru_cache(maxsize=256)
def _public_holidays(
    country: str, subdivision: str | None, language: str, year: int
) -> tuple[tuple[dt.date, str], ...]:
    import holidays  # costs ~1 s: imported only when holidays are actually needed, never at DAG parse

    try:
        found = holidays.country_holidays(country, subdiv=subdivision, years=year, language=language)
    except NotImplementedError as exc:
        raise ConfigurationError(
            f"calendar.public_holidays: {exc}: use an ISO 3166 country code the 'holidays' package knows "
            "(e.g. 'FR', subdivision '57' for Moselle), or set 'enabled: false'"
        ) from exc
    return tuple(sorted(found.items()))


@dataclasses.dataclass(frozen=True, slots=True)
class Calendar:
    """Release windows, freezes and public holidays of one configuration; every method is pure.

    UTC in, UTC out. Window times are wall-clock times in the calendar's timezone (20:00 Europe/Paris is
    19:00Z in winter, 18:00Z in summer; DST days follow ``resolve_local``). Windows are half-open
    [start, end). A window overlapping, even partly, a freeze or a public holiday (whole local days) is
    cancelled.
    """

    config: CalendarConfig
    source: str = "<calendar>"

    @property
    def tz(self) -> ZoneInfo:
        """The calendar's timezone."""
        return zone(self.config.timezone)

    def check(self) -> None:
        """Raise ConfigurationError for problems only visible when computing (an unknown holiday country)."""
        self._holidays(dt.date(2000, 1, 1), dt.date(2000, 1, 1))

    # -- windows ---------------------------------------------------------------------------------------

    def slots_between(self, start: dt.datetime, end: dt.datetime) -> tuple[Slot, ...]:
        """Every window (open or cancelled) whose start is in [start, end), in order."""
        start, end = _aware_utc(start, "start"), _aware_utc(end, "end")
        windows = self._windows_starting(start, end)
        if not windows:
            return ()
        freezes = self.freezes_between(min(w.start for w in windows), max(w.end for w in windows))
        return tuple(
            Slot(window=w, cancelled_by=tuple(f for f in freezes if w.overlaps(f.start, f.end)))
            for w in windows
        )

    def windows_between(self, start: dt.datetime, end: dt.datetime) -> tuple[Window, ...]:
        """Open (not cancelled) windows whose start is in [start, end), in order."""
        return tuple(slot.window for slot in self.slots_between(start, end) if not slot.cancelled)

    def next_window(self, after: dt.datetime) -> Window | None:
        """The first open window whose start is at or after ``after``; None if none within the horizon."""
        after = _aware_utc(after, "after")
        for chunk_start, chunk_end in self._chunks(after):
            found = self.windows_between(chunk_start, chunk_end)
            if found:
                return found[0]
        return None

    def window_at(self, at: dt.datetime) -> Window | None:
        """The open window containing ``at`` (start inclusive, end exclusive), if any."""
        at = _aware_utc(at, "at")
        for window in self.windows_between(at - self._longest_window(), at + dt.timedelta(microseconds=1)):
            if window.start <= at < window.end:
                return window
        return None

    def is_open(self, at: dt.datetime) -> bool:
        """Whether a release may run at ``at``: inside a window that no freeze or holiday cancels."""
        return self.window_at(at) is not None

    def upcoming(self, now: dt.datetime, n: int) -> tuple[Slot, ...]:
        """Windows not yet over at ``now`` until ``n`` open ones, with the cancelled ones in between."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        now = _aware_utc(now, "now")
        found: list[Slot] = []
        open_count = 0
        # Start one longest-window back so that a window open right now is listed first.
        for chunk_start, chunk_end in self._chunks(now - self._longest_window()):
            for slot in self.slots_between(chunk_start, chunk_end):
                if slot.window.end <= now:
                    continue
                found.append(slot)
                open_count += not slot.cancelled
                if open_count == n:
                    return tuple(found)
        return tuple(found)

    # -- freezes ---------------------------------------------------------------------------------------

    def freezes_between(self, start: dt.datetime, end: dt.datetime) -> tuple[Freeze, ...]:
        """Configured freezes and public holidays overlapping [start, end), ordered by start."""
        start, end = _aware_utc(start, "start"), _aware_utc(end, "end")
        first = start.astimezone(self.tz).date() - dt.timedelta(days=1)
        last = end.astimezone(self.tz).date() + dt.timedelta(days=1)
        candidates = [
            self._freeze(name=f.name, kind="freeze", first_day=f.start, last_day=f.end, reason=f.reason)
            for f in self.config.freezes
            if f.start <= last and first <= f.end
        ]
        candidates.extend(
            self._freeze(name=name, kind="public_holiday", first_day=day, last_day=day, reason="jour férié")
            for day, name in self._holidays(first, last)
        )
        return tuple(
            sorted(
                (f for f in candidates if f.start < end and start < f.end),
                key=lambda f: (f.start, f.kind, f.name),
            )
        )

    def freeze_at(self, at: dt.datetime) -> Freeze | None:
        """The freeze or holiday in force at ``at`` (configured freezes win over holidays), if any."""
        at = _aware_utc(at, "at")
        found = self.freezes_between(at, at + dt.timedelta(microseconds=1))
        return min(found, key=lambda f: f.kind != "freeze") if found else None

    # -- internals -------------------------------------------------------------------------------------

    def _freeze(self, *, name: str, kind: str, first_day: dt.date, last_day: dt.date, reason: str) -> Freeze:
        return Freeze(
            name=name,
            kind=kind,
            first_day=first_day,
            last_day=last_day,
            start=resolve_local(dt.datetime.combine(first_day, dt.time()), self.tz),
            end=resolve_local(dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time()), self.tz),
            reason=reason,
        )

    def _holidays(self, first: dt.date, last: dt.date) -> list[tuple[dt.date, str]]:
        settings = self.config.public_holidays
        if not settings.enabled:
            return []
        days: list[tuple[dt.date, str]] = []
        for year in range(first.year, last.year + 1):
            for day, name in _public_holidays(
                settings.country, settings.subdivision, settings.language, year
            ):
                if first <= day <= last:
                    days.append((day, name))
        return days

    def _windows_starting(self, start: dt.datetime, end: dt.datetime) -> list[Window]:
        tz = self.tz
        found: list[Window] = []
        day = start.astimezone(tz).date() - dt.timedelta(days=1)
        last = end.astimezone(tz).date() + dt.timedelta(days=1)
        while day <= last:
            weekday = WEEKDAYS[day.weekday()]
            for entry in self.config.windows:
                if weekday in entry.days:
                    end_day = day + dt.timedelta(days=1) if entry.overnight else day
                    found.append(
                        Window(
                            name=entry.name,
                            kind="recurring",
                            start=resolve_local(dt.datetime.combine(day, entry.start), tz),
                            end=resolve_local(dt.datetime.combine(end_day, entry.end), tz),
                            day=day,
                        )
                    )
            day += dt.timedelta(days=1)
        found.extend(
            Window(
                name=entry.name,
                kind="one_off",
                start=resolve_local(entry.start, tz),
                end=resolve_local(entry.end, tz),
                day=entry.start.date(),
            )
            for entry in self.config.one_off
        )
        return sorted(
            (w for w in found if start <= w.start < end and w.start < w.end),
            key=lambda w: (w.start, w.name),
        )

    def _longest_window(self) -> dt.timedelta:
        # Nominal length plus the one hour a DST change can add; one-offs can be arbitrarily long.
        longest = max((dt.timedelta(minutes=w.minutes) for w in self.config.windows), default=dt.timedelta())
        for entry in self.config.one_off:
            longest = max(longest, entry.end - entry.start)
        return longest + dt.timedelta(hours=2)

    def _chunks(self, start: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        horizon = start + SEARCH_HORIZON
        for entry in self.config.one_off:
            # A calendar of one-off windows only may plan one further ahead than the horizon.
            horizon = max(horizon, resolve_local(entry.end, self.tz))
        chunks: list[tuple[dt.datetime, dt.datetime]] = []
        while start < horizon:
            chunks.append((start, min(start + _CHUNK, horizon)))
            start += _CHUNK
        return chunks

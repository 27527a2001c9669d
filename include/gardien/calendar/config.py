"""The ``calendar:`` section of the configuration as pydantic models: shape and field-level checks."""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator, model_validator

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# English and French spellings are accepted: release managers write the calendar in either language.
_DAY_ALIASES: dict[str, str] = {
    **{day: day for day in WEEKDAYS},
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
    "lun": "mon",
    "lundi": "mon",
    "mar": "tue",
    "mardi": "tue",
    "mer": "wed",
    "mercredi": "wed",
    "jeu": "thu",
    "jeudi": "thu",
    "ven": "fri",
    "vendredi": "fri",
    "sam": "sat",
    "samedi": "sat",
    "dim": "sun",
    "dimanche": "sun",
}

_NAME = re.compile(r"^\w[\w.-]*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_LOCAL_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$")


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError (with the fix) when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown IANA timezone {name!r}: use a name such as 'Europe/Paris' or 'America/Cayenne'"
        ) from exc


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"bad name {value!r}: use letters, digits, '.', '-' or '_' (it becomes part of calendar UIDs)"
        )
    return value


def _parse_hhmm(value: Any) -> dt.time:
    if isinstance(value, int) and not isinstance(value, bool):
        # PyYAML reads an unquoted 20:00 as the base-60 integer 1200.
        raise ValueError(f'got the number {value}: quote the time in YAML, e.g. "20:00"')
    if isinstance(value, dt.time):
        return value.replace(second=0, microsecond=0)
    if not isinstance(value, str) or not _HHMM.match(value.strip()):
        raise ValueError(f'bad time {value!r}: use HH:MM on a 24-hour clock, e.g. "20:00"')
    hours, minutes = value.strip().split(":")
    return dt.time(int(hours), int(minutes))


def _parse_local_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and _LOCAL_DATETIME.match(value.strip()):
        parsed = dt.datetime.fromisoformat(value.strip())
    else:
        raise ValueError(
            f'bad date-time {value!r}: use local wall-clock "YYYY-MM-DDTHH:MM", e.g. "2026-12-05T06:00"'
        )
    if parsed.tzinfo is not None:
        raise ValueError(
            f"{value!r} carries a UTC offset: one-off times are wall-clock times in the calendar's "
            "timezone, write them without an offset"
        )
    return parsed.replace(second=0, microsecond=0)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecurringWindowConfig(_Model):
    """A window repeated every week on ``days`` from ``start`` to ``end`` (local wall-clock).

    ``overnight: true`` declares a window that ends on the next day (22:00–02:00); without it an end at or
    before the start is refused, because it is far more often a typo than a night window.
    """

    name: str
    days: tuple[str, ...]
    start: dt.time
    end: dt.time
    overnight: bool = False

    _name = field_validator("name")(_check_name)

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("list at least one weekday, e.g. [tue, thu]")
        days: list[str] = []
        for item in value:
            day = _DAY_ALIASES.get(str(item).strip().lower())
            if day is None:
                raise ValueError(f"unknown weekday {item!r}: use one of {', '.join(WEEKDAYS)}")
            if day in days:
                raise ValueError(f"weekday {item!r} is listed twice: list each day once")
            days.append(day)
        return tuple(sorted(days, key=WEEKDAYS.index))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> dt.time:
        return _parse_hhmm(value)

    @field_serializer("start", "end")
    def _dump_time(self, value: dt.time) -> str:
        return value.strftime("%H:%M")

    @model_validator(mode="after")
    def _order(self) -> RecurringWindowConfig:
        if self.overnight and self.end > self.start:
            raise ValueError(
                f"is marked overnight but ends ({self.end:%H:%M}) after it starts ({self.start:%H:%M}) "
                "on the same day: remove 'overnight: true'"
            )
        if not self.overnight and self.end <= self.start:
            raise ValueError(
                f"ends ({self.end:%H:%M}) at or before it starts ({self.start:%H:%M}): fix the times, or add "
                "'overnight: true' if the window really crosses midnight"
            )
        return self

    @property
    def minutes(self) -> int:
        """Nominal length in minutes (wall-clock; DST days may differ in elapsed time)."""
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute + (1440 if self.overnight else 0)
        return end - start


class OneOffWindowConfig(_Model):
    """A single window, local wall-clock ``start`` and ``end`` in the calendar's timezone."""

    name: str
    start: dt.datetime
    end: dt.datetime

    _name = field_validator("name")(_check_name)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _local(cls, value: Any) -> dt.datetime:
        return _parse_local_datetime(value)

    @field_serializer("start", "end")
    def _dump_local(self, value: dt.datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M")

    @model_validator(mode="after")
    def _order(self) -> OneOffWindowConfig:
        if self.end <= self.start:
            raise ValueError(
                f"ends ({self.end:%Y-%m-%dT%H:%M}) at or before it starts ({self.start:%Y-%m-%dT%H:%M}): "
                "fix the end"
            )
        return self


class FreezeConfig(_Model):
    """No release from the first local day ``start`` to the last local day ``end``, both included."""

    name: str
    start: dt.date
    end: dt.date
    reason: str = ""

    _name = field_validator("name")(_check_name)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _no_time(cls, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            raise ValueError(f"{value!r} has a time of day: freezes are whole days, write YYYY-MM-DD")
        return value

    @model_validator(mode="after")
    def _order(self) -> FreezeConfig:
        if self.end < self.start:
            raise ValueError(
                f"ends ({self.end}) before it starts ({self.start}): swap the dates "
                "(both days are included; a one-day freeze has start == end)"
            )
        return self


class PublicHolidaysConfig(_Model):
    """Public holidays (``holidays`` package) treated as whole-day freezes; on by default."""

    enabled: bool = True
    country: str = "FR"
    subdivision: str | None = None
    language: str = "fr"

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        # Only the shape is checked here: importing the holidays package costs ~1 s, too much for a DAG
        # file's parse. An unknown code is reported when holidays are first computed (Calendar.check()).
        if not re.match(r"^[A-Z]{2,3}$", value):
            raise ValueError(f"bad country {value!r}: use an ISO 3166 alpha-2 code in capitals, e.g. 'FR'")
        return value


class CalendarConfig(_Model):
    """The whole ``calendar:`` section: timezone, recurring and one-off windows, freezes, holidays."""

    timezone: str
    windows: tuple[RecurringWindowConfig, ...] = ()
    one_off: tuple[OneOffWindowConfig, ...] = ()
    freezes: tuple[FreezeConfig, ...] = ()
    public_holidays: PublicHolidaysConfig = PublicHolidaysConfig()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("windows", "one_off", "freezes", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        # "freezes:" with nothing under it is None in YAML; it means "none", not an error.
        return () if value is None else value

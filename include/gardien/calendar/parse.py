"""Turn the raw ``calendar:`` mapping into a Calendar, or a ConfigurationError naming the entry and the fix."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gardien.calendar.config import WEEKDAYS, CalendarConfig, RecurringWindowConfig
from gardien.calendar.model import Calendar
from gardien.errors import ConfigurationError

_WEEK_MINUTES = 7 * 1440


def parse_calendar(raw: Any, *, source: str) -> Calendar:
    """Validate the ``calendar:`` section ``raw`` (read from ``source``) and return the Calendar.

    Raises ConfigurationError naming the entry and the fix for: a missing or misshapen section, an unknown
    timezone or weekday, a bad time, a window ending at or before its start, overlapping windows, a freeze
    ending before it starts, duplicate names.
    """
    if not isinstance(raw, dict):
        raise ConfigurationError(
            f"{source}: the 'calendar' section is missing or is not a mapping (got {type(raw).__name__}): "
            "add 'calendar:' with at least 'timezone:' and 'windows:'"
        )
    try:
        config = CalendarConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, raw, source)) from None
    problems = [*_duplicate_names(config), *_recurring_overlaps(config), *_one_off_overlaps(config)]
    if problems:
        raise ConfigurationError(_join(source, problems))
    return Calendar(config=config, source=source)


def load_calendar_file(path: str | Path) -> Calendar:
    """Read only the ``calendar:`` section of a Gardien YAML file (cheap: no database, no holidays import).

    Raises ConfigurationError when the file is missing or unreadable, is not YAML, or the section is invalid.
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the configuration file {path}: {exc.strerror}; check the path "
            "(option -c or the GARDIEN_CONFIG variable)"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from exc
    raw = document.get("calendar") if isinstance(document, dict) else None
    return parse_calendar(raw, source=str(path))


def _join(source: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems in the calendar section:\n" + "\n".join(
        f"  - {p}" for p in problems
    )


def _describe(exc: ValidationError, raw: dict[str, Any], source: str) -> str:
    problems = []
    for error in exc.errors():
        where = "calendar"
        node: Any = raw
        for part in error["loc"]:
            if isinstance(part, int):
                where += f"[{part}]"
                node = node[part] if isinstance(node, list | tuple) and part < len(node) else None
                if isinstance(node, dict) and "name" in node:
                    where += f" '{node['name']}'"
            else:
                where += f".{part}"
                node = node.get(part) if isinstance(node, dict) else None
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key: remove it or check its spelling"
        problems.append(f"{where}: {message}")
    return _join(source, problems)


def _duplicate_names(config: CalendarConfig) -> list[str]:
    problems = []
    names = [w.name for w in config.windows] + [w.name for w in config.one_off]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"window name '{name}' is used twice: give each window a unique name")
    freezes = [f.name for f in config.freezes]
    for name in sorted({n for n in freezes if freezes.count(n) > 1}):
        problems.append(f"freeze name '{name}' is used twice: give each freeze a unique name")
    return problems


def _label(entry: RecurringWindowConfig, day: int) -> str:
    return f"'{entry.name}' ({WEEKDAYS[day]} {entry.start:%H:%M}–{entry.end:%H:%M})"


def _recurring_overlaps(config: CalendarConfig) -> list[str]:
    # Compare every weekly occurrence on a cyclic minute grid: wall-clock windows in one timezone overlap
    # in real time exactly when they overlap on the grid.
    spans = []
    for entry in config.windows:
        for day in entry.days:
            index = WEEKDAYS.index(day)
            begin = index * 1440 + entry.start.hour * 60 + entry.start.minute
            spans.append((entry, index, begin, begin + entry.minutes))
    problems = []
    for (a, day_a, a0, a1), (b, day_b, b0, b1) in itertools.combinations(spans, 2):
        if any(a0 < b1 + shift and b0 + shift < a1 for shift in (-_WEEK_MINUTES, 0, _WEEK_MINUTES)):
            problems.append(
                f"windows {_label(a, day_a)} and {_label(b, day_b)} overlap: "
                "make one end at or before the other starts"
            )
    return problems


def _one_off_overlaps(config: CalendarConfig) -> list[str]:
    problems = []
    for a, b in itertools.combinations(config.one_off, 2):
        if a.start < b.end and b.start < a.end:
            problems.append(
                f"one-off windows '{a.name}' and '{b.name}' overlap: make one end at or before the other starts"
            )
    for one_off in config.one_off:
        day = one_off.start.date() - dt.timedelta(days=1)
        while day <= one_off.end.date():
            for entry in config.windows:
                if WEEKDAYS[day.weekday()] not in entry.days:
                    continue
                start = dt.datetime.combine(day, entry.start)
                end = start + dt.timedelta(minutes=entry.minutes)
                if start < one_off.end and one_off.start < end:
                    problems.append(
                        f"one-off window '{one_off.name}' overlaps recurring window '{entry.name}' on "
                        f"{day.isoformat()} {entry.start:%H:%M}–{entry.end:%H:%M}: move it, or drop it since "
                        "that window already allows releases"
                    )
            day += dt.timedelta(days=1)
    return problems

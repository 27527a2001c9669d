"""Release calendar: windows, freezes and public holidays (pure: no Airflow, no database, "now" passed in)."""

from __future__ import annotations

from gardien.calendar.config import CalendarConfig
from gardien.calendar.ics import to_ics
from gardien.calendar.model import SEARCH_HORIZON, Calendar, Freeze, Slot, Window, resolve_local
from gardien.calendar.parse import load_calendar_file, parse_calendar

__all__ = [
    "SEARCH_HORIZON",
    "Calendar",
    "CalendarConfig",
    "Freeze",
    "Slot",
    "Window",
    "load_calendar_file",
    "parse_calendar",
    "resolve_local",
    "to_ics",
]

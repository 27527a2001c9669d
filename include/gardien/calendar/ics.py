"""RFC 5545 export of the release calendar, so release managers can subscribe from their calendar client."""

from __future__ import annotations

import datetime as dt

from gardien.calendar.model import Calendar, Freeze, Slot

_MAX_OCTETS = 75


def to_ics(calendar: Calendar, *, now: dt.datetime, horizon_days: int = 90) -> str:
    """A VCALENDAR of the windows starting in [now, now + horizon_days) and the freezes overlapping it.

    Open windows are CONFIRMED events, cancelled ones CANCELLED events naming what cancels them (clients
    then strike them through rather than silently dropping them); freezes and public holidays are all-day
    events. Times are written in UTC, so no VTIMEZONE is needed. UIDs are stable per window occurrence and
    per freeze; DTSTAMP is ``now``. Lines are folded at 75 octets and end with CRLF.
    """
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    end = now + dt.timedelta(days=horizon_days)
    stamp = _utc(now)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Gardien//Release calendar//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:Gardien release windows",
        f"X-WR-TIMEZONE:{calendar.config.timezone}",
    ]
    for slot in calendar.slots_between(now, end):
        lines.extend(_window_event(slot, stamp))
    for freeze in calendar.freezes_between(now, end):
        lines.extend(_freeze_event(freeze, stamp))
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)


def _window_event(slot: Slot, stamp: str) -> list[str]:
    window = slot.window
    if slot.cancelled:
        reasons = "; ".join(f"{f.name} ({f.reason})" if f.reason else f.name for f in slot.cancelled_by)
        status, description = "CANCELLED", f"Cancelled by: {reasons}"
    else:
        status, description = "CONFIRMED", f"Release window '{window.name}' ({window.kind})"
    return [
        "BEGIN:VEVENT",
        f"UID:{window.uid}",
        f"DTSTAMP:{stamp}",
        f"DTSTART:{_utc(window.start)}",
        f"DTEND:{_utc(window.end)}",
        f"SUMMARY:{escape(f'Release window: {window.name}')}",
        f"DESCRIPTION:{escape(description)}",
        f"STATUS:{status}",
        "CATEGORIES:RELEASE-WINDOW",
        "TRANSP:OPAQUE",
        "END:VEVENT",
    ]


def _freeze_event(freeze: Freeze, stamp: str) -> list[str]:
    if freeze.kind == "public_holiday":
        summary = f"Public holiday, no release: {freeze.name}"
    else:
        summary = f"Release freeze: {freeze.name}"
    lines = [
        "BEGIN:VEVENT",
        f"UID:{freeze.uid}",
        f"DTSTAMP:{stamp}",
        f"DTSTART;VALUE=DATE:{freeze.first_day:%Y%m%d}",
        # DTEND of an all-day event is exclusive: the day after the last frozen day.
        f"DTEND;VALUE=DATE:{freeze.last_day + dt.timedelta(days=1):%Y%m%d}",
        f"SUMMARY:{escape(summary)}",
    ]
    if freeze.reason:
        lines.append(f"DESCRIPTION:{escape(freeze.reason)}")
    lines += ["CATEGORIES:FREEZE", "TRANSP:TRANSPARENT", "END:VEVENT"]
    return lines


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def escape(text: str) -> str:
    """Escape a TEXT value (RFC 5545 §3.3.11): backslash, semicolon, comma, newline."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def fold(line: str) -> str:
    """Fold a content line into chunks of at most 75 octets (RFC 5545 §3.1), never splitting a character."""
    if len(line.encode()) <= _MAX_OCTETS:
        return line
    parts: list[str] = []
    current, size = "", 0
    limit = _MAX_OCTETS
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            parts.append(current)
            # Continuation lines start with one space, which counts towards their 75 octets.
            current, size, limit = "", 0, _MAX_OCTETS - 1
        current += char
        size += width
    parts.append(current)
    return "\r\n ".join(parts)

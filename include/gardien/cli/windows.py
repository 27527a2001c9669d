"""``gardien windows``: the next release windows, the freezes and holidays that cancel some, an .ics export."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gardien.calendar import Calendar, Freeze, Slot, load_calendar_file, resolve_local, to_ics
from gardien.errors import UsageError

DEFAULT_CONFIG = "include/config/gardien.yaml"
ICS_HORIZON_DAYS = 90


def register(app: typer.Typer) -> None:
    """Add the ``windows`` command to the ``gardien`` app."""
    app.command("windows")(windows)


def windows(
    config: Annotated[
        Path, typer.Option("-c", "--config", envvar="GARDIEN_CONFIG", help="Gardien YAML configuration.")
    ] = Path(DEFAULT_CONFIG),
    count: Annotated[
        int, typer.Option("--count", "-n", help="How many open windows to list (at least 1).")
    ] = 5,
    ics: Annotated[
        Path | None,
        typer.Option("--ics", help=f"Also write an iCalendar file ({ICS_HORIZON_DAYS} days ahead)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    now: Annotated[
        str | None,
        typer.Option("--now", help="Pretend it is this ISO time (no offset: the calendar's local time)."),
    ] = None,
) -> None:
    """List the next release windows (local and UTC) and the freezes or public holidays that cancel windows."""
    if count < 1:
        raise UsageError(f"--count {count}: list at least 1 window")
    calendar = load_calendar_file(config)
    at = _parse_now(now, calendar)
    slots = calendar.upcoming(at, count)
    if ics is not None:
        try:
            ics.write_text(
                to_ics(calendar, now=at, horizon_days=ICS_HORIZON_DAYS), encoding="utf-8", newline=""
            )
        except OSError as exc:
            raise UsageError(f"cannot write {ics}: {exc.strerror}; choose a writable path for --ics") from exc
    if as_json:
        typer.echo(json.dumps(_as_json(calendar, at, slots, ics), ensure_ascii=False, indent=2))
        return
    for line in _as_text(calendar, at, slots):
        typer.echo(line)
    if ics is not None:
        typer.echo(f"iCalendar ({ICS_HORIZON_DAYS} days ahead) written to {ics}")


def _parse_now(value: str | None, calendar: Calendar) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)  # the shell reads the clock; the calendar core never does
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise UsageError(
            f"--now {value!r} is not an ISO date-time: use e.g. 2026-12-01T20:30 or ...Z"
        ) from exc
    if parsed.tzinfo is None:
        return resolve_local(parsed, calendar.tz)
    return parsed.astimezone(dt.UTC)


def _cancelled_by(freezes: tuple[Freeze, ...]) -> list[Freeze]:
    unique: dict[str, Freeze] = {}
    for freeze in freezes:
        unique.setdefault(freeze.uid, freeze)
    return list(unique.values())


def _freeze_text(freeze: Freeze) -> str:
    kind = "public holiday" if freeze.kind == "public_holiday" else "freeze"
    days = (
        str(freeze.first_day)
        if freeze.first_day == freeze.last_day
        else f"{freeze.first_day} → {freeze.last_day}"
    )
    reason = f" ({freeze.reason})" if freeze.reason and freeze.kind == "freeze" else ""
    return f"{kind} {freeze.name}, {days}{reason}"


def _as_text(calendar: Calendar, at: dt.datetime, slots: tuple[Slot, ...]) -> list[str]:
    tz = calendar.tz
    lines = [
        f"Release windows from {calendar.source}, timezone {tz.key}, now {at.astimezone(tz):%a %Y-%m-%d %H:%M}"
    ]
    if not slots:
        lines.append("  no window ahead: add windows under 'calendar:' in the configuration")
    for slot in slots:
        window = slot.window
        start, end = window.start.astimezone(tz), window.end.astimezone(tz)
        if slot.cancelled:
            state = "CANCELLED"
        elif window.start <= at:
            state = "OPEN NOW"
        else:
            state = "open"
        lines.append(
            f"  {state:<9}  {start:%a %Y-%m-%d %H:%M}–{end:%H:%M} {tz.key}"
            f"  ({window.start:%Y-%m-%d %H:%M}Z–{window.end:%H:%M}Z)  {window.name}"
        )
        for freeze in slot.cancelled_by:
            lines.append(f"             cancelled by {_freeze_text(freeze)}")
    freezes = _cancelled_by(tuple(f for slot in slots for f in slot.cancelled_by))
    if freezes:
        lines.append("Freezes and public holidays cancelling windows:")
        lines.extend(f"  {_freeze_text(freeze)}" for freeze in freezes)
    return lines


def _as_json(
    calendar: Calendar, at: dt.datetime, slots: tuple[Slot, ...], ics: Path | None
) -> dict[str, Any]:
    tz = calendar.tz

    def freeze(f: Freeze) -> dict[str, Any]:
        return {
            "name": f.name,
            "kind": f.kind,
            "first_day": f.first_day.isoformat(),
            "last_day": f.last_day.isoformat(),
            "reason": f.reason,
        }

    return {
        "source": calendar.source,
        "timezone": tz.key,
        "now": at.isoformat(),
        "windows": [
            {
                "name": s.window.name,
                "kind": s.window.kind,
                "uid": s.window.uid,
                "start": s.window.start.isoformat(),
                "end": s.window.end.isoformat(),
                "local_start": s.window.start.astimezone(tz).isoformat(),
                "local_end": s.window.end.astimezone(tz).isoformat(),
                "cancelled": s.cancelled,
                "cancelled_by": [f.uid for f in s.cancelled_by],
            }
            for s in slots
        ],
        "freezes": [
            freeze(f) | {"uid": f.uid} for f in _cancelled_by(tuple(f for s in slots for f in s.cancelled_by))
        ],
        "ics": str(ics) if ics is not None else None,
    }

"""Scratch databases for rehearsals: names, the creation-time marker, and cleanup of leftovers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg2 import sql

from gardien import pg

PREFIX = "gardien_scratch_"
_MARKER_RE = re.compile(r"^gardien-scratch created_at=(\S+)")
_LABEL_RE = re.compile(r"[^a-z0-9]+")


def scratch_name(label: str, suffix: str) -> str:
    """``gardien_scratch_<label>_<suffix>``: label folded to ``[a-z0-9_]`` and cut so the name fits 63 bytes."""
    clean_suffix = _LABEL_RE.sub("", suffix.lower())
    if not clean_suffix:
        raise ValueError(f"scratch suffix {suffix!r} has no letter or digit")
    clean = _LABEL_RE.sub("_", label.lower()).strip("_") or "run"
    room = 63 - len(PREFIX) - 1 - len(clean_suffix)
    return f"{PREFIX}{clean[:room].rstrip('_')}_{clean_suffix}"


def marker(created_at: datetime) -> str:
    """The database comment that records when a scratch database was created."""
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return f"gardien-scratch created_at={created_at.isoformat()}"


def parse_marker(comment: str | None) -> datetime | None:
    """The creation time in a scratch marker, or None when the comment is not one (or is damaged)."""
    match = _MARKER_RE.match(comment or "")
    if not match:
        return None
    try:
        created = datetime.fromisoformat(match.group(1))
    except ValueError:
        return None
    return created if created.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class ScratchDatabase:
    """A scratch database created on the admin DSN's server, marked with its creation time."""

    name: str
    created_at: datetime


def create_scratch(admin_dsn: str, *, name: str, now: datetime) -> ScratchDatabase:
    """Create and mark ``name`` (CREATE DATABASE cannot share a transaction with COMMENT: two statements)."""
    pg.create_database(admin_dsn, name)
    with pg.autocommit(admin_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(marker(now)))
        )
    return ScratchDatabase(name=name, created_at=now)


def list_scratch(admin_dsn: str) -> list[tuple[str, datetime | None]]:
    """Every database named like a scratch database, with its marked creation time (None if unmarked)."""
    with pg.autocommit(admin_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname LIKE %s ORDER BY datname",
            (PREFIX.replace("_", r"\_") + "%",),
        )
        return [(name, parse_marker(comment)) for name, comment in cur.fetchall()]


def cleanup_stale_scratch(admin_dsn: str, *, older_than: timedelta, now: datetime) -> tuple[str, ...]:
    """Drop scratch databases whose marker is older than ``older_than`` at ``now``; return their names.

    Unmarked databases with the prefix are left alone: without a creation time, one could belong to a
    rehearsal starting right now (its marker is written just after CREATE DATABASE).
    """
    dropped = []
    for name, created_at in list_scratch(admin_dsn):
        if created_at is not None and now - created_at >= older_than:
            pg.drop_database(admin_dsn, name)
            dropped.append(name)
    return tuple(dropped)

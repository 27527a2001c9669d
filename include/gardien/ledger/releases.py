"""Releases and content-addressed changesets in the ledger; every change also appends its event."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

import psycopg2.extensions
from psycopg2 import sql

from gardien.errors import ChangesetError, LedgerError
from gardien.ledger.chain import AirflowIds, canonical_timestamp, check_hash, check_text, sha256_hex
from gardien.ledger.store import append_event, check_actor_and_time, database_errors, lock_ledger
from gardien.redact import redact_text

# Release statuses the pipeline moves through; the database only checks the spelling, so adding one
# here is the whole change. The stored status mirrors the last ``release.status_changed`` event.
RELEASE_STATUSES = (
    "requested",
    "empty",
    "validated",
    "validation_failed",
    "approved",
    "rejected",
    "deploying",
    "deployed",
    "failed",
    "rolled_back",
    "closed",
    "missed_window",
)
_RELEASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_RELEASE_COLUMNS = sql.SQL(
    "id, path, requested_by, reason, window_start, window_end, status, changeset_id, created_at, recorded_at"
)


@dataclass(frozen=True, slots=True)
class Release:
    """A release request as the ledger holds it; ``changeset_id`` is the changeset currently attached."""

    id: str
    path: tuple[str, ...]
    requested_by: str
    reason: str
    window_start: datetime | None
    window_end: datetime | None
    status: str
    changeset_id: str | None
    created_at: datetime
    recorded_at: datetime | None = None


def next_release_id(conn: psycopg2.extensions.connection, *, day: date) -> str:
    """The next free id of the form ``R-YYYY-MM-DD-NNN`` for ``day`` (a suggestion; the PK decides)."""
    prefix = f"R-{day.isoformat()}-"
    with database_errors("number a release"), conn.cursor() as cur:
        cur.execute(
            "SELECT max(substr(id, %s)::int) FROM ledger.releases WHERE id ~ %s",
            (len(prefix) + 1, f"^{re.escape(prefix)}[0-9]{{3,}}$"),
        )
        last = cur.fetchone()[0] or 0
    return f"{prefix}{last + 1:03d}"


def create_release(
    conn: psycopg2.extensions.connection,
    *,
    release_id: str,
    path: Sequence[str],
    requested_by: str,
    reason: str,
    at: datetime,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    actor: str | None = None,
    airflow: AirflowIds | None = None,
) -> Release:
    """Record a new release (status ``requested``) and its ``release.created`` event.

    ``actor`` defaults to ``requested_by`` (who filed it). Raises LedgerError if the id is taken or
    malformed, the path is empty, or the window ends before it starts.
    """
    if not isinstance(release_id, str) or not _RELEASE_ID_RE.match(release_id):
        raise LedgerError(
            f"release id {release_id!r} is not allowed: use letters, digits and . _ : - (at most 64), "
            "e.g. R-2026-11-28-001 from next_release_id()."
        )
    stages = tuple(path)
    if not stages or not all(isinstance(s, str) and s for s in stages):
        raise LedgerError(f"release {release_id}: path {list(stages)!r} must name at least one environment.")
    if not requested_by or not reason:
        raise LedgerError(f"release {release_id}: requested_by and reason are both required (who and why).")
    reason = redact_text(reason)
    for name, value in (("requested_by", requested_by), ("reason", reason)):
        check_text(name, value)
    check_actor_and_time(actor or requested_by, at)
    if window_start is not None and window_end is not None and window_end <= window_start:
        raise LedgerError(
            f"release {release_id}: window ends ({window_end.isoformat()}) before it starts "
            f"({window_start.isoformat()})."
        )
    with database_errors(f"create release {release_id}"), conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "INSERT INTO ledger.releases (id, path, requested_by, reason, window_start, window_end, status, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s, 'requested', %s) "
                "ON CONFLICT (id) DO NOTHING RETURNING {}"
            ).format(_RELEASE_COLUMNS),
            (release_id, list(stages), requested_by, reason, window_start, window_end, at),
        )
        row = cur.fetchone()
    if row is None:
        raise LedgerError(f"release {release_id} already exists in the ledger: choose another id.")
    release = _release_from_row(row)
    append_event(
        conn,
        kind="release.created",
        actor=actor or requested_by,
        at=at,
        release_id=release_id,
        payload={
            "path": list(stages),
            "requested_by": requested_by,
            "window_start": canonical_timestamp(window_start) if window_start else None,
            "window_end": canonical_timestamp(window_end) if window_end else None,
        },
        reason=reason,
        airflow=airflow,
    )
    return release


def get_release(
    conn: psycopg2.extensions.connection, release_id: str, *, for_update: bool = False
) -> Release:
    """The release ``release_id``; raises LedgerError naming it if the ledger does not know it.

    ``for_update``: first take the ledger's append lock (``lock_ledger``), so the status read cannot be
    overtaken by another writer before this transaction appends its event.
    """
    if for_update:
        lock_ledger(conn)
    query = sql.SQL("SELECT {} FROM ledger.releases WHERE id = %s").format(_RELEASE_COLUMNS)
    with database_errors(f"read release {release_id}"), conn.cursor() as cur:
        cur.execute(query, (release_id,))
        row = cur.fetchone()
    if row is None:
        raise LedgerError(
            f"unknown release {release_id!r}: no such release in the ledger. Check the id "
            "(`gardien audit log`) or create the release first."
        )
    return _release_from_row(row)


def set_release_status(
    conn: psycopg2.extensions.connection,
    *,
    release_id: str,
    status: str,
    actor: str,
    at: datetime,
    reason: str | None = None,
    airflow: AirflowIds | None = None,
) -> Release:
    """Move a release to ``status`` and append ``release.status_changed`` (from, to)."""
    if status not in RELEASE_STATUSES:
        raise LedgerError(f"release status {status!r} is unknown: use one of {', '.join(RELEASE_STATUSES)}.")
    check_actor_and_time(actor, at)
    current = get_release(conn, release_id, for_update=True)
    # The event is the change: the ledger's trigger moves ledger.releases.status to the event's "to".
    append_event(
        conn,
        kind="release.status_changed",
        actor=actor,
        at=at,
        release_id=release_id,
        payload={"from": current.status, "to": status},
        reason=reason,
        airflow=airflow,
    )
    return replace(current, status=status)


def put_changeset(conn: psycopg2.extensions.connection, *, changeset_id: str, body: str) -> bool:
    """Store a changeset under its content address; True if new, False if it was already there.

    ``changeset_id`` must be the SHA-256 (hex) of ``body``'s UTF-8 bytes; a mismatch raises
    ChangesetError and nothing is stored. The body is kept byte for byte (text, not jsonb).
    """
    check_hash("changeset id", changeset_id)
    check_text("changeset body", body)
    actual = sha256_hex(body)
    if actual != changeset_id:
        raise ChangesetError(
            f"changeset body does not match its id: id {changeset_id}, SHA-256 of the body {actual}. "
            "The changeset was altered or the wrong id was passed; re-export it."
        )
    try:
        json.loads(body)
    except ValueError as exc:
        raise ChangesetError(
            f"changeset {changeset_id} is not JSON ({exc}): store the canonical JSON."
        ) from exc
    with database_errors(f"store changeset {changeset_id}"), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger.changesets (id, body) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING RETURNING id",
            (changeset_id, body),
        )
        return cur.fetchone() is not None


def get_changeset(conn: psycopg2.extensions.connection, changeset_id: str) -> str:
    """The changeset's exact JSON text, after checking it still hashes to its id (LedgerError if not)."""
    with database_errors(f"read changeset {changeset_id}"), conn.cursor() as cur:
        cur.execute("SELECT body FROM ledger.changesets WHERE id = %s", (changeset_id,))
        row = cur.fetchone()
    if row is None:
        raise LedgerError(f"unknown changeset {changeset_id}: it was never stored in the ledger.")
    body = row[0]
    if sha256_hex(body) != changeset_id:
        raise LedgerError(
            f"changeset {changeset_id} in the ledger no longer matches its hash (SHA-256 {sha256_hex(body)}): "
            "it was altered by hand. Run `gardien audit verify` and restore it from a trusted copy."
        )
    return body


def attach_changeset(
    conn: psycopg2.extensions.connection,
    *,
    release_id: str,
    changeset_id: str,
    actor: str,
    at: datetime,
    reason: str | None = None,
    airflow: AirflowIds | None = None,
) -> Release:
    """Make ``changeset_id`` (already stored) the release's current changeset; approvals bind to it."""
    check_actor_and_time(actor, at)
    current = get_release(conn, release_id, for_update=True)
    get_changeset(conn, changeset_id)
    # The event is the change: the ledger's trigger sets ledger.releases.changeset_id to its subject.
    append_event(
        conn,
        kind="changeset.attached",
        actor=actor,
        at=at,
        release_id=release_id,
        subject=changeset_id,
        payload={"replaces": current.changeset_id},
        reason=reason,
        airflow=airflow,
    )
    return replace(current, changeset_id=changeset_id)


def _release_from_row(row: tuple) -> Release:
    rid, path, requested_by, reason, ws, we, status, changeset_id, created_at, recorded_at = row
    return Release(
        id=rid,
        path=tuple(path),
        requested_by=requested_by,
        reason=reason,
        window_start=ws,
        window_end=we,
        status=status,
        changeset_id=changeset_id,
        created_at=created_at,
        recorded_at=recorded_at,
    )

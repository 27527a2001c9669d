"""The ledger's event log in PostgreSQL: schema creation, serialised appends, reading, chain verification."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from gardien.errors import LedgerError
from gardien.ledger.chain import (
    GENESIS_HASH,
    AirflowIds,
    Event,
    canonical_payload,
    canonical_timestamp,
    check_kind,
    check_text,
    event_hash,
)
from gardien.ledger.verify import Anchor, ChainReport, StoredEvent, verify_events
from gardien.redact import redact, redact_text

WRITER_ROLE = "gardien_ledger_writer"
# Ledger-wide advisory lock key (first 8 bytes of SHA-256 of "gardien.ledger.append"); repeated in
# schema.sql's insert trigger: keep them equal.
APPEND_LOCK_KEY = 2423469849036782355

_EVENT_COLUMNS = sql.SQL(
    "seq, at, kind, actor, release_id, subject, payload_text, reason, dag_id, run_id, task_id, "
    "prev_hash, hash, recorded_at, canonical"
)


def ensure_schema(conn: psycopg2.extensions.connection) -> None:
    """Create or migrate the ledger schema (the owner's ``gardien ledger migrate``; the caller commits).

    Kept for the owner's tools and tests; release steps call ``require_schema`` instead (no DDL as the writer).
    """
    from gardien.ledger.migrate import migrate

    migrate(conn)


def append_event(
    conn: psycopg2.extensions.connection,
    *,
    kind: str,
    actor: str,
    at: datetime,
    release_id: str | None = None,
    subject: str | None = None,
    payload: Mapping[str, Any] | None = None,
    reason: str | None = None,
    airflow: AirflowIds | None = None,
) -> Event:
    """Append one event at the head of the chain and return it (the caller commits).

    Appends take a ledger-wide transaction lock, so concurrent writers queue instead of forking the chain;
    keep ledger transactions short. Raises LedgerError for input PostgreSQL could not store verbatim or
    when the database refuses the insert.
    """
    airflow = airflow or AirflowIds()
    # Append-only means for ever: no password may enter the chain, whatever message carried it here.
    payload = redact(payload) if isinstance(payload, Mapping) else payload
    reason = redact_text(reason) if reason else reason
    check_kind(kind)
    check_actor_and_time(actor, at)
    for name, value in (
        ("release_id", release_id),
        ("subject", subject),
        ("reason", reason),
        ("dag_id", airflow.dag_id),
        ("run_id", airflow.run_id),
        ("task_id", airflow.task_id),
    ):
        check_text(name, value)
    payload_text = canonical_payload(payload)
    with database_errors("append an event"), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
        # Read after the lock: in READ COMMITTED this statement sees the previous holder's commit.
        cur.execute("SELECT hash FROM ledger.events ORDER BY seq DESC LIMIT 1")
        row = cur.fetchone()
        prev_hash = row[0] if row else GENESIS_HASH
        cur.execute("SELECT nextval(pg_get_serial_sequence('ledger.events', 'seq'))")
        seq = cur.fetchone()[0]
        draft = Event(
            seq=seq,
            at=at,
            kind=kind,
            actor=actor,
            release_id=release_id,
            subject=subject,
            payload_text=payload_text,
            reason=reason,
            airflow=airflow,
            prev_hash=prev_hash,
            hash="",
        )
        digest = event_hash(draft)
        cur.execute(
            "INSERT INTO ledger.events (seq, at, kind, actor, release_id, subject, payload_text, reason, "
            "dag_id, run_id, task_id, prev_hash, hash, canonical) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING recorded_at",
            (
                seq,
                at,
                kind,
                actor,
                release_id,
                subject,
                payload_text,
                reason,
                airflow.dag_id,
                airflow.run_id,
                airflow.task_id,
                prev_hash,
                digest,
                draft.canonical(),
            ),
        )
        recorded_at = cur.fetchone()[0]
    return replace(draft, hash=digest, recorded_at=recorded_at)


def lock_ledger(conn: psycopg2.extensions.connection) -> None:
    """Take the ledger-wide append lock now (held to commit), before a read-then-append.

    Stands in for ``SELECT ... FOR UPDATE``, which needs an UPDATE privilege the writer role does not have:
    a status read under this lock cannot be overtaken by another writer's event before ours is appended.
    """
    with database_errors("lock the ledger"), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))


def check_actor_and_time(actor: str, at: datetime) -> None:
    """Refuse, before anything is written, an event without an identity or with a naive time."""
    if not actor or not isinstance(actor, str):
        raise LedgerError("an event needs an actor: pass the authenticated identity of who acted.")
    check_text("actor", actor)
    canonical_timestamp(at)


def list_events(
    conn: psycopg2.extensions.connection, *, release_id: str | None = None, limit: int | None = None
) -> tuple[Event, ...]:
    """Events in seq order, optionally of one release only, optionally the last ``limit`` of them."""
    where = sql.SQL("WHERE release_id = %s" if release_id is not None else "")
    params: tuple[Any, ...] = (release_id,) if release_id is not None else ()
    query = sql.SQL("SELECT {} FROM ledger.events {} ORDER BY seq").format(_EVENT_COLUMNS, where)
    if limit is not None:
        query = sql.SQL("SELECT * FROM ({} DESC LIMIT %s) AS tail ORDER BY seq").format(query)
        params = (*params, limit)
    with database_errors("read the event log"), conn.cursor() as cur:
        cur.execute(query, params)
        return tuple(_row_to_stored(row).event for row in cur.fetchall())


def find_event(
    conn: psycopg2.extensions.connection, *, kind: str, payload_field: str, value: str
) -> Event | None:
    """The newest event of ``kind`` whose payload has ``payload_field`` equal to ``value`` (text), if any."""
    query = sql.SQL(
        "SELECT {} FROM ledger.events WHERE kind = %s AND payload ->> %s = %s ORDER BY seq DESC LIMIT 1"
    )
    with database_errors(f"read a {kind} event"), conn.cursor() as cur:
        cur.execute(query.format(_EVENT_COLUMNS), (kind, payload_field, value))
        row = cur.fetchone()
    return _row_to_stored(row).event if row else None


def verify_chain(
    conn: psycopg2.extensions.connection, *, anchor: Anchor | None = None, batch_size: int = 2000
) -> ChainReport:
    """Recompute every link of the chain, streaming rows in seq order; name the first broken one.

    ``anchor``: a (seq, hash) published earlier that must still hold (see chain.verify_events).
    Uses a server-side cursor, so the caller must be in a transaction (psycopg2's default).
    """
    with database_errors("verify the event log"):
        with conn.cursor(name="gardien_ledger_verify") as cur:
            cur.itersize = batch_size
            cur.execute(sql.SQL("SELECT {} FROM ledger.events ORDER BY seq").format(_EVENT_COLUMNS))
            return verify_events((_row_to_stored(row) for row in cur), anchor=anchor)


def _row_to_stored(row: tuple[Any, ...]) -> StoredEvent:
    (seq, at, kind, actor, release_id, subject, payload_text, reason, dag_id, run_id, task_id) = row[:11]
    prev_hash, digest, recorded_at, canonical = row[11:]
    event = Event(
        seq=seq,
        at=at,
        kind=kind,
        actor=actor,
        release_id=release_id,
        subject=subject,
        payload_text=payload_text,
        reason=reason,
        airflow=AirflowIds(dag_id=dag_id, run_id=run_id, task_id=task_id),
        prev_hash=prev_hash,
        hash=digest,
        recorded_at=recorded_at,
    )
    return StoredEvent(event=event, stored_canonical=canonical)


@contextmanager
def database_errors(action: str) -> Iterator[None]:
    """Turn database refusals into LedgerError naming what failed and what to do."""
    try:
        yield
    except psycopg2.errors.UndefinedTable as exc:
        raise LedgerError(
            f"cannot {action}: the ledger schema is missing ({_first_line(exc)}). Run `gardien ledger migrate` "
            "as the ledger's owner."
        ) from exc
    except psycopg2.errors.InsufficientPrivilege as exc:
        raise LedgerError(
            f"cannot {action}: {_first_line(exc)}. Connect as a role that is a member of {WRITER_ROLE}."
        ) from exc
    except psycopg2.errors.UniqueViolation as exc:
        if exc.diag.constraint_name not in ("events_no_fork", "events_pkey", "events_hash_key"):
            raise LedgerError(f"cannot {action}: already recorded ({_first_line(exc)}).") from exc
        raise LedgerError(
            f"cannot {action}: another writer extended the chain concurrently ({_first_line(exc)}). "
            "Ledger writes need READ COMMITTED isolation; retry the transaction."
        ) from exc
    except psycopg2.Error as exc:
        raise LedgerError(f"cannot {action}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__

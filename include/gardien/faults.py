"""What a database failure means for an apply or a rollback, said plainly: the cause, and whether anything
was committed.

Until COMMIT is sent, a failure of any kind (timeout, refusal, connection lost, session ended by the
server) leaves the target exactly as it was: PostgreSQL rolls back the transaction of a session that
errors or dies, with its locks. A connection lost *during* COMMIT is in doubt: the server may have
committed before the connection went. ``settle`` then reconnects and reads the target's own journal,
which the same transaction wrote, to say "committed" or "not committed".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors

from gardien import pg
from gardien.errors import GardienError

E = TypeVar("E", bound=GardienError)
R = TypeVar("R")


def cause(exc: BaseException) -> str:
    """The server's (or the driver's) own words, first line: what really happened."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connection_lost(conn: Any, exc: BaseException) -> bool:
    """Whether ``exc`` ended the session itself (terminated, server gone, network cut, idle timeout)."""
    return bool(getattr(conn, "closed", 0)) or isinstance(
        exc,
        psycopg2.InterfaceError
        | psycopg2.errors.AdminShutdown
        | psycopg2.errors.IdleInTransactionSessionTimeout
        | psycopg2.errors.CrashShutdown,
    )


@contextmanager
def translated(conn: Any, *, target: str, what: str, error: type[E], unchanged: str) -> Iterator[None]:
    """Turn a database failure before COMMIT into ``error`` naming the cause; ``unchanged`` says what the
    target still is (e.g. "nothing was applied")."""
    try:
        yield
    except GardienError:
        raise
    except psycopg2.errors.LockNotAvailable as exc:
        raise error(
            f"{what} on {target}: a lock could not be obtained in time ({cause(exc)}): another session holds "
            f"rows or a table this {what} must change. The transaction was rolled back; {unchanged}. Retry when "
            "that session has finished (pg_stat_activity names it), or raise the lock timeout."
        ) from None
    except psycopg2.errors.QueryCanceled as exc:
        raise error(
            f"{what} on {target}: a statement was cancelled ({cause(exc)}). The transaction was rolled back; "
            f"{unchanged}. Raise the statement timeout or retry at a quieter time."
        ) from None
    except psycopg2.Error as exc:
        if connection_lost(conn, exc):
            raise error(
                f"{what} on {target}: the connection to the target was lost before COMMIT ({cause(exc)}); "
                f"PostgreSQL rolled the transaction back and released its locks: {unchanged}. Retry when the "
                "target is reachable."
            ) from None
        raise error(
            f"{what} on {target}: the target refused it ({cause(exc)}); the transaction was rolled back, "
            f"{unchanged}."
        ) from None


def discard(conn: Any) -> None:
    """Roll back and close ``conn`` whatever state it is in (a dead connection raises on rollback)."""
    if not getattr(conn, "closed", 1):
        try:
            conn.rollback()
        except psycopg2.Error:
            pass
    try:
        conn.close()
    except psycopg2.Error:
        pass


def commit(
    conn: Any,
    *,
    dsn: str,
    target: str,
    what: str,
    error: type[E],
    committed: Callable[[Any], bool],
    unchanged: str,
) -> str | None:
    """COMMIT; if the connection is lost meanwhile, reconnect and ask ``committed(cursor)`` (the journal).

    Returns when committed: None, or the note to show when it was checked after the connection was lost. Raises ``error`` saying "not committed" (the server refused
    the commit, or the journal shows it did not happen) or, when the target cannot be reached to check,
    that the outcome is in doubt and how to settle it.
    """
    try:
        conn.commit()
        return None
    except psycopg2.Error as exc:
        lost, why = connection_lost(conn, exc), cause(exc)
    if not lost:  # the server answered: the commit failed and the transaction is rolled back
        raise error(f"{what} on {target}: COMMIT failed ({why}); not committed, {unchanged}.")
    try:
        check = pg.connect(dsn, application_name="gardien (commit check)")
    except GardienError as exc:
        raise error(
            f"{what} on {target}: the connection was lost during COMMIT ({why}) and the target cannot be reached "
            f"to check ({exc}). The outcome is IN DOUBT: run the same command again once the target is "
            "reachable; it reports whether this one was committed and never applies twice."
        ) from None
    try:
        with check.cursor() as cur:
            done = committed(cur)
    except psycopg2.Error as exc:
        raise error(
            f"{what} on {target}: the connection was lost during COMMIT ({why}) and checking the journal failed "
            f"({cause(exc)}). The outcome is IN DOUBT: run the same command again; it reports whether this one "
            "was committed and never applies twice."
        ) from None
    finally:
        discard(check)
    if not done:
        raise error(
            f"{what} on {target}: the connection was lost during COMMIT ({why}); checked after reconnecting: "
            f"not committed, {unchanged}. Retry when the target is reachable."
        )
    return (
        f"the connection was lost during COMMIT ({why}); checked after reconnecting: the target's journal "
        "shows it committed"
    )


def run(
    dsn: str,
    *,
    application: str,
    target: str,
    what: str,
    error: type[E],
    unchanged: str,
    work: Callable[[Any], R],
    changed: Callable[[R], bool],
    committed: Callable[[Any, R], bool],
) -> R:
    """Connect, ``work(conn)`` in one transaction, COMMIT, close — every failure said plainly.

    A result that ``changed`` nothing is committed as is (e.g. the journal's schema just created); one that
    did is committed through ``commit`` (a lost answer is settled by ``committed(cursor, result)``) and,
    when that had to be checked, returned with its ``note`` set.
    """
    conn = pg.connect(dsn, application_name=application)
    try:
        with translated(conn, target=target, what=what, error=error, unchanged=unchanged):
            result = work(conn)
            if not changed(result):
                conn.commit()
                return result
        note = commit(
            conn,
            dsn=dsn,
            target=target,
            what=what,
            error=error,
            committed=lambda cur: committed(cur, result),
            unchanged=unchanged,
        )
        return result if note is None else dataclasses.replace(result, note=note)
    finally:
        discard(conn)

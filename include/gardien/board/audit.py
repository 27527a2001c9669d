"""The audit status the board shows: the whole hash chain verified at most once a minute, shared by pages."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

import psycopg2.extensions

from gardien import ledger

MAX_AGE = dt.timedelta(seconds=60)
log = logging.getLogger(__name__)
Connect = Callable[[], psycopg2.extensions.connection]


class ChainCache:
    """``verify_chain`` over the whole ledger, shared by every page and shown with the time it ran.

    Verifying recomputes every event's hash (~0.3 s for 7,000 events on a loaded 2-core machine): done per
    page view it would be most of the page's time. The first view verifies in the request; later views use
    the last verification, and once it is older than ``max_age`` one view starts a fresh verification in a
    background thread (on its own connection) while it still shows the previous one with its time. The
    status a page shows is therefore never presented as newer than it is, and a break is shown at the latest
    about ``max_age`` (plus one verification) after it happened. Safe across FastAPI's worker threads.
    """

    def __init__(self, max_age: dt.timedelta = MAX_AGE) -> None:
        self._max_age = max_age
        self._lock = threading.Lock()
        self._value: tuple[ledger.ChainReport, dt.datetime] | None = None
        self._refresh: threading.Thread | None = None

    def get(
        self, conn: psycopg2.extensions.connection, *, now: dt.datetime, connect: Connect
    ) -> tuple[ledger.ChainReport, dt.datetime]:
        """The latest verification and when it ran (verified now, in ``conn``, when there is none yet)."""
        with self._lock:
            value = self._value
            stale = value is None or not dt.timedelta(0) <= now - value[1] < self._max_age
            if value is not None and stale and (self._refresh is None or not self._refresh.is_alive()):
                self._refresh = threading.Thread(
                    target=self._verify_in_background, args=(connect, now), name="gardien-chain", daemon=True
                )
                self._refresh.start()
        if value is not None:
            return value
        fresh = (ledger.verify_chain(conn), now)
        with self._lock:
            self._value = fresh
        return fresh

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background verification in progress (tests, orderly shutdown)."""
        thread = self._refresh
        if thread is not None:
            thread.join(timeout)

    def _verify_in_background(self, connect: Connect, now: dt.datetime) -> None:
        try:
            conn = connect()
            try:
                report = ledger.verify_chain(conn)
            finally:
                conn.rollback()
                conn.close()
        except Exception:  # a failed refresh keeps the last result (with its time) and is tried again later
            log.exception("gardien board: verifying the ledger's hash chain failed")
            return
        with self._lock:
            self._value = (report, now)

"""The audit status the board shows: the whole hash chain verified at most once a minute, shared by pages."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg2.extensions

from gardien import ledger

MAX_AGE = dt.timedelta(seconds=60)


class ChainCache:
    """``verify_chain`` over the whole ledger, reused for ``max_age`` (pages say when it was verified).

    Verifying recomputes every event's hash (~0.3 s for 10,000 events): once per page view it would be the
    page's main cost. A minute-old verification, shown with its time, is what an auditor can rely on; a
    break is shown at the latest one ``max_age`` after it happened. Safe across FastAPI's worker threads.
    """

    def __init__(self, max_age: dt.timedelta = MAX_AGE) -> None:
        self._max_age = max_age
        self._lock = threading.Lock()
        self._value: tuple[ledger.ChainReport, dt.datetime] | None = None

    def get(
        self, conn: psycopg2.extensions.connection, *, now: dt.datetime
    ) -> tuple[ledger.ChainReport, dt.datetime]:
        """The cached verification and when it ran, or a fresh one when none is younger than ``max_age``."""
        with self._lock:
            value = self._value
        if value is not None and dt.timedelta(0) <= now - value[1] < self._max_age:
            return value
        fresh = (ledger.verify_chain(conn), now)
        with self._lock:
            self._value = fresh
        return fresh

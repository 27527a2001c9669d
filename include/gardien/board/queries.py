"""The board's reads from the ledger, each one query in the caller's transaction (reads only, never commits)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg2.extensions

from gardien.ledger.store import database_errors


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    """One line of the releases list: the ledger's release with its Airflow run and its latest step."""

    id: str
    path: tuple[str, ...]
    requested_by: str
    window_start: datetime | None
    window_end: datetime | None
    status: str
    changeset_id: str | None
    created_at: datetime
    dag_id: str | None
    run_id: str | None
    last_kind: str | None
    last_task: str | None
    last_at: datetime | None
    outcome: str | None

    @property
    def changeset_short(self) -> str:
        return (self.changeset_id or "")[:12]

    @property
    def current_step(self) -> str:
        if self.last_kind is None:
            return "—"
        return f"{self.last_task} · {self.last_kind}" if self.last_task else self.last_kind


# The release DAG's run is the first event recorded with a gardien_release_* DAG id (a later rollback run
# of gardien_rollback records events under the same release id).
_LIST = """
SELECT r.id, r.path, r.requested_by, r.window_start, r.window_end, r.status, r.changeset_id, r.created_at,
       run.dag_id, run.run_id, last.kind, last.task_id, last.at, closed.outcome
FROM ledger.releases r
LEFT JOIN LATERAL (
    SELECT e.dag_id, e.run_id FROM ledger.events e
    WHERE e.release_id = r.id AND e.run_id IS NOT NULL AND e.dag_id LIKE 'gardien\\_release\\_%%'
    ORDER BY e.seq LIMIT 1) run ON true
LEFT JOIN LATERAL (
    SELECT e.kind, e.task_id, e.at FROM ledger.events e WHERE e.release_id = r.id
    ORDER BY e.seq DESC LIMIT 1) last ON true
LEFT JOIN LATERAL (
    SELECT e.payload ->> 'outcome' AS outcome FROM ledger.events e
    WHERE e.release_id = r.id AND e.kind = 'release.closed'
    ORDER BY e.seq DESC LIMIT 1) closed ON true
WHERE (%(status)s::text IS NULL OR r.status = %(status)s)
  AND (%(environment)s::text IS NULL OR %(environment)s = ANY (r.path))
  AND (%(release)s::text IS NULL OR r.id = %(release)s)
  AND (%(start)s::timestamptz IS NULL OR coalesce(r.window_start, r.created_at) >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR coalesce(r.window_start, r.created_at) < %(end)s)
ORDER BY r.created_at DESC, r.id DESC
LIMIT %(limit)s OFFSET %(offset)s
"""


def list_releases(
    conn: psycopg2.extensions.connection,
    *,
    status: str | None = None,
    environment: str | None = None,
    release_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> tuple[ReleaseRow, ...]:
    """Releases newest first, optionally filtered by status, an environment on their path, and the start of
    their window (their creation when they have none) in [start, end)."""
    with database_errors("list releases"), conn.cursor() as cur:
        # The laterals' cost estimate crosses PostgreSQL's JIT threshold, and compiling costs ~1 s for a
        # query that runs in milliseconds (measured with 500 releases, bench/board.py): off for this query.
        cur.execute("SET LOCAL jit = off")
        cur.execute(
            _LIST,
            {
                "status": status,
                "environment": environment,
                "release": release_id,
                "start": start,
                "end": end,
                "limit": limit,
                "offset": offset,
            },
        )
        rows = cur.fetchall()
    return tuple(
        ReleaseRow(
            id=r[0],
            path=tuple(r[1]),
            requested_by=r[2],
            window_start=r[3],
            window_end=r[4],
            status=r[5],
            changeset_id=r[6],
            created_at=r[7],
            dag_id=r[8],
            run_id=r[9],
            last_kind=r[10],
            last_task=r[11],
            last_at=r[12],
            outcome=r[13],
        )
        for r in rows
    )

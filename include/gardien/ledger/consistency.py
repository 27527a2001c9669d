"""Are the records' statuses what their chained events say? (``gardien audit verify``, the release report.)

``ledger.releases.status`` / ``changeset_id`` and ``ledger.deployments.status`` are mirrors a trigger keeps from
the events (schema.sql). The chain protects the events; this check protects the mirrors: a row edited with the
triggers disabled, or inserted with a status no event gave it, is named here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from gardien.ledger.store import database_errors

# The status each kind of event gives a deployment (payload field, or the rollback's proof).
_DEPLOYMENT_STATUS_SQL = """
    CASE e.kind
        WHEN 'deployment.recorded' THEN e.payload ->> 'status'
        WHEN 'deployment.status_changed' THEN e.payload ->> 'to'
        ELSE CASE WHEN (e.payload ->> 'proven')::boolean THEN 'rolled_back' ELSE 'rollback_unproven' END
    END
"""


@dataclass(frozen=True, slots=True)
class StatusMismatch:
    """A record whose stored value is not the one its events give (``derived`` None: no event at all)."""

    table: str
    record_id: str
    release_id: str
    column: str
    stored: str | None
    derived: str | None

    def describe(self) -> str:
        if self.derived is None and self.column == "record":
            return (
                f"ledger.{self.table} row {self.record_id} (release {self.release_id}) has no chained event "
                "recording it: it was inserted outside Gardien"
            )
        return (
            f"ledger.{self.table} row {self.record_id} (release {self.release_id}): {self.column} is "
            f"{self.stored!r} but its chained events say {self.derived!r} — the row was changed outside the "
            "events (triggers disabled?)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "record_id": self.record_id,
            "release_id": self.release_id,
            "column": self.column,
            "stored": self.stored,
            "derived": self.derived,
        }


def status_mismatches(
    conn: psycopg2.extensions.connection, *, release_id: str | None = None
) -> tuple[StatusMismatch, ...]:
    """Every release and deployment row whose status (or current changeset) disagrees with its events."""
    only = "AND r.id = %(rid)s" if release_id is not None else ""
    only_d = "AND d.release_id = %(rid)s" if release_id is not None else ""
    out: list[StatusMismatch] = []
    with database_errors("check statuses against events"), conn.cursor() as cur:
        cur.execute(
            f"""
            SELECT r.id, r.status, coalesce(s.to_status, 'requested'), r.changeset_id, c.subject, created.seq
              FROM ledger.releases r
              LEFT JOIN LATERAL (SELECT e.payload ->> 'to' AS to_status FROM ledger.events e
                                  WHERE e.release_id = r.id AND e.kind = 'release.status_changed'
                                  ORDER BY e.seq DESC LIMIT 1) s ON true
              LEFT JOIN LATERAL (SELECT e.subject FROM ledger.events e
                                  WHERE e.release_id = r.id AND e.kind = 'changeset.attached'
                                  ORDER BY e.seq DESC LIMIT 1) c ON true
              LEFT JOIN LATERAL (SELECT e.seq FROM ledger.events e
                                  WHERE e.release_id = r.id AND e.kind = 'release.created' LIMIT 1) created ON true
             WHERE (r.status IS DISTINCT FROM coalesce(s.to_status, 'requested')
                    OR r.changeset_id IS DISTINCT FROM c.subject OR created.seq IS NULL) {only}
             ORDER BY r.id
            """,  # noqa: S608 - fixed fragments only
            {"rid": release_id},
        )
        for rid, stored, derived, cs_stored, cs_derived, created in cur.fetchall():
            if created is None:
                out.append(StatusMismatch("releases", rid, rid, "record", stored, None))
            if stored != derived:
                out.append(StatusMismatch("releases", rid, rid, "status", stored, derived))
            if cs_stored != cs_derived:
                out.append(StatusMismatch("releases", rid, rid, "changeset_id", cs_stored, cs_derived))
        cur.execute(
            f"""
            SELECT d.id, d.release_id, d.status, x.derived, rec.seq
              FROM ledger.deployments d
              LEFT JOIN LATERAL (SELECT {_DEPLOYMENT_STATUS_SQL} AS derived FROM ledger.events e
                                  WHERE e.release_id = d.release_id
                                    AND e.kind IN ('deployment.recorded', 'deployment.status_changed',
                                                   'rollback.recorded')
                                    AND e.payload ->> 'deployment_id' = d.id::text
                                  ORDER BY e.seq DESC LIMIT 1) x ON true
              LEFT JOIN LATERAL (SELECT e.seq FROM ledger.events e
                                  WHERE e.release_id = d.release_id AND e.kind = 'deployment.recorded'
                                    AND e.payload ->> 'deployment_id' = d.id::text LIMIT 1) rec ON true
             WHERE (d.status IS DISTINCT FROM x.derived OR rec.seq IS NULL) {only_d}
             ORDER BY d.id
            """,  # noqa: S608 - fixed fragments only
            {"rid": release_id},
        )
        for dep_id, rid, stored, derived, recorded in cur.fetchall():
            if recorded is None:
                out.append(StatusMismatch("deployments", str(dep_id), rid, "record", stored, None))
            elif stored != derived:
                out.append(StatusMismatch("deployments", str(dep_id), rid, "status", stored, derived))
    return tuple(out)

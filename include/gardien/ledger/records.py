"""Validation outcomes and approval decisions of a release, each with its chained event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2.extensions

from gardien.errors import ApprovalError, LedgerError
from gardien.ledger.chain import AirflowIds, canonical_payload, check_text
from gardien.ledger.releases import get_changeset, get_release
from gardien.ledger.store import append_event, check_actor_and_time, database_errors
from gardien.redact import redact, redact_text

DECISIONS = ("approved", "rejected")


@dataclass(frozen=True, slots=True)
class ValidationRecord:
    id: int
    release_id: str
    changeset_id: str
    environment: str
    passed: bool
    report: Mapping[str, Any]
    actor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    id: int
    release_id: str
    changeset_id: str
    approver: str
    decision: str
    comment: str | None
    at: datetime


def record_validation(
    conn: psycopg2.extensions.connection,
    *,
    release_id: str,
    changeset_id: str,
    environment: str,
    passed: bool,
    report: Mapping[str, Any],
    actor: str,
    at: datetime,
    airflow: AirflowIds | None = None,
) -> ValidationRecord:
    """Record a validation outcome; the full report goes into the chained event as well."""
    check_actor_and_time(actor, at)
    get_release(conn, release_id)
    get_changeset(conn, changeset_id)
    report = redact(dict(report))
    report_text = canonical_payload(report)
    check_text("environment", environment)
    with database_errors(f"record a validation of {release_id}"), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger.validation_results (release_id, changeset_id, environment, passed, report, "
            "actor, at) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING id",
            (release_id, changeset_id, environment, bool(passed), report_text, actor, at),
        )
        record_id = cur.fetchone()[0]
    append_event(
        conn,
        kind="validation.recorded",
        actor=actor,
        at=at,
        release_id=release_id,
        subject=changeset_id,
        payload={
            "validation_id": record_id,
            "environment": environment,
            "passed": bool(passed),
            "report": report,
        },
        airflow=airflow,
    )
    return ValidationRecord(record_id, release_id, changeset_id, environment, bool(passed), report, actor, at)


def record_approval(
    conn: psycopg2.extensions.connection,
    *,
    release_id: str,
    changeset_id: str,
    approver: str,
    decision: str,
    at: datetime,
    comment: str | None = None,
    airflow: AirflowIds | None = None,
) -> ApprovalRecord:
    """Record an approval decision, bound to the changeset the release carries now.

    Policy (quorum, routing) is decided elsewhere; the ledger still refuses, with ApprovalError, what can
    never be right: a decision on a changeset that is not the release's current one, and a requester
    approving their own release. Unknown release or changeset: LedgerError.
    """
    if decision not in DECISIONS:
        raise LedgerError(f"approval decision {decision!r} is unknown: use 'approved' or 'rejected'.")
    if not approver:
        raise LedgerError("an approval needs the approver's authenticated identity.")
    check_actor_and_time(approver, at)
    release = get_release(conn, release_id, for_update=True)
    if release.changeset_id != changeset_id:
        raise ApprovalError(
            f"approval for release {release_id} names changeset {changeset_id}, but the release now carries "
            f"{release.changeset_id or 'no changeset'}: the approval is stale. Review the current changeset."
        )
    if decision == "approved" and approver == release.requested_by:
        raise ApprovalError(
            f"{approver} requested release {release_id} and cannot approve it (separation of duties): "
            "ask another approver."
        )
    comment = redact_text(comment) if comment else comment
    check_text("comment", comment)
    with database_errors(f"record an approval of {release_id}"), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger.approvals (release_id, changeset_id, approver, decision, comment, at) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (release_id, changeset_id, approver, decision, comment, at),
        )
        record_id = cur.fetchone()[0]
    append_event(
        conn,
        kind="approval.recorded",
        actor=approver,
        at=at,
        release_id=release_id,
        subject=changeset_id,
        payload={"approval_id": record_id, "decision": decision},
        reason=comment,
        airflow=airflow,
    )
    return ApprovalRecord(record_id, release_id, changeset_id, approver, decision, comment, at)

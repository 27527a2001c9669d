"""Deployments per stage and their rollbacks (with proof or not), each with its chained event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from gardien.errors import LedgerError
from gardien.ledger.chain import AirflowIds, canonical_payload
from gardien.ledger.releases import get_changeset, get_release
from gardien.ledger.store import append_event, check_actor_and_time, database_errors, lock_ledger
from gardien.redact import redact_text

DEPLOYMENT_STATUSES = (
    "applying",
    "applied",
    "verified",
    "failed",
    "rolled_back",
    "rollback_unproven",
    "rollback_refused",  # a rollback refused with nothing written: the deployment is still in effect
)


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    id: int
    release_id: str
    environment: str
    changeset_id: str
    target_deployment_id: str | None
    fingerprints: Mapping[str, Any]
    status: str
    actor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RollbackRecord:
    id: int
    deployment_id: int
    proven: bool
    fingerprints: Mapping[str, Any]
    reason: str
    actor: str
    at: datetime


def record_deployment(
    conn: psycopg2.extensions.connection,
    *,
    release_id: str,
    environment: str,
    changeset_id: str,
    status: str,
    actor: str,
    at: datetime,
    target_deployment_id: str | None = None,
    fingerprints: Mapping[str, Any] | None = None,
    airflow: AirflowIds | None = None,
) -> DeploymentRecord:
    """Record a deployment of ``changeset_id`` to ``environment`` (a stage of the release's path)."""
    _check_status(status)
    check_actor_and_time(actor, at)
    release = get_release(conn, release_id)
    if environment not in release.path:
        raise LedgerError(
            f"environment {environment!r} is not on release {release_id}'s path {list(release.path)}: "
            "deploy only to the environments the release names."
        )
    get_changeset(conn, changeset_id)
    fingerprints = dict(fingerprints or {})
    with database_errors(f"record a deployment of {release_id}"), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger.deployments (release_id, environment, changeset_id, target_deployment_id, "
            "fingerprints, status, actor, at) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s) RETURNING id",
            (
                release_id,
                environment,
                changeset_id,
                target_deployment_id,
                canonical_payload(fingerprints),
                status,
                actor,
                at,
            ),
        )
        record_id = cur.fetchone()[0]
    append_event(
        conn,
        kind="deployment.recorded",
        actor=actor,
        at=at,
        release_id=release_id,
        subject=changeset_id,
        payload={
            "deployment_id": record_id,
            "environment": environment,
            "target_deployment_id": target_deployment_id,
            "fingerprints": fingerprints,
            "status": status,
        },
        airflow=airflow,
    )
    return DeploymentRecord(
        record_id,
        release_id,
        environment,
        changeset_id,
        target_deployment_id,
        fingerprints,
        status,
        actor,
        at,
    )


def set_deployment_status(
    conn: psycopg2.extensions.connection,
    *,
    deployment_id: int,
    status: str,
    actor: str,
    at: datetime,
    reason: str | None = None,
    airflow: AirflowIds | None = None,
) -> DeploymentRecord:
    """Move a deployment to ``status`` (e.g. applied → verified) and append the matching event."""
    _check_status(status)
    check_actor_and_time(actor, at)
    current = get_deployment(conn, deployment_id, for_update=True)
    # The event is the change: the ledger's trigger moves ledger.deployments.status to the event's "to".
    append_event(
        conn,
        kind="deployment.status_changed",
        actor=actor,
        at=at,
        release_id=current.release_id,
        subject=current.changeset_id,
        payload={"deployment_id": deployment_id, "from": current.status, "to": status},
        reason=reason,
        airflow=airflow,
    )
    return replace(current, status=status)


def get_deployment(
    conn: psycopg2.extensions.connection, deployment_id: int, *, for_update: bool = False
) -> DeploymentRecord:
    """The deployment ``deployment_id``; LedgerError naming it if unknown (``for_update``: see get_release)."""
    if for_update:
        lock_ledger(conn)
    query = sql.SQL(
        "SELECT id, release_id, environment, changeset_id, target_deployment_id, fingerprints, status, "
        "actor, at FROM ledger.deployments WHERE id = %s"
    )
    with database_errors(f"read deployment {deployment_id}"), conn.cursor() as cur:
        cur.execute(query, (deployment_id,))
        row = cur.fetchone()
    if row is None:
        raise LedgerError(f"unknown deployment {deployment_id}: no such deployment in the ledger.")
    return DeploymentRecord(*row)


def record_rollback(
    conn: psycopg2.extensions.connection,
    *,
    deployment_id: int,
    proven: bool,
    fingerprints: Mapping[str, Any],
    reason: str,
    actor: str,
    at: datetime,
    airflow: AirflowIds | None = None,
) -> RollbackRecord:
    """Record a rollback and whether restoration was proven; the deployment becomes ``rolled_back`` if
    proven, ``rollback_unproven`` otherwise (manual repair needed)."""
    if not reason:
        raise LedgerError(f"rollback of deployment {deployment_id} needs a reason (why it was rolled back).")
    reason = redact_text(reason)
    check_actor_and_time(actor, at)
    deployment = get_deployment(conn, deployment_id, for_update=True)
    fingerprints = dict(fingerprints)
    with database_errors(f"record a rollback of deployment {deployment_id}"), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger.rollbacks (deployment_id, proven, fingerprints, reason, actor, at) "
            "VALUES (%s, %s, %s::jsonb, %s, %s, %s) RETURNING id",
            (deployment_id, bool(proven), canonical_payload(fingerprints), reason, actor, at),
        )
        record_id = cur.fetchone()[0]
    # The event moves the deployment to rolled_back / rollback_unproven (the ledger's trigger).
    append_event(
        conn,
        kind="rollback.recorded",
        actor=actor,
        at=at,
        release_id=deployment.release_id,
        subject=deployment.changeset_id,
        payload={
            "rollback_id": record_id,
            "deployment_id": deployment_id,
            "proven": bool(proven),
            "fingerprints": fingerprints,
        },
        reason=reason,
        airflow=airflow,
    )
    return RollbackRecord(record_id, deployment_id, bool(proven), fingerprints, reason, actor, at)


def record_rollback_refused(
    conn: psycopg2.extensions.connection,
    *,
    deployment_id: int,
    reason: str,
    later_edits: Sequence[Mapping[str, Any]],
    keep_later_edits: bool,
    actor: str,
    at: datetime,
    airflow: AirflowIds | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Record that a rollback of ``deployment_id`` was refused before anything was written: the deployment
    is still in effect (``rollback_refused``, the ledger's trigger), no manual repair is implied. The later
    production edits that refused it, field by field, are in the event; ``extra`` adds to its payload (the
    entry point)."""
    if not reason:
        raise LedgerError(f"refused rollback of deployment {deployment_id} needs a reason.")
    check_actor_and_time(actor, at)
    deployment = get_deployment(conn, deployment_id, for_update=True)
    append_event(
        conn,
        kind="deployment.rollback_refused",
        actor=actor,
        at=at,
        release_id=deployment.release_id,
        subject=deployment.changeset_id,
        payload={
            "deployment_id": deployment_id,
            "environment": deployment.environment,
            "still_deployed": True,
            "keep_later_edits": bool(keep_later_edits),
            "later_edits": [dict(e) for e in later_edits],
            **(extra or {}),
        },
        reason=redact_text(reason),
        airflow=airflow,
    )


def _check_status(status: str) -> None:
    if status not in DEPLOYMENT_STATUSES:
        raise LedgerError(
            f"deployment status {status!r} is unknown: use one of {', '.join(DEPLOYMENT_STATUSES)}."
        )

"""Everything the ledger knows about one release, gathered for reports and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions

from gardien.ledger.chain import Event
from gardien.ledger.deployments import DeploymentRecord, RollbackRecord
from gardien.ledger.records import ApprovalRecord, ValidationRecord
from gardien.ledger.releases import Release, get_release
from gardien.ledger.store import database_errors, list_events


@dataclass(frozen=True, slots=True)
class ReleaseHistory:
    """A release with its records and events, each tuple in recording order."""

    release: Release
    validations: tuple[ValidationRecord, ...]
    approvals: tuple[ApprovalRecord, ...]
    deployments: tuple[DeploymentRecord, ...]
    rollbacks: tuple[RollbackRecord, ...]
    events: tuple[Event, ...]

    def approvals_for(self, changeset_id: str) -> tuple[ApprovalRecord, ...]:
        """Decisions bound to ``changeset_id`` (decisions on an earlier changeset do not count)."""
        return tuple(a for a in self.approvals if a.changeset_id == changeset_id)


def release_history(conn: psycopg2.extensions.connection, release_id: str) -> ReleaseHistory:
    """The whole story of ``release_id``; LedgerError naming it if the ledger does not know it."""
    release = get_release(conn, release_id)
    with database_errors(f"read the history of {release_id}"), conn.cursor() as cur:
        cur.execute(
            "SELECT id, release_id, changeset_id, environment, passed, report, actor, at "
            "FROM ledger.validation_results WHERE release_id = %s ORDER BY id",
            (release_id,),
        )
        validations = tuple(ValidationRecord(*row) for row in cur.fetchall())
        cur.execute(
            "SELECT id, release_id, changeset_id, approver, decision, comment, at, seat, role "
            "FROM ledger.approvals WHERE release_id = %s ORDER BY id",
            (release_id,),
        )
        approvals = tuple(ApprovalRecord(*row) for row in cur.fetchall())
        cur.execute(
            "SELECT id, release_id, environment, changeset_id, target_deployment_id, fingerprints, status, "
            "actor, at FROM ledger.deployments WHERE release_id = %s ORDER BY id",
            (release_id,),
        )
        deployments = tuple(DeploymentRecord(*row) for row in cur.fetchall())
        cur.execute(
            "SELECT r.id, r.deployment_id, r.proven, r.fingerprints, r.reason, r.actor, r.at "
            "FROM ledger.rollbacks r JOIN ledger.deployments d ON d.id = r.deployment_id "
            "WHERE d.release_id = %s ORDER BY r.id",
            (release_id,),
        )
        rollbacks = tuple(RollbackRecord(*row) for row in cur.fetchall())
    return ReleaseHistory(
        release=release,
        validations=validations,
        approvals=approvals,
        deployments=deployments,
        rollbacks=rollbacks,
        events=list_events(conn, release_id=release_id),
    )

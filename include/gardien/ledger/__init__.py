"""The audit ledger: releases, content-addressed changesets, records and a hash-chained event log."""

from __future__ import annotations

from gardien.ledger.approval_check import ApprovalMismatch, approval_mismatches
from gardien.ledger.chain import (
    GENESIS_HASH,
    AirflowIds,
    Event,
    canonical_payload,
    canonical_text,
    event_hash,
)
from gardien.ledger.consistency import StatusMismatch, status_mismatches
from gardien.ledger.crosswalks import CrosswalkRecord, crosswalk_digest, get_crosswalk, record_crosswalk
from gardien.ledger.deployments import (
    DEPLOYMENT_STATUSES,
    DeploymentRecord,
    RollbackRecord,
    get_deployment,
    record_deployment,
    record_rollback,
    record_rollback_refused,
    set_deployment_status,
)
from gardien.ledger.history import ReleaseHistory, release_history
from gardien.ledger.migrate import SCHEMA_VERSION, SchemaState, migrate, require_schema
from gardien.ledger.records import ApprovalRecord, ValidationRecord, record_approval, record_validation
from gardien.ledger.releases import (
    RELEASE_STATUSES,
    Release,
    attach_changeset,
    create_release,
    get_changeset,
    get_release,
    next_release_id,
    put_changeset,
    set_release_status,
)
from gardien.ledger.store import (
    WRITER_ROLE,
    append_event,
    ensure_schema,
    find_event,
    list_events,
    lock_ledger,
    verify_chain,
)
from gardien.ledger.verify import Anchor, BrokenLink, ChainReport

__all__ = [
    "ApprovalMismatch",
    "approval_mismatches",
    "DEPLOYMENT_STATUSES",
    "SCHEMA_VERSION",
    "GENESIS_HASH",
    "RELEASE_STATUSES",
    "WRITER_ROLE",
    "AirflowIds",
    "Anchor",
    "ApprovalRecord",
    "BrokenLink",
    "ChainReport",
    "CrosswalkRecord",
    "DeploymentRecord",
    "Event",
    "Release",
    "ReleaseHistory",
    "RollbackRecord",
    "SchemaState",
    "StatusMismatch",
    "ValidationRecord",
    "append_event",
    "attach_changeset",
    "canonical_payload",
    "canonical_text",
    "create_release",
    "crosswalk_digest",
    "ensure_schema",
    "event_hash",
    "find_event",
    "get_changeset",
    "get_crosswalk",
    "get_deployment",
    "get_release",
    "list_events",
    "lock_ledger",
    "migrate",
    "next_release_id",
    "put_changeset",
    "record_approval",
    "record_crosswalk",
    "record_deployment",
    "record_rollback",
    "record_rollback_refused",
    "record_validation",
    "release_history",
    "require_schema",
    "set_deployment_status",
    "set_release_status",
    "status_mismatches",
    "verify_chain",
]

"""The release report as a value: every section a change advisory board files, JSON-ready."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORMAT = "gardien.report/1"


@dataclass(frozen=True, slots=True)
class Alert:
    """A fact shown above everything else (``level``: danger or warning)."""

    level: str
    text: str


@dataclass(frozen=True, slots=True)
class Request:
    """Who asked for the release, why, for which window, along which path (as the ledger records it)."""

    release_id: str
    path_name: str | None
    path: tuple[str, ...]
    requested_by: str
    reason: str
    window_start: str | None
    window_end: str | None
    created_at: str
    status: str
    changeset_id: str | None


@dataclass(frozen=True, slots=True)
class RowValues:
    """An inserted row (its values) or a deleted row (its baseline), named by its natural key."""

    key: tuple[Any, ...]
    label: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """A field's change; for a list field (items joined by a separator), ``added`` and ``removed`` hold the
    set difference, which is what people read (``+UF1035 −UF2005``), never the two whole lists."""

    before: Any
    after: Any
    added: tuple[str, ...] | None = None
    removed: tuple[str, ...] | None = None
    separator: str | None = None


@dataclass(frozen=True, slots=True)
class RowUpdate:
    key: tuple[Any, ...]
    label: str
    changes: Mapping[str, FieldDiff]
    action: str = "updated"  # or "retired" / "unretired" (a table with delete: {retire: ...})
    reason: str | None = None  # the retire reason column's value


@dataclass(frozen=True, slots=True)
class TableDiff:
    """One table's changes; long lists are cut at the report's row limit, ``omitted`` says how many."""

    table: str
    counts: Mapping[str, int]
    inserts: tuple[RowValues, ...]
    updates: tuple[RowUpdate, ...]
    deletes: tuple[RowValues, ...]
    omitted: Mapping[str, int]
    retired_by: str | None = None  # soft-delete tables: a "delete" retires the row (e.g. "actif = false")


@dataclass(frozen=True, slots=True)
class ChangesetSection:
    """The release's current changeset; ``problem`` when it could not be read (altered, malformed)."""

    id: str | None
    total: int
    counts: Mapping[str, Mapping[str, int]]
    tables: tuple[TableDiff, ...]
    catalog_fingerprint: str | None
    source_digest: str | None
    target_digest: str | None
    full_changeset: tuple[str, ...]
    earlier_ids: tuple[str, ...]
    row_limit: int
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ExpectationLine:
    name: str
    table: str | None
    kind: str
    status: str
    unexpected_count: int
    examples: tuple[Any, ...]
    message: str
    error: str | None


@dataclass(frozen=True, slots=True)
class ValidationRun:
    """A validation of the rehearsed state (``phase`` rehearsal) or of a deployed target (verification)."""

    id: int
    phase: str
    environment: str
    changeset_id: str
    current_changeset: bool
    passed: bool
    at: str
    actor: str
    summary: str
    counts: Mapping[str, int]
    problems: tuple[ExpectationLine, ...]
    passed_names: tuple[str, ...]
    errors: tuple[str, ...]
    notes: tuple[str, ...]
    fingerprint: Mapping[str, Any] | None
    data_docs_path: str | None
    data_docs_href: str | None


@dataclass(frozen=True, slots=True)
class ApprovalLine:
    """A recorded decision; ``void`` when bound to a changeset the release no longer carries.

    ``answered_at`` is when the person answered (``at`` when the ledger recorded it, which may be later);
    ``seat`` and ``role`` say which approval the answer filled, when the ledger records them."""

    approver: str
    decision: str
    at: str
    changeset_id: str
    void: bool
    comment: str | None
    seat: int | None = None
    role: str | None = None
    answered_at: str | None = None


@dataclass(frozen=True, slots=True)
class RejectionLine:
    """Why the release was refused: a recorded rejection, or the approval step's refusal (timeout...)."""

    by: str | None
    reason: str
    at: str
    recorded_by: str
    changeset_id: str | None
    source: str
    refused: bool = False  # ``by`` chose Approve and the seat refused it (stale changeset, four-eyes...)

    @property
    def headline(self) -> str:
        """ "REJECTED by X" only when X chose Reject; an Approve the seat refused is said as such."""
        if self.refused and self.by:
            return f"APPROVAL REFUSED (given by {self.by})"
        return f"REJECTED by {self.by}" if self.by else "REJECTED"


@dataclass(frozen=True, slots=True)
class StatusChange:
    at: str
    actor: str
    before: str | None
    after: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class DeploymentLine:
    """One deployment of the changeset to one environment; ``drift`` None when the artifact is absent."""

    id: int
    stage: str | None
    environment: str
    at: str
    actor: str
    status: str
    changeset_id: str
    target_deployment_id: str | None
    apply_status: str | None
    fingerprint_before: str | None
    fingerprint_after: str | None
    matches_source: bool | None
    counts: Mapping[str, Mapping[str, int]] | None
    drift: tuple[Mapping[str, Any], ...] | None
    history: tuple[StatusChange, ...]


@dataclass(frozen=True, slots=True)
class RefusedDeployment:
    """An apply that did not happen (conflict with the target, or a database refusal)."""

    environment: str
    kind: str
    at: str
    actor: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class RollbackLine:
    deployment_id: int
    environment: str | None
    proven: bool
    at: str
    actor: str
    reason: str
    fingerprint_expected: str | None
    fingerprint_restored: str | None


@dataclass(frozen=True, slots=True)
class OutcomeLine:
    """The final outcome from the ``release.closed`` event; ``closed`` False while the release runs."""

    closed: bool
    outcome: str
    ok: bool | None
    detail: str
    at: str | None


@dataclass(frozen=True, slots=True)
class TargetDeployment:
    """Where the release went: the target-side deployment id (what rollback takes) and its status."""

    environment: str
    deployment_id: str | None
    status: str


@dataclass(frozen=True, slots=True)
class Summary:
    """The answers a change advisory board looks for first: what, where, when, who asked, who approved
    (seat/role, answer time), the deployment ids per target, and the outcome."""

    what: str
    tables: tuple[str, ...]
    where: str
    when: str
    requested_by: str
    requested_at: str
    reason: str
    approvers: tuple[ApprovalLine, ...]
    deployments: tuple[TargetDeployment, ...]
    outcome: str
    outcome_detail: str
    ok: bool | None


@dataclass(frozen=True, slots=True)
class RollbackHandle:
    """How to roll back this release on one environment where it is in effect: the ``gardien_rollback``
    DAG (behind its own approvals) with these params, or the equivalent CLI line."""

    environment: str
    deployment_id: str
    dag_id: str
    params: Mapping[str, Any]
    cli: str


@dataclass(frozen=True, slots=True)
class EventLine:
    seq: int
    at: str
    kind: str
    actor: str
    subject: str | None
    reason: str | None
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """``verify_chain`` over the whole ledger when the report was written; the head is worth publishing."""

    ok: bool
    checked: int
    head_seq: int | None
    head_hash: str
    broken: str | None
    # Records of this release whose status disagrees with its chained events (forged with triggers off).
    status_mismatches: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReleaseReport:
    """Everything the ledger (and, when present, the release's artifact folder) says about one release."""

    release_id: str
    generated_at: str
    sources: tuple[str, ...]
    alerts: tuple[Alert, ...]
    request: Request
    changeset: ChangesetSection
    validations: tuple[ValidationRun, ...]
    approvals: tuple[ApprovalLine, ...]
    rejections: tuple[RejectionLine, ...]
    deployments: tuple[DeploymentLine, ...]
    refused_deployments: tuple[RefusedDeployment, ...]
    rollbacks: tuple[RollbackLine, ...]
    outcome: OutcomeLine
    events: tuple[EventLine, ...]
    chain: ChainStatus
    rollback_handles: tuple[RollbackHandle, ...] = ()
    summary: Summary | None = None  # derived from the sections above (see gardien.report.summary)

    @property
    def rehearsals(self) -> tuple[ValidationRun, ...]:
        return tuple(v for v in self.validations if v.phase == "rehearsal")

    @property
    def verifications(self) -> tuple[ValidationRun, ...]:
        return tuple(v for v in self.validations if v.phase == "verification")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; field names are the keys, so the layout is as stable as this module."""
        return {"format": FORMAT, **_plain(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

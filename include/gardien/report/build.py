"""Build the ReleaseReport value from a release's ledger history, its changeset and its artifacts (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from gardien import ledger
from gardien.changeset import Changeset
from gardien.redact import redact
from gardien.report.artifacts import Artifacts
from gardien.report.diffs import changeset_section, unreadable_section
from gardien.report.hints import CatalogHints
from gardien.report.lines import (
    deployment_line,
    payload_of,
    rejection_lines,
    text_or_none,
    ts,
    validation_run,
)
from gardien.report.model import (
    ApprovalLine,
    ChainStatus,
    EventLine,
    OutcomeLine,
    RefusedDeployment,
    ReleaseReport,
    Request,
    RollbackLine,
)
from gardien.report.sections import alerts_for
from gardien.report.summary import rollback_handles, summary_for

ROW_LIMIT = 50
EXAMPLE_LIMIT = 5


def build_report(
    history: ledger.ReleaseHistory,
    *,
    changeset: Changeset | None,
    changeset_problem: str | None,
    chain: ledger.ChainReport,
    artifacts: Artifacts,
    status_mismatches: tuple[ledger.StatusMismatch, ...] = (),
    generated_at: datetime,
    path_name: str | None = None,
    stages: Mapping[str, str] | None = None,
    row_limit: int = ROW_LIMIT,
    example_limit: int = EXAMPLE_LIMIT,
    hints: CatalogHints | None = None,
) -> ReleaseReport:
    """The report of ``history.release``: nothing here reads a database, a file or the clock.

    ``changeset`` is the release's current changeset (None with ``changeset_problem`` saying why: none yet,
    altered in the ledger, malformed); ``chain`` is ``verify_chain`` run when the report is written;
    ``stages`` maps each environment to its stage name when the release path is known; ``hints`` (from
    the catalog) name list fields, shown as set differences, and soft-delete tables, whose deletes retire.
    """
    if row_limit < 1 or example_limit < 0:
        raise ValueError("row_limit must be positive and example_limit not negative")
    rel = history.release
    events = history.events
    stage_of = dict(stages or {})
    earlier = tuple(
        dict.fromkeys(
            e.subject
            for e in events
            if e.kind == "changeset.attached" and e.subject and e.subject != rel.changeset_id
        )
    )
    full = [f"ledger: table ledger.changesets, id {rel.changeset_id}"] if rel.changeset_id else []
    if "changeset.json" in artifacts.links:
        full.append(artifacts.links["changeset.json"])
    if changeset is not None:
        section = changeset_section(
            changeset, row_limit=row_limit, full_changeset=full, earlier_ids=earlier, hints=hints
        )
    else:
        problem = changeset_problem or "the release has no changeset yet (nothing was extracted)"
        section = unreadable_section(
            rel.changeset_id, problem=problem, row_limit=row_limit, full_changeset=full, earlier_ids=earlier
        )
    validations = tuple(
        validation_run(
            v, current=rel.changeset_id, artifacts=artifacts, release_id=rel.id, limit=example_limit
        )
        for v in history.validations
    )
    deployments = tuple(
        deployment_line(d, events=events, stage_of=stage_of, artifacts=artifacts) for d in history.deployments
    )
    env_of = {d.id: d.environment for d in history.deployments}
    report = ReleaseReport(
        release_id=rel.id,
        generated_at=ts(generated_at) or "",
        sources=_sources(artifacts),
        alerts=(),
        request=Request(
            release_id=rel.id,
            path_name=path_name,
            path=tuple(rel.path),
            requested_by=rel.requested_by,
            reason=rel.reason,
            window_start=ts(rel.window_start),
            window_end=ts(rel.window_end),
            created_at=ts(rel.created_at) or "",
            status=rel.status,
            changeset_id=rel.changeset_id,
        ),
        changeset=section,
        validations=validations,
        approvals=tuple(
            ApprovalLine(
                approver=a.approver,
                decision=a.decision,
                at=ts(a.at) or "",
                changeset_id=a.changeset_id,
                void=a.changeset_id != rel.changeset_id,
                comment=a.comment,
                # recorded by the approval step when the ledger keeps them (older records have none)
                seat=getattr(a, "seat", None),
                role=getattr(a, "role", None),
                answered_at=_answered_at(a),
            )
            for a in history.approvals
        ),
        rejections=rejection_lines(history),
        deployments=deployments,
        refused_deployments=tuple(
            RefusedDeployment(
                environment=str(payload_of(e).get("environment") or e.subject or "?"),
                kind="conflict" if e.kind == "deployment.conflict" else "failed",
                at=ts(e.at) or "",
                actor=e.actor,
                reason=e.reason,
            )
            for e in events
            if e.kind in ("deployment.conflict", "deployment.failed")
        ),
        rollbacks=tuple(
            RollbackLine(
                deployment_id=r.deployment_id,
                environment=env_of.get(r.deployment_id),
                proven=r.proven,
                at=ts(r.at) or "",
                actor=r.actor,
                reason=r.reason,
                fingerprint_expected=text_or_none((r.fingerprints or {}).get("expected")),
                fingerprint_restored=text_or_none((r.fingerprints or {}).get("restored")),
            )
            for r in history.rollbacks
        ),
        outcome=_outcome(history),
        events=tuple(
            EventLine(
                seq=e.seq,
                at=ts(e.at) or "",
                kind=e.kind,
                actor=e.actor,
                subject=e.subject,
                reason=e.reason,
                dag_id=e.airflow.dag_id,
                run_id=e.airflow.run_id,
                task_id=e.airflow.task_id,
                prev_hash=e.prev_hash,
                hash=e.hash,
            )
            for e in events
        ),
        chain=ChainStatus(
            ok=chain.ok,
            checked=chain.checked,
            head_seq=chain.head_seq,
            head_hash=chain.head_hash,
            broken=chain.first_broken.describe() if chain.first_broken else None,
            status_mismatches=tuple(m.describe() for m in status_mismatches),
        ),
    )
    # Alerts, summary and rollback handles summarise the other sections: derived from the finished value;
    # nothing in a report (reasons, error texts recorded before redaction existed) may show a password.
    return redact(
        replace(
            report,
            alerts=alerts_for(report),
            summary=summary_for(report),
            rollback_handles=rollback_handles(report),
        )
    )


def _answered_at(a: ledger.ApprovalRecord) -> str | None:
    """When the person answered, if the ledger knows it: an explicit ``answered_at``, else ``at`` for records
    that carry their seat (those are written with Airflow's response time, ADR 0007); older records hold
    only when a later step wrote them, which the report must not call an answer time."""
    explicit = getattr(a, "answered_at", None)
    if explicit is not None:
        return ts(explicit)
    if getattr(a, "seat", None) is not None or getattr(a, "role", None) is not None:
        return ts(a.at)
    return None


def _sources(artifacts: Artifacts) -> tuple[str, ...]:
    if artifacts.folder is None:
        return ("ledger", "artifact folder not found: built from the ledger alone")
    extra = f" (unreadable: {', '.join(artifacts.unreadable)})" if artifacts.unreadable else ""
    return ("ledger", f"artifact folder {artifacts.folder}{extra}")


def _outcome(history: ledger.ReleaseHistory) -> OutcomeLine:
    closed = [e for e in history.events if e.kind == "release.closed"]
    if not closed:
        status = history.release.status
        return OutcomeLine(
            closed=False, outcome=status, ok=None, detail=f"not closed yet (status {status})", at=None
        )
    last = closed[-1]
    p = payload_of(last)
    ok = p.get("ok")
    return OutcomeLine(
        closed=True,
        outcome=str(p.get("outcome") or history.release.status),
        ok=ok if isinstance(ok, bool) else None,
        detail=str(p.get("detail") or last.reason or ""),
        at=ts(last.at),
    )

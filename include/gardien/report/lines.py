"""Ledger records turned into report lines: validation runs, deployments with their history, rejections."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gardien import ledger
from gardien.report.artifacts import Artifacts
from gardien.report.model import DeploymentLine, ExpectationLine, RejectionLine, StatusChange, ValidationRun

REHEARSAL_PREFIX = "rehearsal:"


def ts(at: datetime | None) -> str | None:
    """UTC ISO-8601 with microseconds, as the ledger keeps them (events are ordered within a second)."""
    return at.astimezone(UTC).isoformat() if at is not None else None


def payload_of(event: ledger.Event) -> Mapping[str, Any]:
    try:
        data = event.payload
    except ValueError:
        return {}
    return data if isinstance(data, Mapping) else {}


def text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _status(expectation: Mapping[str, Any]) -> str:
    # A report not made by ValidationReport (hand-written, older) may carry only ``passed``.
    return str(expectation.get("status") or ("passed" if expectation.get("passed") else "failed"))


def validation_run(
    v: ledger.ValidationRecord, *, current: str | None, artifacts: Artifacts, release_id: str, limit: int
) -> ValidationRun:
    report: Mapping[str, Any] = v.report if isinstance(v.report, Mapping) else {}
    lines = [e for e in report.get("expectations") or [] if isinstance(e, Mapping)]
    counts = {"passed": 0, "failed": 0, "error": 0}
    for e in lines:
        counts[_status(e)] = counts.get(_status(e), 0) + 1
    problems = tuple(
        ExpectationLine(
            name=str(e.get("name")),
            table=text_or_none(e.get("table")),
            kind=str(e.get("kind") or ""),
            status=_status(e),
            unexpected_count=int(e.get("unexpected_count") or 0),
            examples=tuple((e.get("examples") or [])[:limit]),
            message=str(e.get("message") or ""),
            error=text_or_none(e.get("error")),
        )
        for e in lines
        if _status(e) != "passed"
    )
    fingerprint_keys = ("expected_fingerprint", "actual_fingerprint", "fingerprint_ok")
    fingerprint = {k: report[k] for k in fingerprint_keys if k in report} or None
    docs = text_or_none(report.get("data_docs_path"))
    rehearsal = v.environment.startswith(REHEARSAL_PREFIX)
    return ValidationRun(
        id=v.id,
        phase="rehearsal" if rehearsal else "verification",
        environment=v.environment[len(REHEARSAL_PREFIX) :] if rehearsal else v.environment,
        changeset_id=v.changeset_id,
        current_changeset=v.changeset_id == current,
        passed=v.passed,
        at=ts(v.at) or "",
        actor=v.actor,
        summary=str(report.get("summary") or ("passed" if v.passed else "failed")),
        counts=counts,
        problems=problems,
        passed_names=tuple(str(e.get("name")) for e in lines if _status(e) == "passed"),
        errors=tuple(str(x) for x in report.get("errors") or []),
        notes=tuple(str(x) for x in report.get("notes") or []),
        fingerprint=fingerprint,
        data_docs_path=docs,
        data_docs_href=artifacts.link(docs, release_id=release_id),
    )


def deployment_line(
    d: ledger.DeploymentRecord,
    *,
    events: tuple[ledger.Event, ...],
    stage_of: Mapping[str, str],
    artifacts: Artifacts,
) -> DeploymentLine:
    fp: Mapping[str, Any] = d.fingerprints if isinstance(d.fingerprints, Mapping) else {}
    artifact = artifacts.deployments.get(d.environment)
    # The file is per environment and rewritten by a later attempt: it describes this deployment only
    # when it names the same target-side deployment id.
    mine = (
        artifact is not None
        and d.target_deployment_id
        and artifact.get("deployment_id") == d.target_deployment_id
    )
    history = tuple(
        StatusChange(
            at=ts(e.at) or "",
            actor=e.actor,
            before=text_or_none(payload_of(e).get("from")),
            after=str(payload_of(e).get("to", "rollback_refused")),
            reason=e.reason,
        )
        for e in events
        if e.kind in ("deployment.status_changed", "deployment.rollback_refused")
        and payload_of(e).get("deployment_id") == d.id
    )
    return DeploymentLine(
        id=d.id,
        stage=stage_of.get(d.environment),
        environment=d.environment,
        at=ts(d.at) or "",
        actor=d.actor,
        status=d.status,
        changeset_id=d.changeset_id,
        target_deployment_id=d.target_deployment_id,
        apply_status=text_or_none(fp.get("apply_status")),
        fingerprint_before=text_or_none(fp.get("before")),
        fingerprint_after=text_or_none(fp.get("after")),
        matches_source=fp.get("matches_source") if isinstance(fp.get("matches_source"), bool) else None,
        counts=artifact.get("counts") if mine and isinstance(artifact.get("counts"), Mapping) else None,
        drift=tuple(x for x in artifact.get("drift") or [] if isinstance(x, Mapping)) if mine else None,
        history=history,
    )


def rejection_lines(history: ledger.ReleaseHistory) -> tuple[RejectionLine, ...]:
    lines = [
        RejectionLine(
            by=a.approver,
            reason=a.comment or "(no reason recorded)",
            at=ts(a.at) or "",
            recorded_by=a.approver,
            changeset_id=a.changeset_id,
            source="approval",
        )
        for a in history.approvals
        if a.decision == "rejected"
    ]
    for e in history.events:
        if e.kind == "approval.rejected":
            p = payload_of(e)
            lines.append(
                RejectionLine(
                    by=text_or_none(p.get("by")),
                    reason=str(p.get("reason") or e.reason or "(no reason recorded)"),
                    at=ts(e.at) or "",
                    recorded_by=e.actor,
                    changeset_id=text_or_none(p.get("changeset_id")),
                    source="approval step",
                    refused=bool(p.get("refused")),
                )
            )
    return tuple(sorted(lines, key=lambda r: r.at))

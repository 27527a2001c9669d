"""The alerts at the top of a report: what a change advisory board must not miss, loudest first."""

from __future__ import annotations

from gardien.report.model import Alert, ReleaseReport

DANGER, WARNING = "danger", "warning"


def alerts_for(report: ReleaseReport) -> tuple[Alert, ...]:
    """Broken audit chain, unreadable changeset, unproven or refused rollback, rejection, failed validation or
    verification, refused deployment, void approvals, drift, and an outcome that is not the intended one."""
    alerts: list[Alert] = []
    if not report.chain.ok:
        alerts.append(
            Alert(DANGER, f"AUDIT CHAIN BROKEN — {report.chain.broken}. This report cannot be trusted as is.")
        )
    for mismatch in report.chain.status_mismatches:
        alerts.append(
            Alert(
                DANGER,
                f"STATUS NOT BACKED BY THE AUDIT CHAIN — {mismatch}. Trust the events, not this status.",
            )
        )
    if report.changeset.problem and report.changeset.id:
        alerts.append(Alert(DANGER, f"CHANGESET UNREADABLE — {report.changeset.problem}"))
    for r in report.rollbacks:
        if not r.proven:
            alerts.append(
                Alert(
                    DANGER,
                    f"ROLLBACK NOT PROVEN on {r.environment or f'deployment {r.deployment_id}'} — "
                    f"MANUAL REPAIR NEEDED. {r.reason}",
                )
            )
    for d in report.deployments:
        if (
            d.status == "rollback_refused"
        ):  # nothing written: no repair, but the rollback asked for did not happen
            why = next((h.reason for h in reversed(d.history) if h.after == "rollback_refused"), None)
            alerts.append(
                Alert(
                    DANGER,
                    f"ROLLBACK REFUSED on {d.environment} — nothing was written: the deployment is STILL IN "
                    f"EFFECT. {why or ''}".rstrip(),
                )
            )
    for j in report.rejections:
        alerts.append(Alert(DANGER, f"{j.headline} ({j.at}): {j.reason}"))
    for v in report.validations:
        if not v.passed and v.current_changeset:
            what = "VALIDATION FAILED (rehearsal)" if v.phase == "rehearsal" else "VERIFICATION FAILED"
            alerts.append(Alert(DANGER, f"{what} on {v.environment}: {v.summary}"))
    for d in report.refused_deployments:
        label = "CONFLICT" if d.kind == "conflict" else "DEPLOYMENT FAILED"
        alerts.append(Alert(DANGER, f"{label} on {d.environment}: {d.reason or 'no detail recorded'}"))
    void = [a for a in report.approvals if a.void]
    if void:
        alerts.append(
            Alert(
                WARNING,
                f"{len(void)} approval(s) void: bound to an earlier changeset "
                f"({', '.join(sorted({a.approver for a in void}))}); they do not count for this changeset.",
            )
        )
    for d in report.deployments:
        if d.drift:
            alerts.append(
                Alert(
                    WARNING,
                    f"DRIFT on {d.environment}: {len(d.drift)} note(s) — the target had changed since capture "
                    "in ways this release tolerates; see the deployment's drift notes.",
                )
            )
    closed_at = report.outcome.at if report.outcome.closed else None
    for r in report.rollbacks:
        if closed_at and r.at > closed_at:
            alerts.append(
                Alert(
                    DANGER,
                    f"ROLLED BACK AFTER THE RELEASE CLOSED on {r.environment or f'deployment {r.deployment_id}'} "
                    f"({r.at}, by {r.actor}, restoration {'proven' if r.proven else 'NOT proven'}): {r.reason}. "
                    f"The outcome recorded at close ({report.outcome.outcome.upper()}) no longer holds there.",
                )
            )
    if report.outcome.closed and report.outcome.ok is False:
        alerts.append(
            Alert(
                DANGER,
                f"OUTCOME {report.outcome.outcome.upper().replace('_', ' ')} — {report.outcome.detail}",
            )
        )
    return tuple(alerts)

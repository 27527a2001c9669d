"""The summary at the top of a report and its rollback section, derived from the finished sections (pure)."""

from __future__ import annotations

import shlex

from gardien.release.summaries import counts_line
from gardien.report.model import ReleaseReport, RollbackHandle, Summary, TargetDeployment

ROLLBACK_DAG = "gardien_rollback"
IN_EFFECT = ("applied", "verified")  # deployment statuses that leave the release in effect on the target


def summary_for(report: ReleaseReport) -> Summary:
    r, c = report.request, report.changeset
    if c.id is None:
        what = "no changeset (nothing was extracted)"
    else:
        tables = len(c.tables)
        what = f"{c.total} row change(s) in {tables} table(s), changeset {c.id[:12]}"
    where = " → ".join(r.path[1:] if r.path_name and r.path[:1] == (r.path_name,) else r.path) or "—"
    if r.window_start or r.window_end:
        when = f"window {r.window_start} → {r.window_end}"
    else:
        when = "outside the release windows (emergency or manual)"
    latest: dict[str, TargetDeployment] = {}
    for d in report.deployments:  # the last attempt per environment is the one in force
        latest[d.environment] = TargetDeployment(d.environment, d.target_deployment_id, d.status)
    o = report.outcome
    return Summary(
        what=what,
        tables=tuple(counts_line({t.table: t.counts}) for t in c.tables),
        where=where,
        when=when,
        requested_by=r.requested_by,
        requested_at=r.created_at,
        reason=r.reason,
        approvers=tuple(a for a in report.approvals if a.decision == "approved" and not a.void),
        deployments=tuple(latest.values()),
        outcome=o.outcome if o.closed else f"not closed ({o.outcome})",
        outcome_detail=o.detail,
        ok=o.ok,
    )


def rollback_handles(report: ReleaseReport) -> tuple[RollbackHandle, ...]:
    """One handle per environment where the release is in effect (its last deployment applied or verified)."""
    latest = {d.environment: d for d in report.deployments}
    handles = []
    for env, d in latest.items():
        if d.status not in IN_EFFECT or not d.target_deployment_id:
            continue
        handles.append(
            RollbackHandle(
                environment=env,
                deployment_id=d.target_deployment_id,
                dag_id=ROLLBACK_DAG,
                params={"release": report.release_id, "environment": env, "reason": ""},
                cli=f"gardien rollback {shlex.quote(env)} {shlex.quote(d.target_deployment_id)}",
            )
        )
    return tuple(handles)

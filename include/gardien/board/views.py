"""View models of the board's pages, built from ledger values, the configuration and Airflow facts (pure)."""

from __future__ import annotations

import datetime as dt
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gardien.board.changes import TableChanges, table_changes
from gardien.board.queries import ReleaseRow
from gardien.board.settings import ROLLBACK_DAG, BoardSettings
from gardien.report.model import ReleaseReport, ValidationRun

# Deployments in these states changed a target and have not been undone (a refused rollback wrote nothing):
# the rollback action applies.
ROLLBACKABLE = frozenset({"applied", "verified", "rollback_refused"})


@dataclass(frozen=True, slots=True)
class SeatAnswer:
    """A Required Action of the release's run as Airflow holds it (the real answer time and comment)."""

    task_id: str
    subject: str
    responded_by: str | None
    responded_at: dt.datetime | None
    chosen: tuple[str, ...]
    comment: str | None
    task_state: str | None = None  # the seat task's state (None: not read)


@dataclass(frozen=True, slots=True)
class AirflowFacts:
    """What the adapter read from Airflow about the release's run (nothing when Airflow does not know it)."""

    run_state: str | None = None
    answers: tuple[SeatAnswer, ...] = ()


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in Airflow user and what the auth manager lets them do on the board."""

    user_id: str
    name: str
    can_rollback: bool
    readable_dags: frozenset[str] = frozenset()


# --- releases list ------------------------------------------------------------------------------------
def run_href(dag_id: str | None, run_id: str | None) -> str | None:
    """Airflow's own page of a run (same origin as the board)."""
    if not dag_id or not run_id:
        return None
    from urllib.parse import quote

    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def visible(rows: Sequence[ReleaseRow], viewer: Viewer) -> tuple[ReleaseRow, ...]:
    """Rows of release DAGs the viewer may read (a release without a run yet is shown to every reader)."""
    return tuple(r for r in rows if r.dag_id is None or r.dag_id in viewer.readable_dags)


# --- release page -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ApproverLine:
    approver: str
    seat: str
    decision: str
    answered_at: str
    comment: str | None
    void: bool


@dataclass(frozen=True, slots=True)
class RollbackAction:
    environment: str
    deployment_id: str | None
    cli: str


@dataclass(frozen=True, slots=True)
class ReleasePage:
    report: ReleaseReport
    row: ReleaseRow | None
    path_name: str | None
    run_href: str | None
    run_state: str | None
    approvers: tuple[ApproverLine, ...]
    pending_seats: tuple[SeatAnswer, ...]
    withdrawn_seats: tuple[SeatAnswer, ...]
    tables: tuple[TableChanges, ...]
    validations: tuple[ValidationRun, ...]
    rollback: tuple[RollbackAction, ...]
    can_rollback: bool
    review_available: bool
    summary_counts: Mapping[str, int] = field(default_factory=dict)


# A seat task in one of these states will never take an answer into account: withdrawn when another seat ended
# the release (skipped), or never asked because an earlier seat it waited for failed (upstream_failed).
WITHDRAWN_STATES = frozenset({"skipped", "upstream_failed", "removed"})


def _pending(facts: AirflowFacts) -> tuple[SeatAnswer, ...]:
    """Required Actions still waiting for an answer (none once the run is over: a timed-out seat is not)."""
    if facts.run_state not in (None, "queued", "running"):
        return ()
    return tuple(a for a in facts.answers if not a.responded_by and a.task_state not in WITHDRAWN_STATES)


def _withdrawn(facts: AirflowFacts) -> tuple[SeatAnswer, ...]:
    """Requests withdrawn unanswered: Airflow 3.3 cannot withdraw a Required Action, so its list still shows
    them (as "No Response Received"); the board says that no answer is needed."""
    return tuple(a for a in facts.answers if not a.responded_by and a.task_state in WITHDRAWN_STATES)


def groups_of(settings: BoardSettings, user: str) -> tuple[str, ...]:
    if settings.policy is None:
        return ()
    return tuple(sorted(g for g, members in settings.policy.groups.items() if user in members))


def approver_lines(
    report: ReleaseReport, answers: Sequence[SeatAnswer], settings: BoardSettings
) -> tuple[ApproverLine, ...]:
    """Each recorded decision with its seat (the Required Action answered) and the real answer time."""
    by_user = {a.responded_by: a for a in answers if a.responded_by}
    lines = []
    for a in report.approvals:
        answer = by_user.get(a.approver)
        roles = ", ".join(groups_of(settings, a.approver)) or "—"
        seat = f"{answer.task_id} · {roles}" if answer else roles
        when = answer.responded_at.astimezone(dt.UTC).isoformat() if answer and answer.responded_at else a.at
        comment = a.comment or (answer.comment if answer else None)
        lines.append(ApproverLine(a.approver, seat, a.decision, when, comment, a.void))
    recorded = {a.approver for a in report.approvals}
    for answer in answers:  # answered in Airflow, not (yet) in the ledger: a rejection, or still recording
        if answer.responded_by and answer.responded_by not in recorded:
            roles = ", ".join(groups_of(settings, answer.responded_by)) or "—"
            lines.append(
                ApproverLine(
                    answer.responded_by,
                    f"{answer.task_id} · {roles}",
                    "/".join(answer.chosen) or "answered",
                    answer.responded_at.astimezone(dt.UTC).isoformat() if answer.responded_at else "",
                    answer.comment,
                    False,
                )
            )
    return tuple(lines)


def routed_tables(settings: BoardSettings) -> dict[str, tuple[str, ...]]:
    """Group -> tables whose changes route an approval to it (the pharmacist: drugs, doses, protocols)."""
    out: dict[str, list[str]] = {}
    if settings.policy is not None:
        for rule in settings.policy.routing:
            out.setdefault(rule.require_group, []).extend(sorted(rule.tables))
    return {g: tuple(t) for g, t in out.items()}


def board_tables(report: ReleaseReport, settings: BoardSettings) -> tuple[TableChanges, ...]:
    routing = routed_tables(settings)
    return tuple(
        table_changes(
            t,
            soft_deletes=settings.soft_deletes,
            lists=settings.list_fields,
            routed_to=tuple(g for g, tables in routing.items() if t.table in tables),
        )
        for t in report.changeset.tables
    )


def review_available(report: ReleaseReport) -> bool:
    """Validation of the rehearsal passed for the changeset the release carries now."""
    current = report.changeset.id
    return current is not None and any(v.passed and v.changeset_id == current for v in report.rehearsals)


def rollback_cli(release_id: str, environment: str) -> str:
    conf = json.dumps(
        {"release": release_id, "environment": environment, "reason": "why, at least 10 characters"},
        ensure_ascii=False,
    )
    return f"airflow dags trigger {ROLLBACK_DAG} --conf {shlex.quote(conf)}"


def rollback_actions(report: ReleaseReport) -> tuple[RollbackAction, ...]:
    """One action per environment where this release's latest deployment is in effect and not rolled back."""
    rolled = {r.deployment_id for r in report.rollbacks}
    latest: dict[str, Any] = {}
    for d in report.deployments:
        latest[d.environment] = d
    return tuple(
        RollbackAction(env, d.target_deployment_id, rollback_cli(report.release_id, env))
        for env, d in latest.items()
        if d.id not in rolled and d.status in ROLLBACKABLE
    )


def release_page(
    report: ReleaseReport,
    *,
    row: ReleaseRow | None,
    settings: BoardSettings,
    facts: AirflowFacts,
    viewer: Viewer,
) -> ReleasePage:
    validations = tuple(
        sorted(report.validations, key=lambda v: (v.passed, -v.id))  # failures first, newest first
    )
    path = settings.path_of_dag(row.dag_id if row else None)
    return ReleasePage(
        report=report,
        row=row,
        path_name=path.name if path else report.request.path_name,
        run_href=run_href(row.dag_id, row.run_id) if row else None,
        run_state=facts.run_state,
        approvers=approver_lines(report, facts.answers, settings),
        pending_seats=_pending(facts),
        withdrawn_seats=_withdrawn(facts),
        tables=board_tables(report, settings),
        validations=validations,
        rollback=rollback_actions(report),
        can_rollback=viewer.can_rollback,
        review_available=review_available(report),
        summary_counts={
            kind: sum(c.get(kind, 0) for c in report.changeset.counts.values())
            for kind in ("inserts", "updates", "deletes")
        },
    )


# --- review before approval ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReviewPage:
    report: ReleaseReport
    seat: str | None
    seats: tuple[str, ...]
    mine: tuple[TableChanges, ...]
    others: tuple[TableChanges, ...]
    validation: ValidationRun | None
    pending_seats: tuple[SeatAnswer, ...]
    run_href: str | None


def review_page(
    report: ReleaseReport,
    *,
    row: ReleaseRow | None,
    settings: BoardSettings,
    facts: AirflowFacts,
    viewer: Viewer,
    seat: str | None,
) -> ReviewPage:
    """The changeset an approval binds to, the seat's own tables first (``seat`` or the viewer's group)."""
    tables = board_tables(report, settings)
    routed = sorted({g for t in tables for g in t.routed_to})
    groups = set(groups_of(settings, viewer.user_id))
    chosen = seat if seat in routed else next((g for g in routed if g in groups), None)
    mine = tuple(t for t in tables if chosen and chosen in t.routed_to)
    passed = [v for v in report.rehearsals if v.passed and v.changeset_id == report.changeset.id]
    return ReviewPage(
        report=report,
        seat=chosen,
        seats=tuple(routed),
        mine=mine,
        others=tuple(t for t in tables if t not in mine),
        validation=passed[-1] if passed else None,
        pending_seats=_pending(facts),
        run_href=run_href(row.dag_id, row.run_id) if row else None,
    )

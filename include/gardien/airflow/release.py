"""Task callables of the release DAGs: thin shells that turn Airflow context into release-service calls.

Each callable takes values (path name, release id, environment) and reads from the context only who/when/where.
Known, final failures (validation, conflict, rejection, missed window) raise AirflowFailException so Airflow
does not retry them; transient ones (database unreachable) raise normally and are retried.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Context, ExceptionRetryPolicy, RetryAction, RetryRule, get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, DownstreamTasksSkipped

from gardien.errors import (
    ApprovalError,
    ChangesetError,
    ConfigurationError,
    ConflictError,
    LedgerError,
    RollbackError,
    ValidationFailedError,
)
from gardien.release import summaries
from gardien.release.ids import is_release_id, new_release_id, release_page

log = logging.getLogger(__name__)


class ReleaseFailed(SystemExit):
    """The release ended badly: the close task fails with this one line.

    A SystemExit, because Airflow logs every exception with its traceback ("Task failed with exception"),
    while a SystemExit is logged as one line; the close's retry policy never retries it (a decided outcome).
    """


CLOSE_RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(exception=ReleaseFailed, action=RetryAction.FAIL, reason="the release's outcome is decided")
    ]
)


# Errors that retrying cannot fix.
FINAL_ERRORS = (
    ValidationFailedError,
    ConflictError,
    ChangesetError,
    ConfigurationError,
    ApprovalError,
    RollbackError,
)


def config_path() -> str:
    return os.environ.get("GARDIEN_CONFIG", "include/config/gardien.yaml")


def service(path_name: str) -> Any:
    from gardien.release.service import ReleaseService

    return ReleaseService.from_config_file(path_name, config_path())


def step_context(context: Context | None = None) -> Any:
    """Who acts (the triggering user, else the scheduler), when (now, UTC) and the Airflow ids."""
    from gardien.ledger import AirflowIds
    from gardien.release.service import StepContext

    ctx = context or get_current_context()
    dag_run = ctx["dag_run"]
    actor = getattr(dag_run, "triggering_user_name", None) or "airflow-scheduler"
    return StepContext(
        actor=str(actor),
        now=datetime.now(UTC),
        airflow=AirflowIds(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=ctx["ti"].task_id),
    )


def release_id_for(path_name: str, context: Context) -> str:
    """The run id when the release timetable made it (scheduled and triggered runs: R-<path>-…); otherwise
    (a run given an explicit id, ``dag.test()``) one derived from the run's window and run id. Stable across
    retries either way."""
    dag_run = context["dag_run"]
    if is_release_id(dag_run.run_id, path_name=path_name):
        return str(dag_run.run_id)
    start = context.get("data_interval_start") or dag_run.run_after
    return new_release_id(path_name=path_name, anchor=start, seed=str(dag_run.run_id))


def _final(exc: BaseException) -> AirflowFailException:
    return AirflowFailException(str(exc))


# --- steps -------------------------------------------------------------------------------------------
def open_release(path_name: str) -> str:
    context = get_current_context()
    conf: Mapping[str, Any] = context["dag_run"].conf or {}
    svc = service(path_name)
    ctx = step_context(context)
    release_id = release_id_for(path_name, context)
    requested_by = str(
        conf.get("requested_by")
        or getattr(context["dag_run"], "triggering_user_name", None)
        or "release-window"
    )
    reason = str(conf.get("reason") or (context.get("params") or {}).get("reason") or "").strip()
    if svc.path.emergency and len(reason) < 10:
        raise AirflowFailException(
            "an emergency release needs a reason (at least 10 characters): trigger it with conf {'reason': ...}"
        )
    reason = reason or f"release window {context.get('data_interval_start')}"
    from gardien.release import notices

    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    window = (
        "none (emergency)" if svc.path.emergency or not start else f"{start:%Y-%m-%d %H:%M} → {end:%H:%M} UTC"
    )
    log.info(
        summaries.opened(
            release_id=release_id,
            path=[svc.path.source, *("+".join(s.targets) for s in svc.path.stages)],
            requested_by=requested_by,
            window=window,
            page=release_page(release_id),
        )
    )
    log.info("Slack notifications: %s", notices.announce(svc))  # said once per run, here
    svc.open(
        release_id=release_id,
        requested_by=requested_by,
        reason=reason,
        # an emergency runs outside the windows: its (zero-width, manual) data interval is not a window
        window_start=None if svc.path.emergency else context.get("data_interval_start"),
        window_end=None if svc.path.emergency else context.get("data_interval_end"),
        ctx=ctx,
    )
    return release_id


def extract(path_name: str, release_id: str) -> dict[str, Any] | bool:
    """Capture the changeset. Returns False (short-circuit: nothing to release) when the diff is empty."""
    from gardien.release import notices

    svc = service(path_name)
    ctx = step_context()
    try:
        result = svc.extract(release_id, ctx=ctx)
    except FINAL_ERRORS as exc:
        raise _final(exc) from exc
    if result["empty"]:
        svc.set_status(release_id, "empty", ctx=ctx, reason="no pending change")
        notices.notify(svc, "release_empty", release_id=release_id)
        log.info(
            "Release %s: no pending change between %s and %s; nothing to do.",
            release_id,
            svc.path.source,
            svc.path.final_targets[0],
        )
        return False
    log.info(
        summaries.extracted(
            release_id=release_id, result=result, source=svc.path.source, target=svc.path.final_targets[0]
        )
    )
    notices.notify(
        svc,
        "release_opened",
        release_id=release_id,
        counts=result["counts"],
        changeset_id=result["changeset_id"],
    )
    return result


def validate(path_name: str, release_id: str) -> dict[str, Any]:
    from gardien.release import notices
    from gardien.release.gate import validate_release

    svc = service(path_name)
    context = get_current_context()
    conf = context["dag_run"].conf or {}
    accepted = str(
        conf.get("accept_blast_radius") or (context.get("params") or {}).get("accept_blast_radius") or ""
    )
    try:
        result = validate_release(
            svc,
            release_id,
            ctx=step_context(),
            accept_blast_radius=tuple(t.strip() for t in accepted.split(",") if t.strip()),
        )
    except ValidationFailedError as exc:
        notices.notify(svc, "validation_failed", release_id=release_id, detail=str(exc))
        raise _final(exc) from exc
    log.info(summaries.validated(release_id=release_id, result=result))
    return result


def release_facts(path_name: str) -> Any:
    """A ReleaseFacts source for the approval operator that reads the ledger (the current changeset)."""

    def source(context: Context) -> Any:
        from gardien.airflow.approval import ReleaseFacts
        from gardien.retire import retirements

        svc = service(path_name)
        release_id = context["ti"].xcom_pull(task_ids="open_release")
        changeset = svc.changeset(release_id)
        with svc.ledger() as conn:
            from gardien import ledger

            rel = ledger.get_release(conn, release_id)
        conf = context["dag_run"].conf or {}
        return ReleaseFacts(
            release=release_id,
            changeset_id=changeset.id,
            tables_touched=tuple(sorted(t for t, c in changeset.counts().items() if sum(c.values()))),
            requested_by=rel.requested_by,
            # DAG params carry the emergency flag (a constant of the emergency DAG) and the reason
            emergency=bool((context.get("params") or {}).get("emergency") or conf.get("emergency")),
            reason=conf.get("reason") or (context.get("params") or {}).get("reason") or None,
            retired=tuple(r.line() for r in retirements(changeset, svc.config.catalog)),
        )

    return source


def record_approvals(path_name: str, release_id: str, seat_task_ids: list[str]) -> list[str]:
    """Write each answered seat into the ledger, then mark the release approved."""
    from gardien.release import notices

    context = get_current_context()
    svc = service(path_name)
    ctx = step_context(context)
    answers = record_seat_approvals(svc, release_id, seat_task_ids, context=context, ctx=ctx)
    approvers = [a["by"] for a in answers]
    svc.set_status(release_id, "approved", ctx=ctx, reason=f"approved by {', '.join(approvers)}")
    log.info(summaries.approved(release_id=release_id, answers=answers))
    notices.notify(svc, "approved", release_id=release_id, approvers=approvers)
    return approvers


def as_datetime(value: Any) -> datetime | None:
    from gardien.airflow.answer_recorder import as_datetime as parse

    return parse(value)


def record_seat_approvals(
    svc: Any, release_id: str, seat_task_ids: list[str], *, context: Context, ctx: Any
) -> list[dict[str, str]]:
    """Record in the ledger each approval a seat accepted (once: retries and ``close`` call it again).

    Each record carries when the person answered (Airflow's response time), the seat and its role. ``close``
    calls it too, so a release that fails after some seats approved still lists the approvals given.
    Returns ``{"by", "role"}`` per approval given.
    """
    from gardien import ledger

    with svc.ledger() as conn:
        recorded = {(a.approver, a.changeset_id) for a in ledger.release_history(conn, release_id).approvals}
    approvers = []
    answers = []
    for task_id in seat_task_ids:
        answer = context["ti"].xcom_pull(task_ids=task_id)
        if not isinstance(answer, Mapping) or not answer.get("approved"):
            continue
        user = answer["responded_by_user"]["id"]
        if user in approvers:  # seats wait side by side: two answers by one person at the same instant
            raise AirflowFailException(
                f"release {release_id}: {user} answered two approval seats; one person fills one seat. "
                "Trigger the release again."
            )
        approvers.append(user)
        answers.append({"by": user, "role": task_id.removeprefix("approve_")})
        if (user, answer["changeset_id"]) in recorded:  # a retry: already in the ledger
            continue
        svc.record_approval(
            release_id,
            approver=user,
            decision="approved",
            changeset_id=answer["changeset_id"],
            comment=str((answer.get("params_input") or {}).get("reason") or "").strip() or None,
            ctx=ctx,
            answered_at=as_datetime(answer.get("responded_at")),
            seat=answer.get("seat"),
            role=answer.get("role"),
        )
    return answers


def withdraw_approvals(seat_task_ids: list[str]) -> None:
    """One seat refused (or failed): withdraw the Required Actions still waiting, so the run ends now rather
    than when the last approver answers or the approval deadline passes. Skips itself when the seats never
    asked (the release stopped before its approvals)."""
    context = get_current_context()
    if context["ti"].xcom_pull(task_ids="validate") is None:
        raise AirflowSkipException(
            "the approvals never started (validation did not pass): nothing to withdraw"
        )
    log.info("An approval seat ended the release: withdrawing the approvals still waiting.")
    # Airflow skips only the seats not yet finished (a seat already answered keeps its state).
    raise DownstreamTasksSkipped(tasks=list(seat_task_ids))


def check_window(path_name: str, release_id: str) -> dict[str, str]:
    """A deployment never starts outside its window, nor so late it cannot finish before the window closes."""
    context = get_current_context()
    svc = service(path_name)
    ctx = step_context(context)
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    needed = svc.path.required_window_minutes  # min_window_minutes + the stages' bake periods
    margin = timedelta(minutes=needed)
    if start is None or end is None or end <= start:
        raise AirflowFailException(
            f"release {release_id}: the run has no release window (data interval): trigger it with a logical "
            "date (the timetable then gives it the window containing that date), or wait for a scheduled window."
        )
    if ctx.now < start:
        raise AirflowFailException(
            f"release {release_id}: window opens at {start}; refusing to deploy earlier."
        )
    if ctx.now + margin > end:
        svc.set_status(
            release_id,
            "missed_window",
            ctx=ctx,
            reason=f"approved too late: window closes at {end}, {margin} needed",
        )
        raise AirflowFailException(
            f"release {release_id}: MISSED WINDOW — it is {ctx.now:%H:%M}Z, the window closes at {end:%H:%M}Z and a "
            f"deployment needs {needed:g} min (margin {svc.path.min_window_minutes} min + bake periods); "
            "changes stay pending for the next window."
        )
    return {"window_start": str(start), "window_end": str(end)}


def deploy(path_name: str, release_id: str, environment: str) -> dict[str, Any]:
    from gardien.release import notices, stages

    svc = service(path_name)
    try:
        result = stages.deploy(svc, release_id, environment, ctx=step_context())
    except FINAL_ERRORS as exc:
        notices.notify(
            svc, "deployment_failed", release_id=release_id, environment=environment, detail=str(exc)
        )
        raise _final(exc) from exc
    log.info(summaries.deployed(release_id=release_id, environment=environment, result=result))
    notices.notify(svc, "stage_deployed", release_id=release_id, environment=environment, result=result)
    return result


def verify(path_name: str, release_id: str, environment: str) -> dict[str, Any]:
    from gardien.release import notices, stages

    svc = service(path_name)
    try:
        result = stages.verify(svc, release_id, environment, ctx=step_context())
    except ValidationFailedError as exc:
        notices.notify(
            svc, "verification_failed", release_id=release_id, environment=environment, detail=str(exc)
        )
        raise _final(exc) from exc
    log.info(summaries.verified(release_id=release_id, environment=environment, result=result))
    notices.notify(svc, "stage_verified", release_id=release_id, environment=environment, result=result)
    return result


def rollback_failed(path_name: str, release_id: str) -> dict[str, Any]:
    """After a failure: roll back what the path's policies say (see ``rollback_plan``), proving each restore."""
    from gardien import ledger
    from gardien.release import notices, stages

    svc = service(path_name)
    ctx = step_context()
    with svc.ledger() as conn:
        history = ledger.release_history(conn, release_id)
    targets = stages.rollback_plan(svc.path, history)
    if not targets:
        raise AirflowSkipException(f"release {release_id}: no target failed; nothing to roll back")
    results: dict[str, Any] = {}
    unproven: list[str] = []
    refused: list[str] = []  # nothing written: the deployment is still in effect there
    for env in targets:
        reason = f"automatic rollback after a failed stage of release {release_id}"
        try:
            results[env] = stages.rollback(svc, release_id, env, reason=reason, ctx=ctx)
            notices.notify(
                svc, "rollback", release_id=release_id, environment=env, proven=True, reason=reason
            )
        except RollbackError as exc:
            (refused if exc.refused else unproven).append(env)
            results[env] = {"status": "refused" if exc.refused else "unproven", "error": str(exc)}
            notices.notify(
                svc,
                "rollback",
                release_id=release_id,
                environment=env,
                proven=False,
                refused=exc.refused,
                reason=str(exc),
            )
    said = []
    if unproven:
        said.append(f"rollback could not be proven on {', '.join(unproven)}: MANUAL REPAIR NEEDED")
    if refused:
        said.append(f"rollback refused on {', '.join(refused)}, nothing written: STILL DEPLOYED")
    if said:
        raise AirflowFailException("; ".join(said))
    return {"rolled_back": list(results), "results": results}


def close(path_name: str, release_id: str | None, seat_task_ids: list[str]) -> dict[str, Any]:
    """Decide and record the outcome; fail the run unless production is as intended."""
    from gardien.release import notices
    from gardien.release.outcome import close as close_release

    context = get_current_context()
    if not release_id:
        raise ReleaseFailed("the release could not be opened (see open_release's log)")
    svc = service(path_name)
    ctx = step_context(context)
    hint = None
    extracted = context["ti"].xcom_pull(task_ids="extract")
    if extracted is False:
        hint = "empty"
    if hint != "empty":
        try:  # approvals given before the release failed (a later seat rejected, ...) belong in its record
            record_seat_approvals(svc, release_id, seat_task_ids, context=context, ctx=ctx)
        except (LedgerError, ApprovalError, AirflowFailException) as exc:
            log.warning("release %s: approvals given could not all be recorded: %s", release_id, exc)
    for task_id in seat_task_ids:
        rejection = context["ti"].xcom_pull(task_ids=task_id, key="rejection")
        if isinstance(rejection, Mapping):
            from gardien import ledger

            with svc.ledger() as conn:  # a retried close must not record the rejection twice
                events = ledger.list_events(conn, release_id=release_id)
            hint = "rejected"
            if any(e.kind == "approval.rejected" for e in events):
                break
            svc.set_status(release_id, "rejected", ctx=ctx, reason=str(rejection.get("reason")))
            svc.event(
                release_id,
                "approval.rejected",
                ctx=ctx,
                payload=dict(rejection),
                reason=str(rejection.get("reason")),
            )
            if rejection.get("by") and rejection.get("changeset_id") and not rejection.get("refused"):
                # A person decided: the decision goes beside the approvals (a timeout, or an Approve the
                # seat refused, stays an event only: nobody chose Reject).
                try:
                    svc.record_approval(
                        release_id,
                        approver=str(rejection["by"]),
                        decision="rejected",
                        changeset_id=str(rejection["changeset_id"]),
                        comment=str(rejection.get("reason") or "") or None,
                        ctx=ctx,
                        answered_at=as_datetime(rejection.get("responded_at")),
                        seat=rejection.get("seat"),
                        role=rejection.get("role"),
                    )
                except (LedgerError, ApprovalError) as exc:  # e.g. the changeset changed meanwhile
                    log.warning("release %s: rejection not recorded as a decision: %s", release_id, exc)
            notices.notify(
                svc, "rejected", release_id=release_id, by=rejection.get("by"), reason=rejection.get("reason")
            )
            break
    outcome = close_release(svc, release_id, ctx=ctx, hint=hint)
    report = None
    try:
        from gardien.report import write_report

        report = str(write_report(svc, release_id))
    except Exception:  # the outcome is recorded; a report failure must not change it (gardien report retries)
        log.exception(
            "release %s: the report could not be written; run `gardien report %s`", release_id, release_id
        )
    note = f"{outcome.note()}\n\n[Release page]({release_page(release_id)})"
    context["ti"].xcom_push(key="note", value=note)
    notices.notify(svc, "release_closed", release_id=release_id, outcome=outcome.to_dict(), report=report)
    line = f"Release {release_id}: {outcome.outcome.upper().replace('_', ' ')} — {outcome.detail}"
    if not outcome.ok:
        log.error("%s. Release page: %s", line, release_page(release_id))
        raise ReleaseFailed(line)
    log.info("%s. Release page: %s; report: %s", line, release_page(release_id), report)
    return {**outcome.to_dict(), "report": report}

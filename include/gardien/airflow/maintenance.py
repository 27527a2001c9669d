"""Task callables of the maintenance DAGs: the manual rollback (gardien_rollback) and the drift watch.

Thin shells like gardien.airflow.release: they read params and who/when from the Airflow context and call
the core (gardien.release.manual_rollback, gardien.release.drift_watch) with values. Refusals and decisions
raise AirflowFailException (never retried); unreachable databases raise normally and are retried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import Context, get_current_context
from airflow.sdk.exceptions import AirflowFailException

from gardien.airflow.release import FINAL_ERRORS, config_path, step_context
from gardien.errors import EnvironmentUnavailableError, LedgerError

log = logging.getLogger(__name__)


def rollback_seats(config_file: str | Path) -> int:
    """Parse time: the most approval seats any environment can need (unneeded seats pass at run time)."""
    import yaml

    from gardien.airflow.dagspec import max_seats

    data = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    envs = list(data.get("environments") or {}) or ["prod"]
    return max(max_seats(data.get("approvals"), env, emergency=False) for env in envs)


def _params(context: Context) -> dict[str, Any]:
    return dict(context.get("params") or {})


def _requester(context: Context) -> str:
    return str(getattr(context["dag_run"], "triggering_user_name", None) or "airflow")


# --- manual rollback -----------------------------------------------------------------------------------
def check_rollback_request() -> dict[str, Any]:
    """Check the params against the configuration and the ledger; refuse clearly (and record why)."""
    from gardien.config import load_config
    from gardien.release.manual_rollback import check_request

    context = get_current_context()
    p = _params(context)
    release_id, environment = str(p.get("release") or "").strip(), str(p.get("environment") or "").strip()
    if not release_id or not environment:
        raise AirflowFailException(
            "give both params: release (a release id) and environment (where to roll back)"
        )
    try:
        request = check_request(  # reconciles the release's targets first (an unrecorded deployment is found)
            load_config(config_path()),
            release_id,
            environment,
            force=bool(p.get("force")),
            ctx=step_context(context),
        )
    except FINAL_ERRORS + (LedgerError,) as exc:
        context["ti"].xcom_push(key="refusal", value=str(exc))
        _event(release_id, "rollback.refused", context, reason=str(exc), environment=environment)
        raise AirflowFailException(f"rollback refused: {exc}") from exc
    _event(
        release_id,
        "rollback.requested",
        context,
        reason=str(p.get("reason")),
        environment=environment,
        requested_by=_requester(context),
        force=bool(p.get("force")),
        overlapping=list(request.overlapping),
    )
    return {**request.to_dict(), "requested_by": _requester(context)}


def _event(release_id: str, kind: str, context: Context, *, reason: str, **payload: Any) -> None:
    """Append a rollback event to the release's history, once per run (task retries re-enter here)."""
    from gardien import ledger, pg
    from gardien.config import ledger_dsn, load_config

    ctx = step_context(context)
    conn = pg.connect(ledger_dsn(load_config(config_path())), application_name="gardien rollback")
    try:
        ledger.require_schema(conn)
        try:
            history = ledger.release_history(conn, release_id)
        except LedgerError:  # an unknown release: nothing to attach the event to (the task log says why)
            log.warning("release %s is unknown to the ledger: %s not recorded", release_id, kind)
            return
        if not any(e.kind == kind and e.airflow.run_id == ctx.airflow.run_id for e in history.events):
            ledger.append_event(
                conn,
                kind=kind,
                actor=ctx.actor,
                at=ctx.now,
                release_id=release_id,
                subject=payload.get("environment"),
                payload=payload,
                reason=reason,
                airflow=ctx.airflow,
            )
        conn.commit()
    finally:
        conn.rollback()  # no-op after a commit; undoes a half-written append on error
        conn.close()


def rollback_facts() -> Any:
    """The approval's ReleaseFacts: the checked request, the triggering user as requester, the reason."""

    def source(context: Context) -> Any:
        from gardien.airflow.approval import ReleaseFacts

        checked = context["ti"].xcom_pull(task_ids="check_request")
        p = _params(context)
        forced = f" — FORCED over {', '.join(checked['overlapping'])}" if checked.get("overlapping") else ""
        return ReleaseFacts(
            release=checked["release_id"],
            changeset_id=checked["changeset_id"],
            tables_touched=tuple(checked["tables_touched"]),
            requested_by=checked["requested_by"],
            emergency=False,
            reason=f"ROLLBACK of {checked['release_id']} on {checked['environment']}{forced}: {p.get('reason')}",
        )

    return source


def record_rollback_approvals(checked: Mapping[str, Any], seat_task_ids: list[str]) -> list[str]:
    context = get_current_context()
    approvers = []
    for task_id in seat_task_ids:
        answer = context["ti"].xcom_pull(task_ids=task_id)
        if isinstance(answer, Mapping) and answer.get("approved"):
            approvers.append(answer["responded_by_user"]["id"])
    _event(
        checked["release_id"],
        "rollback.approved",
        context,
        reason=f"rollback on {checked['environment']} approved by {', '.join(approvers)}",
        environment=checked["environment"],
        changeset_id=checked["changeset_id"],
        approvers=approvers,
    )
    return approvers


def manual_rollback(checked: Mapping[str, Any]) -> dict[str, Any]:
    """Roll back with the engine's proof; unproven → MANUAL REPAIR NEEDED, overwritten meanwhile → refused."""
    from gardien.errors import RollbackError
    from gardien.release import notices
    from gardien.release.manual_rollback import RollbackRequest, perform
    from gardien.release.service import ReleaseService

    context = get_current_context()
    p = _params(context)
    request = RollbackRequest.from_dict({k: checked[k] for k in checked if k != "requested_by"})
    svc = ReleaseService.from_config_file(request.path_name, config_path())
    reason = f"manual rollback requested by {checked['requested_by']}: {p.get('reason')}"
    try:
        result = perform(svc, request, reason=reason, ctx=step_context(context), force=bool(p.get("force")))
    except RollbackError as exc:
        context["ti"].xcom_push(key="failure", value=str(exc))
        unproven = "manual repair" in str(exc).lower()
        if unproven:
            notices.notify(
                svc,
                "rollback",
                release_id=request.release_id,
                environment=request.environment,
                proven=False,
                reason=str(exc),
            )
        raise AirflowFailException(
            f"{'MANUAL REPAIR NEEDED: ' if unproven else 'rollback refused: '}{exc}"
        ) from exc
    notices.notify(
        svc,
        "rollback",
        release_id=request.release_id,
        environment=request.environment,
        proven=True,
        reason=reason,
    )
    return result


def close_rollback(seat_task_ids: list[str]) -> str:
    """The run note (release · changeset · ROLLBACK outcome); fail the run unless restoration was proven."""
    context = get_current_context()
    ti, p = context["ti"], _params(context)
    checked = ti.xcom_pull(task_ids="check_request") or {}
    head = f"{p.get('release')} · changeset {str(checked.get('changeset_id') or '-')[:12]} · ROLLBACK on {p.get('environment')}"
    result = ti.xcom_pull(task_ids="rollback")
    ok = False
    if not checked:
        outcome = (
            f"REFUSED — {ti.xcom_pull(task_ids='check_request', key='refusal') or 'see check_request log'}"
        )
    elif isinstance(result, Mapping) and result.get("proven"):
        ok = True
        outcome = (
            f"ROLLED BACK — restoration proven (fingerprint {str(result.get('fingerprint_restored'))[:12]})"
        )
    elif rejection := next(
        (r for t in seat_task_ids if isinstance(r := ti.xcom_pull(task_ids=t, key="rejection"), Mapping)),
        None,
    ):
        outcome = f"REJECTED by {rejection.get('by') or 'timeout'} — {rejection.get('reason')}"
        _event(
            checked["release_id"],
            "rollback.rejected",
            context,
            reason=str(rejection.get("reason")),
            environment=checked["environment"],
            by=rejection.get("by"),
            seat=rejection.get("seat"),
        )
    elif failure := ti.xcom_pull(task_ids="rollback", key="failure"):
        label = "MANUAL REPAIR NEEDED" if "manual repair" in failure.lower() else "REFUSED"
        outcome = f"{label} — {failure}"
    else:
        outcome = "FAILED — see the task logs"
    note = f"{head} · {outcome}"[:1000]
    ti.xcom_push(key="note", value=note)
    if not ok:
        raise AirflowFailException(note)
    return note


# --- drift watch ---------------------------------------------------------------------------------------
def production_targets() -> list[str]:
    """The environments marked ``production: true``, read at run time (the DAG file never reads them)."""
    from gardien.config import load_config

    config = load_config(config_path())
    targets = sorted(name for name, env in config.environments.items() if env.production)
    if not targets:
        log.warning("no environment is marked production: true in %s; nothing to watch", config_path())
    return targets


def watch_target(environment: str) -> dict[str, Any]:
    """One environment: compare with the last released state; record and notify a new drift."""
    from gardien.config import load_config
    from gardien.release import notices
    from gardien.release.drift_watch import watch

    context = get_current_context()
    p = _params(context)
    rebaseline = bool(p.get("rebaseline"))
    reason = str(p.get("reason") or "").strip()
    if rebaseline and len(reason) < 10:
        raise AirflowFailException(
            "rebaseline=true accepts the current state as released: give a reason (≥ 10 characters)"
        )
    config = load_config(config_path())
    ctx = step_context(context)
    actor = ctx.actor if rebaseline else "gardien-drift-watch"
    try:
        result = watch(
            config,
            environment,
            actor=actor,
            now=datetime.now(UTC),
            airflow=ctx.airflow,
            max_rows=int(p.get("max_rows") or 20),
            rebaseline_reason=reason if rebaseline else None,
        )
    except FINAL_ERRORS + (LedgerError,) as exc:
        context["ti"].xcom_push(key="error", value=str(exc))
        raise AirflowFailException(f"drift watch of {environment}: {exc}") from exc
    except EnvironmentUnavailableError as exc:
        context["ti"].xcom_push(key="error", value=str(exc))  # for the run note if every retry fails
        raise
    log.info("%s", result.detail)
    notices.announce_watch(config, result)  # unrecorded journal rows (alerts) and a new drift, on Slack
    # The rows themselves stay in the ledger (drift.detected); XCom carries the verdict only.
    return {k: v for k, v in result.to_dict().items() if k != "report"}


def close_drift_watch() -> str:
    """The run note; the run fails on drift (an unauthorised edit must stand out) or an unchecked target."""
    context = get_current_context()
    ti = context["ti"]
    targets = ti.xcom_pull(task_ids="production_targets") or []
    lines, ok = [], True
    for i, env in enumerate(targets):
        result = ti.xcom_pull(task_ids="watch", map_indexes=i)
        if not isinstance(result, Mapping):
            ok = False
            error = ti.xcom_pull(task_ids="watch", map_indexes=i, key="error")
            lines.append(f"{env}: NOT CHECKED — {error or 'see the watch task log'}")
            continue
        ok = ok and not result["drifted"]
        lines.append(
            result["detail"] if result["drifted"] else f"{env}: {result['status'].replace('_', ' ')}"
        )
    note = ("drift watch · " + " · ".join(lines or ["no production environment configured"]))[:1000]
    ti.xcom_push(key="note", value=note)
    if not ok:
        raise AirflowFailException(note)
    return note

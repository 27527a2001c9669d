"""Deploy, verify and roll back one environment of a release (sqitch's deploy / verify / revert)."""

from __future__ import annotations

import uuid
from typing import Any

from gardien import ledger
from gardien.errors import ConflictError, GardienError, LedgerError, RollbackError
from gardien.release.paths import ReleasePath
from gardien.release.reconcile import APPLY_INTENT, ROLLBACK_INTENT, apply_recorded, reconcile_environment
from gardien.release.service import ReleaseService, StepContext

# Deployment statuses whose changes are in effect on the target (a refused rollback wrote nothing).
STILL_DEPLOYED = ("applied", "verified", "rollback_refused")


def _last_deployment(conn: Any, release_id: str, environment: str) -> ledger.DeploymentRecord | None:
    history = ledger.release_history(conn, release_id)
    mine = [d for d in history.deployments if d.environment == environment]
    return mine[-1] if mine else None


def deploy(svc: ReleaseService, release_id: str, environment: str, *, ctx: StepContext) -> dict[str, Any]:
    """Apply the release's changeset to ``environment``: locked, three-way checked, atomic, journaled.

    Idempotent: the target's journal makes a re-apply of the same changeset a no-op, and the ledger keeps
    one deployment record per (release, environment) attempt. Raises ConflictError / DeploymentError /
    SourceDataError with nothing applied.
    """
    from gardien.apply import deploy as apply_deploy

    changeset = svc.changeset(release_id)
    # A previous attempt may have committed on the target and died before recording it: record it first.
    reconcile_environment(svc.config, environment, ctx=ctx)
    target_deployment_id = f"dep-{uuid.uuid4().hex[:16]}"
    with svc.ledger() as conn:
        done = _last_deployment(conn, release_id, environment)
        if (
            done is not None
            and done.changeset_id == changeset.id
            and done.target_deployment_id is not None
            and done.status in ("applied", "verified")
        ):
            return _recorded_summary(done, environment)
        rel = ledger.get_release(conn, release_id)
        if rel.status not in ("deploying", "deployed"):
            ledger.set_release_status(
                conn,
                release_id=release_id,
                status="deploying",
                actor=ctx.actor,
                at=ctx.now,
                airflow=ctx.airflow,
            )
        # The intent, committed before the target is touched: the journal row will carry this id, so a
        # commit the ledger never hears about is found and recorded by the next reconciliation.
        ledger.append_event(
            conn,
            kind=APPLY_INTENT,
            actor=ctx.actor,
            at=ctx.now,
            release_id=release_id,
            subject=changeset.id,
            payload={
                "environment": environment,
                "target_deployment_id": target_deployment_id,
                "changeset_id": changeset.id,
                "entry_point": "release",
            },
            airflow=ctx.airflow,
        )
    try:
        result = apply_deploy(
            svc.dsn(environment),
            changeset,
            catalog_config=svc.config.catalog,
            target=environment,
            applied_at=ctx.now,
            deployment_id=target_deployment_id,
            release_id=release_id,
            release_label=f"{svc.path.name}:{release_id}",
            requested_by=rel.requested_by,
        )
    except ConflictError as exc:
        svc.event(
            release_id,
            "deployment.conflict",
            ctx=ctx,
            subject=environment,
            payload={"environment": environment, "changeset_id": changeset.id},
            reason=str(exc)[:2000],
        )
        raise
    except GardienError as exc:
        svc.event(
            release_id,
            "deployment.failed",
            ctx=ctx,
            subject=environment,
            payload={"environment": environment, "changeset_id": changeset.id},
            reason=str(exc)[:2000],
        )
        raise
    with svc.ledger() as conn:
        ledger.lock_ledger(conn)
        if result.deployment_id and apply_recorded(conn, environment, result.deployment_id):
            # A reconciler (drift watch, audit reconcile) recorded it while this step was between commit and
            # record: one record per journal row.
            done = _last_deployment(conn, release_id, environment)
            if done is not None and done.target_deployment_id == result.deployment_id:
                return _recorded_summary(done, environment)
        record = record_applied(
            conn,
            release_id=release_id,
            environment=environment,
            changeset_id=changeset.id,
            result=result,
            actor=ctx.actor,
            at=ctx.now,
            airflow=ctx.airflow,
        )
    out = result.to_dict()
    out.pop("crosswalk", None)
    out["ledger_deployment_id"] = record.id
    svc.write_json(release_id, f"deployment-{environment}.json", result.to_dict())
    return out


def record_applied(
    conn: Any,
    *,
    release_id: str,
    environment: str,
    changeset_id: str,
    result: Any,
    actor: str,
    at: Any,
    airflow: Any = None,
    extra: dict[str, Any] | None = None,
) -> ledger.DeploymentRecord:
    """Record an applied deployment (``result``: the engine's ApplyResult) and its id crosswalk, in the
    caller's transaction; ``extra`` joins the recorded fingerprints (e.g. who applied it from the CLI)."""
    record = ledger.record_deployment(
        conn,
        release_id=release_id,
        environment=environment,
        changeset_id=changeset_id,
        status="applied",
        actor=actor,
        at=at,
        target_deployment_id=result.deployment_id,
        fingerprints={
            "before": result.fingerprint_before,
            "after": result.fingerprint_after,
            "matches_source": result.matches_source,
            "apply_status": result.status,
            **(extra or {}),
        },
        airflow=airflow,
    )
    for table, entries in result.crosswalk.items():
        if entries:
            ledger.record_crosswalk(
                conn,
                deployment_id=record.id,
                table=table,
                entries=entries,
                actor=actor,
                at=at,
                airflow=airflow,
            )
    return record


def _recorded_summary(done: ledger.DeploymentRecord, environment: str) -> dict[str, Any]:
    """What a retried deploy returns when the ledger already records this changeset applied here."""
    fp = dict(done.fingerprints or {})
    return {
        "status": "already_applied",
        "changeset_id": done.changeset_id,
        "target": environment,
        "deployment_id": done.target_deployment_id,
        "counts": {},
        "drift": [],
        "fingerprint_before": fp.get("before"),
        "fingerprint_after": fp.get("after"),
        "matches_source": fp.get("matches_source"),
        "ledger_deployment_id": done.id,
    }


def verify(svc: ReleaseService, release_id: str, environment: str, *, ctx: StepContext) -> dict[str, Any]:
    """Verify the deployed target: suites + smoke probes + the touched scope equals the source's capture.

    Raises ValidationFailedError (verification failed) — the DAG's rollback step then runs.
    """
    from gardien.release.gate import verify_environment

    report = verify_environment(svc, release_id, environment, ctx=ctx)
    with svc.ledger() as conn:
        dep = _last_deployment(conn, release_id, environment)
        if dep is not None and dep.status == "applied":
            ledger.set_deployment_status(
                conn,
                deployment_id=dep.id,
                status="verified",
                actor=ctx.actor,
                at=ctx.now,
                airflow=ctx.airflow,
            )
    return report


def rollback(
    svc: ReleaseService,
    release_id: str,
    environment: str,
    *,
    reason: str,
    ctx: StepContext,
    force: bool = False,
    keep_later_edits: bool = False,
) -> dict[str, Any]:
    """Roll back this release's deployment on ``environment`` and record the proof.

    Nothing deployed (e.g. a conflict aborted the apply) → ``{"status": "nothing_to_roll_back"}``.
    ``keep_later_edits`` keeps later production edits that do not overlap the deployment's own changes
    (gardien.rollback); the choice is in the recorded intent, what was kept in the rollback's record.
    Raises RollbackError: refused with nothing written (a later edit, a later deployment, a lost connection
    before COMMIT...) → ``rollback_refused``, the deployment still in effect; a failed proof or an outcome in
    doubt → ``rollback_unproven`` ("manual repair needed").
    """
    from gardien.rollback import rollback as engine_rollback

    # An apply committed on the target but never recorded must not make this "nothing to roll back".
    reconcile_environment(svc.config, environment, ctx=ctx)
    with svc.ledger() as conn:
        dep = _last_deployment(conn, release_id, environment)
    if dep is None or dep.target_deployment_id is None:
        return {"status": "nothing_to_roll_back", "environment": environment}
    if dep.status == "rolled_back":
        return {"status": "already_rolled_back", "environment": environment, "proven": True}
    svc.event(
        release_id,
        ROLLBACK_INTENT,
        ctx=ctx,
        subject=dep.changeset_id,
        payload={
            "environment": environment,
            "target_deployment_id": dep.target_deployment_id,
            "ledger_deployment_id": dep.id,
            "entry_point": "release",
            "force": force,
            "keep_later_edits": keep_later_edits,
        },
        reason=reason,
    )
    try:
        result = engine_rollback(
            svc.dsn(environment),
            dep.target_deployment_id,
            catalog_config=svc.config.catalog,
            target=environment,
            rolled_back_at=ctx.now,
            force=force,
            keep_later_edits=keep_later_edits,
        )
    except RollbackError as exc:
        if exc.refused:  # nothing written: the deployment is still in effect, no repair implied
            with svc.ledger() as conn:
                ledger.record_rollback_refused(
                    conn,
                    deployment_id=dep.id,
                    reason=f"{reason} — {str(exc)[:1500]}",
                    later_edits=exc.later_edits,
                    keep_later_edits=keep_later_edits,
                    actor=ctx.actor,
                    at=ctx.now,
                    airflow=ctx.airflow,
                    extra={"entry_point": "release"},
                )
            raise
        with svc.ledger() as conn:
            ledger.record_rollback(
                conn,
                deployment_id=dep.id,
                proven=False,
                fingerprints={},
                reason=f"{reason} — {str(exc)[:1500]}",
                actor=ctx.actor,
                at=ctx.now,
                airflow=ctx.airflow,
            )
            ledger.set_deployment_status(
                conn,
                deployment_id=dep.id,
                status="rollback_unproven",
                actor=ctx.actor,
                at=ctx.now,
                reason=str(exc)[:500],
                airflow=ctx.airflow,
            )
        raise
    with svc.ledger() as conn:
        # Under the ledger lock: a reconciler may have recorded this very rollback while this step was between
        # the target's commit and here; one record per rollback.
        if ledger.get_deployment(conn, dep.id, for_update=True).status != "rolled_back":
            ledger.record_rollback(
                conn,
                deployment_id=dep.id,
                proven=result.proven,
                fingerprints={
                    "expected": result.fingerprint_expected,
                    "restored": result.fingerprint_restored,
                    "kept_later_edits": list(result.kept_later_edits),
                },
                reason=reason,
                actor=ctx.actor,
                at=ctx.now,
                airflow=ctx.airflow,
            )
            ledger.set_deployment_status(
                conn,
                deployment_id=dep.id,
                status="rolled_back" if result.proven else "rollback_unproven",
                actor=ctx.actor,
                at=ctx.now,
                reason=reason,
                airflow=ctx.airflow,
            )
    out = result.to_dict()
    svc.write_json(release_id, f"rollback-{environment}.json", out)
    if not result.proven:
        raise RollbackError(
            f"rollback of {environment} for release {release_id} could not be proven: manual repair needed "
            f"(expected fingerprint {result.fingerprint_expected[:12]}, got {result.fingerprint_restored[:12]}).",
            changed=True,
            proof_failed=True,
        )
    return out


def rollback_plan(path: ReleasePath, history: ledger.ReleaseHistory) -> list[str]:
    """Which environments to roll back after a failure, in reverse deployment order.

    A target failed when its deployment is applied but not verified, when a probe of its bake period failed,
    or when its apply was refused (conflict or database error: nothing applied there). Within the failed
    stage, ``multi_target_policy`` says whether only the failed targets or every deployed target of the stage
    is reverted; ``rollback: all`` also reverts every earlier stage (sqitch's revert modes). No failed target (rejection, validation, missed window) → nothing.
    """
    latest: dict[str, ledger.DeploymentRecord] = {}
    for d in history.deployments:
        latest[d.environment] = d
    refused = {e.subject for e in history.events if e.kind in ("deployment.conflict", "deployment.failed")}
    baked_bad = {e.subject for e in history.events if e.kind == "bake.failed"}
    failed = (
        {env for env, d in latest.items() if d.status == "applied"}
        | (refused - set(latest))
        | {env for env in baked_bad if env in latest and latest[env].status in ("applied", "verified")}
    )
    if not failed:
        return []
    stage_index = min(i for i, s in enumerate(path.stages) if failed & set(s.targets))
    deployed = {env for env, d in latest.items() if d.status in STILL_DEPLOYED}
    chosen: set[str] = set()
    stage = path.stages[stage_index]
    if path.multi_target_policy == "whole_stage":
        chosen |= deployed & set(stage.targets)
    else:
        chosen |= deployed & failed
    if path.rollback == "all":
        for earlier in path.stages[:stage_index]:
            chosen |= deployed & set(earlier.targets)
    return [env for env in reversed(path.all_targets) if env in chosen]


def deployed_environments(svc: ReleaseService, release_id: str) -> list[str]:
    """Environments where this release is currently applied (not rolled back), in deployment order."""
    with svc.ledger() as conn:
        try:
            history = ledger.release_history(conn, release_id)
        except LedgerError:
            return []
    return deployed_in(history)


def deployed_in(history: ledger.ReleaseHistory) -> list[str]:
    """``deployed_environments`` of an already-read history."""
    latest: dict[str, ledger.DeploymentRecord] = {}
    for d in history.deployments:
        latest[d.environment] = d
    return [env for env, d in latest.items() if d.status in STILL_DEPLOYED]

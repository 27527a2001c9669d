"""The bake period after a stage: probe the deployed targets again and again before going further.

A verification proves the state right after the apply; a bake catches what shows up minutes later — a
direct edit racing the release, a smoke probe that depends on activity. Each probe runs the configured smoke
probes (read-only) and checks that the touched scope's fingerprint still equals the rehearsal's. A failed probe
is recorded (validation ``bake:<env>`` failed, event ``bake.failed``) so the release's rollback treats the
target as failed; a full bake is recorded as a passed ``bake:<env>`` validation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gardien import ledger, pg
from gardien.errors import ValidationFailedError
from gardien.release.gate import current_fingerprint, rehearsal_expectation
from gardien.release.service import ReleaseService, StepContext


def start(
    svc: ReleaseService,
    release_id: str,
    stage: str,
    environments: list[str],
    *,
    ctx: StepContext,
    minutes: float,
    every_seconds: int,
) -> datetime:
    """Record that the bake of ``stage`` starts now (event ``bake.started``); returns its start time.

    The start lives in the ledger, not only in the deferred task's kwargs: a resumed task reads it back
    from here, so a retry or a runner that loses the kwargs never resets the bake's clock silently.
    """
    svc.event(
        release_id,
        "bake.started",
        ctx=ctx,
        subject=stage,
        payload={
            "stage": stage,
            "environments": environments,
            "started": ctx.now.isoformat(),
            "minutes": minutes,
            "probe_every_seconds": every_seconds,
        },
    )
    return ctx.now


def started_at(history: ledger.ReleaseHistory, stage: str) -> datetime | None:
    """When the latest bake of ``stage`` started (None: it never started)."""
    for event in reversed(history.events):
        if event.kind == "bake.started" and event.subject == stage:
            return datetime.fromisoformat(event.payload["started"])
    return None


def probe(
    svc: ReleaseService,
    history: ledger.ReleaseHistory,
    environment: str,
    *,
    ctx: StepContext,
    round_no: int,
) -> dict[str, Any]:
    """One probe of ``environment``. Raises ValidationFailedError (after recording it) when it fails."""
    from gardien.validation import parse_probes
    from gardien.validation.probes import run_probes

    probes = parse_probes(svc.config.smoke_probes)
    conn = pg.connect(svc.dsn(environment), application_name="gardien bake")
    try:
        results = run_probes(conn, probes)
    finally:
        conn.close()
    release_id = history.release.id
    expected, tables = rehearsal_expectation(history)
    actual = current_fingerprint(svc, environment, tables) if expected and tables else None
    failures = [f"{r.name}: {r.message}" for r in results if not r.passed]
    if expected and actual != expected:
        failures.append(
            f"the touched scope changed since the deployment (fingerprint {str(actual)[:12]}, "
            f"rehearsal {expected[:12]}): someone edited {environment} directly"
        )
    summary = {
        "environment": environment,
        "round": round_no,
        "probes": [r.to_dict() for r in results],
        "expected_fingerprint": expected,
        "actual_fingerprint": actual,
    }
    if failures:
        reason = f"bake of {environment}, probe {round_no}: " + "; ".join(failures)
        with svc.ledger() as lconn:
            ledger.record_validation(
                lconn,
                release_id=release_id,
                changeset_id=history.release.changeset_id or "",
                environment=f"bake:{environment}",
                passed=False,
                report={**summary, "failures": failures},
                actor=ctx.actor,
                at=ctx.now,
                airflow=ctx.airflow,
            )
        svc.event(
            release_id,
            "bake.failed",
            ctx=ctx,
            subject=environment,
            payload={"environment": environment, "round": round_no, "failures": failures[:20]},
            reason=reason[:2000],
        )
        raise ValidationFailedError(reason)
    return {"environment": environment, "round": round_no, "probes": len(results), "fingerprint": actual}


def complete(
    svc: ReleaseService,
    history: ledger.ReleaseHistory,
    environments: list[str],
    *,
    ctx: StepContext,
    rounds: int,
    minutes: float,
) -> dict[str, Any]:
    """Record a bake that ran its full period with every probe passing."""
    with svc.ledger() as conn:
        for env in environments:
            ledger.record_validation(
                conn,
                release_id=history.release.id,
                changeset_id=history.release.changeset_id or "",
                environment=f"bake:{env}",
                passed=True,
                report={"environment": env, "rounds": rounds, "minutes": minutes},
                actor=ctx.actor,
                at=ctx.now,
                airflow=ctx.airflow,
            )
    return {"environments": environments, "rounds": rounds, "minutes": minutes}

"""Applies and rollbacks outside a release run (the CLI): their ledger records (the guard: release.guard).

Every apply and rollback is recorded, whoever runs it: the intent before the target is touched (with the
journal row's deployment id, so ``reconcile`` can finish the record if this process dies), then the outcome,
attached to the release whose deployment it is when the ledger knows one. On a ``production: true`` target an
apply needs a release in the ledger that approved this very changeset (same hash, quorum met under the
configured policy, window open now) — or an explicit break-glass with a reason, recorded and announced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2

from gardien import ledger, pg
from gardien.config import Environment, GardienConfig
from gardien.config import ledger_dsn as config_ledger_dsn
from gardien.errors import ConfigurationError, GardienError, RollbackError
from gardien.redact import redact_text
from gardien.release.reconcile import (
    APPLIED_OUTSIDE_RELEASE,
    APPLY_INTENT,
    ROLLBACK_INTENT,
    ROLLED_BACK_OUTSIDE_RELEASE,
)
from gardien.release.stages import record_applied

log = logging.getLogger(__name__)
BREAK_GLASS = "break_glass.used"
# A refused rollback of a deployment no release holds (a release's: deployment.rollback_refused).
ROLLBACK_REFUSED_OUTSIDE_RELEASE = "target.rollback_refused"


@dataclass(frozen=True, slots=True)
class Operator:
    """Who runs the command, why, from where (``entry_point``: cli, api...), and when."""

    actor: str
    reason: str | None
    entry_point: str
    now: datetime
    break_glass: bool = False

    def payload(self) -> dict[str, Any]:
        return {"entry_point": self.entry_point, "break_glass": self.break_glass}

    def reason_with(self, detail: str | None) -> str:
        """The recorded reason: the operator's, who and how, then what happened (``detail``, shortened)."""
        reason = f"{self.reason or 'no reason given'} (by {self.actor} via {self.entry_point})"
        return f"{reason} — {detail[:1500]}" if detail else reason


@contextmanager
def ledger_session(config: GardienConfig) -> Iterator[Any]:
    conn = pg.connect(config_ledger_dsn(config), application_name="gardien cli")
    try:
        ledger.require_schema(conn)
        yield conn
        conn.commit()
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    finally:
        conn.close()


def record_intent(
    config: GardienConfig,
    *,
    kind: str,
    env: Environment,
    target_deployment_id: str,
    changeset_id: str,
    release_id: str | None,
    operator: Operator,
) -> None:
    """Append the intent (apply or rollback) before the target is touched; raises if the ledger refuses."""
    with ledger_session(config) as conn:
        ledger.append_event(
            conn,
            kind=kind,
            actor=operator.actor,
            at=operator.now,
            release_id=release_id,
            subject=changeset_id,
            payload={
                "environment": env.name,
                "target_deployment_id": target_deployment_id,
                "changeset_id": changeset_id,
                **operator.payload(),
            },
            reason=operator.reason,
        )
        if operator.break_glass and kind == APPLY_INTENT:
            ledger.append_event(
                conn,
                kind=BREAK_GLASS,
                actor=operator.actor,
                at=operator.now,
                release_id=release_id,
                subject=changeset_id,
                payload={"environment": env.name, "target_deployment_id": target_deployment_id},
                reason=operator.reason,
            )


def record_apply(
    config: GardienConfig,
    *,
    env: Environment,
    result: Any,
    release: ledger.Release | None,
    operator: Operator,
) -> None:
    """Record a committed apply: a deployment of ``release`` when it has ``env`` on its path, else an event."""
    from gardien.release.reconcile import apply_recorded

    with ledger_session(config) as conn:
        ledger.lock_ledger(conn)
        if result.deployment_id and apply_recorded(conn, env.name, result.deployment_id):
            return  # a reconciler recorded it meanwhile (or it was already applied and recorded)
        if release is not None and env.name in release.path and result.status == "applied":
            record_applied(
                conn,
                release_id=release.id,
                environment=env.name,
                changeset_id=result.changeset_id,
                result=result,
                actor=operator.actor,
                at=operator.now,
                extra=operator.payload(),
            )
            return
        ledger.append_event(
            conn,
            kind=APPLIED_OUTSIDE_RELEASE,
            actor=operator.actor,
            at=operator.now,
            release_id=release.id if release else None,
            subject=result.changeset_id,
            payload={
                "environment": env.name,
                "target_deployment_id": result.deployment_id,
                "changeset_id": result.changeset_id,
                "status": result.status,
                "counts": result.counts,
                "fingerprint_before": result.fingerprint_before,
                "fingerprint_after": result.fingerprint_after,
                **operator.payload(),
            },
            reason=operator.reason,
        )


def ledger_deployment(
    config: GardienConfig, env: Environment, target_deployment_id: str
) -> ledger.DeploymentRecord | None:
    """The release deployment the ledger records for this journal row, if any."""
    with ledger_session(config) as conn:
        dep_id = _ledger_deployment_id(conn, env, target_deployment_id)
        return ledger.get_deployment(conn, dep_id) if dep_id is not None else None


def record_rollback(
    config: GardienConfig,
    *,
    env: Environment,
    target_deployment_id: str,
    changeset_id: str,
    proven: bool,
    fingerprints: dict[str, Any],
    detail: str | None,
    operator: Operator,
) -> None:
    """Record a rollback: on the release's deployment (its status follows, and the release's when nothing of
    it stays deployed), else as an event. Once: a proven rollback a reconciler recorded while this command was
    between the target's commit and here is not recorded again (the check runs under the ledger lock)."""
    from gardien.release.reconcile import rollback_recorded

    reason = operator.reason_with(detail)
    with ledger_session(config) as conn:
        ledger.lock_ledger(conn)
        already = proven and rollback_recorded(conn, env.name, target_deployment_id)
        dep_id = _ledger_deployment_id(conn, env, target_deployment_id)
        dep = ledger.get_deployment(conn, dep_id) if dep_id is not None else None
        if dep is None:
            if already:
                return
            ledger.append_event(
                conn,
                kind=ROLLED_BACK_OUTSIDE_RELEASE,
                actor=operator.actor,
                at=operator.now,
                subject=changeset_id,
                payload={
                    "environment": env.name,
                    "target_deployment_id": target_deployment_id,
                    "changeset_id": changeset_id,
                    "proven": proven,
                    **fingerprints,
                    **operator.payload(),
                },
                reason=reason,
            )
            return
        if not already:
            ledger.record_rollback(
                conn,
                deployment_id=dep.id,
                proven=proven,
                fingerprints=fingerprints,
                reason=reason,
                actor=operator.actor,
                at=operator.now,
            )
        history = ledger.release_history(conn, dep.release_id)
        latest = {d.environment: d for d in history.deployments}
        if not any(d.status in ("applied", "verified") for d in latest.values()):
            status = "rolled_back" if proven else "failed"
            if history.release.status != status:
                ledger.set_release_status(
                    conn,
                    release_id=dep.release_id,
                    status=status,
                    actor=operator.actor,
                    at=operator.now,
                    reason=reason,
                )


def record_rollback_refused(
    config: GardienConfig,
    *,
    env: Environment,
    target_deployment_id: str,
    changeset_id: str,
    error: RollbackError,
    keep_later_edits: bool,
    operator: Operator,
) -> None:
    """Record a rollback refused before anything was written (``error.refused``), as the release path does: on
    the release's deployment (``rollback_refused``: still in effect, the later edits named), else as an event."""
    reason = operator.reason_with(str(error))
    with ledger_session(config) as conn:
        dep_id = _ledger_deployment_id(conn, env, target_deployment_id)
        if dep_id is not None:
            ledger.record_rollback_refused(
                conn,
                deployment_id=dep_id,
                reason=reason,
                later_edits=error.later_edits,
                keep_later_edits=keep_later_edits,
                actor=operator.actor,
                at=operator.now,
                extra=operator.payload(),
            )
            return
        ledger.append_event(
            conn,
            kind=ROLLBACK_REFUSED_OUTSIDE_RELEASE,
            actor=operator.actor,
            at=operator.now,
            subject=changeset_id or None,
            payload={
                "environment": env.name,
                "target_deployment_id": target_deployment_id,
                "changeset_id": changeset_id,
                "still_deployed": True,
                "keep_later_edits": bool(keep_later_edits),
                "later_edits": [dict(e) for e in error.later_edits],
                **operator.payload(),
            },
            reason=redact_text(reason),
        )


def recorded_rollback_failure(
    config: GardienConfig,
    *,
    env: Environment,
    target_deployment_id: str,
    changeset_id: str,
    error: RollbackError,
    keep_later_edits: bool,
    operator: Operator,
) -> RollbackError:
    """Record a rollback that did not happen and return the error to raise: ``error``'s message, then whether
    the ledger holds it.

    Refused with nothing written: recorded as refused (the deployment still in effect). Written and its proof
    failed: recorded as an unproven rollback (manual repair needed). Outcome in doubt (connection lost during
    COMMIT): not recorded here — reconciliation records it from the target's journal and the intent. When the
    ledger cannot take the record, the returned message says so next to what happened on the target.
    """
    try:
        if error.refused:
            record_rollback_refused(
                config,
                env=env,
                target_deployment_id=target_deployment_id,
                changeset_id=changeset_id,
                error=error,
                keep_later_edits=keep_later_edits,
                operator=operator,
            )
            note = "Refused rollback recorded in the ledger (the deployment is still in effect)."
        elif error.proof_failed:
            record_rollback(
                config,
                env=env,
                target_deployment_id=target_deployment_id,
                changeset_id=changeset_id,
                proven=False,
                fingerprints={},
                detail=str(error),
                operator=operator,
            )
            note = "Recorded in the ledger as an unproven rollback (manual repair needed)."
        else:
            return error
    except (GardienError, psycopg2.Error) as failure:
        lines = str(failure).strip().splitlines()
        cause = redact_text(lines[0] if lines else failure.__class__.__name__)
        what = (
            f"Nothing was written to {env.name} (the deployment is still in effect), but this refusal"
            if error.refused
            else "This unproven rollback"
        )
        note = (
            f"{what} could not be recorded in the ledger: {cause}. The ledger holds only its intent; run the "
            "rollback again once the ledger is reachable, so that its outcome is recorded."
        )
    return RollbackError(
        f"{error}\n{note}",
        changed=error.changed,
        proof_failed=error.proof_failed,
        later_edits=error.later_edits,
    )


def _ledger_deployment_id(conn: Any, env: Environment, target_deployment_id: str) -> int | None:
    """The ledger's last deployment for this journal row of ``env``, if any."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM ledger.deployments WHERE environment = %s AND target_deployment_id = %s "
            "ORDER BY id DESC LIMIT 1",
            (env.name, target_deployment_id),
        )
        row = cur.fetchone()
    return row[0] if row else None


def announce_break_glass(
    config: GardienConfig, *, env: Environment, changeset_id: str, operator: Operator, environ: Any
) -> None:
    """Tell the operators' channel; never raises (Slack may be down: the outbox keeps it)."""
    try:
        from gardien.notify import notifier_from_settings
        from gardien.notify.blocks import escape, message, section

        text = (
            f":rotating_light: BREAK-GLASS apply to production {env.name} by {operator.actor}: changeset "
            f"{changeset_id[:12]} applied WITHOUT an approved release. Reason: {operator.reason}"
        )
        notifier = notifier_from_settings(config.notifications, environ=environ)
        notifier.send(message(text, [section(escape(text))]))
    except Exception:  # noqa: BLE001 - the ledger has the record; an announcement failure must not fail the apply
        log.exception("break-glass announcement for %s could not be sent", env.name)


def login_name() -> str:
    """The operating-system login running the command (what the ledger records when no --actor is given)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown-operator"


def require_ledger(config: GardienConfig, env: Environment) -> bool:
    """Whether this apply/rollback can be recorded; a production target without a ledger is refused."""
    if config.ledger is not None:
        return True
    if env.production:
        raise ConfigurationError(
            f"{env.name} is a production target and the configuration has no ledger section: every change to "
            "production must be recorded. Add `ledger: {dsn: ...}`; nothing was applied."
        )
    return False


__all__ = [
    "APPLY_INTENT",
    "BREAK_GLASS",
    "ROLLBACK_INTENT",
    "ROLLBACK_REFUSED_OUTSIDE_RELEASE",
    "Operator",
    "announce_break_glass",
    "ledger_session",
    "ledger_deployment",
    "record_apply",
    "record_intent",
    "record_rollback",
    "record_rollback_refused",
    "recorded_rollback_failure",
    "require_ledger",
]

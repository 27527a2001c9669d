"""Applies and rollbacks outside a release run (the CLI): the production guard and their ledger records.

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

from gardien import ledger, pg
from gardien.changeset import Changeset
from gardien.config import Environment, GardienConfig
from gardien.config import ledger_dsn as config_ledger_dsn
from gardien.errors import ApprovalError, ConfigurationError, UsageError
from gardien.release.paths import parse_release_paths
from gardien.release.reconcile import (
    APPLIED_OUTSIDE_RELEASE,
    APPLY_INTENT,
    ROLLBACK_INTENT,
    ROLLED_BACK_OUTSIDE_RELEASE,
)

log = logging.getLogger(__name__)
BREAK_GLASS = "break_glass.used"


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


@contextmanager
def _ledger(config: GardienConfig) -> Iterator[Any]:
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


def check_production_apply(
    config: GardienConfig, env: Environment, changeset: Changeset, *, operator: Operator
) -> ledger.Release | None:
    """The release that approved ``changeset`` for ``env`` now; None when ``env`` is not production, or on
    break-glass (reason mandatory). Raises ApprovalError naming why no release qualifies (nothing applied)."""
    if not env.production:
        return None
    if operator.break_glass:
        if not (operator.reason or "").strip():
            raise UsageError(
                '--break-glass needs --reason "...": say why production cannot wait for a release.'
            )
        return None
    from gardien.policy import ApprovalVote, evaluate, parse_policy, requirement_for

    tables = [t.name for t in config.catalog.tables]
    policy = parse_policy(config.approvals, source=config.source_path or "configuration", known_tables=tables)
    paths = parse_release_paths(
        config.release_paths, environments=config.environments, source=config.source_path or "configuration"
    )
    touched = sorted(t for t, c in changeset.counts().items() if sum(c.values()))
    refusals: list[str] = []
    with _ledger(config) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM ledger.releases WHERE changeset_id = %s AND %s = ANY(path) ORDER BY created_at DESC",
                (changeset.id, env.name),
            )
            ids = [r[0] for r in cur.fetchall()]
        histories = [ledger.release_history(conn, rid) for rid in ids]
    for history in histories:
        rel = history.release
        path = paths.get(rel.path[0])
        emergency = bool(path and path.emergency)
        if emergency and rel.window_start is None:
            window_open = True
        else:
            window_open = (
                rel.window_start is not None
                and rel.window_end is not None
                and rel.window_start <= operator.now < rel.window_end
            )
        if not window_open:
            refusals.append(f"{rel.id}: its window ({rel.window_start} – {rel.window_end}) is not open now")
            continue
        requirement = requirement_for(
            policy,
            environment=env.name,
            tables_touched=touched,
            requester=rel.requested_by,
            emergency=emergency,
            reason=rel.reason,
        )
        votes = [
            ApprovalVote(user=a.approver, approve=a.decision == "approved", changeset_id=a.changeset_id)
            for a in history.approvals
        ]
        decision = evaluate(requirement, votes, changeset_id=changeset.id)
        if decision.state == "approved":
            return rel
        missing = ", ".join(s.title for s in decision.missing)
        refusals.append(f"{rel.id}: {decision.state}" + (f" (missing: {missing})" if missing else ""))
    why = "; ".join(refusals) if refusals else "no release in the ledger carries it for this environment"
    raise ApprovalError(
        f"{env.name} is a production target: changeset {changeset.id[:12]} is not approved for it ({why}). "
        "Nothing was applied. Deploy it through a release, or, if production cannot wait, use --break-glass "
        '--reason "..." (recorded in the ledger and announced).'
    )


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
    with _ledger(config) as conn:
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
    with _ledger(config) as conn:
        if release is not None and env.name in release.path and result.status == "applied":
            record = ledger.record_deployment(
                conn,
                release_id=release.id,
                environment=env.name,
                changeset_id=result.changeset_id,
                status="applied",
                actor=operator.actor,
                at=operator.now,
                target_deployment_id=result.deployment_id,
                fingerprints={
                    "before": result.fingerprint_before,
                    "after": result.fingerprint_after,
                    "matches_source": result.matches_source,
                    "apply_status": result.status,
                    **operator.payload(),
                },
            )
            for table, entries in result.crosswalk.items():
                if entries:
                    ledger.record_crosswalk(
                        conn,
                        deployment_id=record.id,
                        table=table,
                        entries=entries,
                        actor=operator.actor,
                        at=operator.now,
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
    with _ledger(config) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM ledger.deployments WHERE environment = %s AND target_deployment_id = %s ORDER BY id DESC LIMIT 1",
            (env.name, target_deployment_id),
        )
        row = cur.fetchone()
        return ledger.get_deployment(conn, row[0]) if row else None


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
    it stays deployed), else as an event."""
    reason = f"{operator.reason or 'no reason given'} (by {operator.actor} via {operator.entry_point})"
    if detail:
        reason += f" — {detail[:1500]}"
    with _ledger(config) as conn:
        dep = None
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM ledger.deployments WHERE environment = %s AND target_deployment_id = %s "
                "ORDER BY id DESC LIMIT 1",
                (env.name, target_deployment_id),
            )
            row = cur.fetchone()
        if row is not None:
            dep = ledger.get_deployment(conn, row[0])
        if dep is None:
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
    "Operator",
    "announce_break_glass",
    "check_production_apply",
    "ledger_deployment",
    "record_apply",
    "record_intent",
    "record_rollback",
    "require_ledger",
]

"""Intent and reconciliation: every row of every target's journal has its record in the ledger.

A deployment commits on the target first and is recorded in the ledger after; a kill, a lost connection or a
ledger outage in between leaves production changed and the ledger silent. So every apply and rollback first
appends its intent (``deployment.started`` / ``rollback.started``, carrying the journal row's deployment id),
and ``reconcile`` — run by the next release step on that target, by the drift watch and by ``gardien audit
reconcile`` — finds each journal row the ledger does not record and records it from its intent, or, when no
intent and no release explain it, appends an alert (``deployment.unrecorded`` / ``rollback.unrecorded``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gardien import journal, ledger, pg
from gardien.config import GardienConfig, resolve_environment
from gardien.config import ledger_dsn as config_ledger_dsn
from gardien.errors import EnvironmentUnavailableError

APPLY_INTENT = "deployment.started"
ROLLBACK_INTENT = "rollback.started"
APPLIED_OUTSIDE_RELEASE = "target.applied"  # an apply outside a release (CLI), recorded after it committed
ROLLED_BACK_OUTSIDE_RELEASE = "target.rolled_back"
RECONCILED = "deployment.reconciled"
UNRECORDED_APPLY = "deployment.unrecorded"
UNRECORDED_ROLLBACK = "rollback.unrecorded"


@dataclass(frozen=True, slots=True)
class JournalRow:
    """The few columns of a target's journal row reconciliation needs (never the before-images)."""

    deployment_id: str
    changeset_id: str
    release_id: str | None
    applied_at: datetime
    rolled_back_at: datetime | None
    rollback_proof: dict[str, Any] | None
    fingerprint_before: str | None
    fingerprint_after: str | None


@dataclass(frozen=True, slots=True)
class Finding:
    """A journal row the ledger did not record. ``action``: recorded | alerted | missing (not recorded: check
    only) | unreachable (the target's journal could not be read)."""

    environment: str
    target_deployment_id: str | None
    what: str  # applied | rolled_back | journal
    action: str
    release_id: str | None
    detail: str

    def describe(self) -> str:
        what = {"applied": "apply", "rolled_back": "rollback", "journal": "journal"}[self.what]
        dep = f" {self.target_deployment_id}" if self.target_deployment_id else ""
        rel = f" (release {self.release_id})" if self.release_id else ""
        return f"{self.environment}: {what}{dep}{rel} — {self.action}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "target_deployment_id": self.target_deployment_id,
            "what": self.what,
            "action": self.action,
            "release_id": self.release_id,
            "detail": self.detail,
        }


def read_journal(dsn: str) -> list[JournalRow]:
    """The target's journal rows, oldest first ([] when Gardien never deployed there)."""
    conn = pg.connect(dsn, application_name="gardien reconcile")
    try:
        with conn.cursor() as cur:
            if not journal.schema_exists(cur):
                return []
            cur.execute(
                "SELECT deployment_id, changeset_id, release_id, applied_at, rolled_back_at, rollback_proof, "
                "fingerprint_before ->> 'digest', fingerprint_after ->> 'digest' "
                "FROM gardien.deployment ORDER BY seq"
            )
            return [JournalRow(*row) for row in cur.fetchall()]
    finally:
        conn.rollback()
        conn.close()


CrosswalkReader = Callable[[str], dict[str, list[tuple[Any, Any]]]]


def reconcile_environment(
    config: GardienConfig, environment: str, *, ctx: Any, record: bool = True
) -> list[Finding]:
    """Find (and with ``record``, record) every journal row of ``environment`` the ledger does not record.

    ``ctx`` is a StepContext (who reconciles, when, Airflow ids). Safe to run concurrently and to retry: the
    ledger's append lock is held from the check to the commit. Raises EnvironmentUnavailableError when the
    target or the ledger is unreachable, LedgerError when the ledger refuses.
    """
    dsn = resolve_environment(config, environment).dsn
    rows = read_journal(dsn)
    if not rows:
        return []

    def crosswalk(deployment_id: str) -> dict[str, list[tuple[Any, Any]]]:
        conn = pg.connect(dsn, application_name="gardien reconcile")
        try:
            with conn.cursor() as cur:
                dep = journal.find(cur, deployment_id)
            return dep.crosswalk if dep else {}
        finally:
            conn.rollback()
            conn.close()

    conn = pg.connect(config_ledger_dsn(config), application_name="gardien reconcile")
    try:
        ledger.require_schema(conn)

        def missing() -> tuple[list[JournalRow], list[JournalRow]]:
            applied, rolled_back = _known(conn, environment)
            return (
                [r for r in rows if r.deployment_id not in applied],
                [r for r in rows if r.rolled_back_at and r.deployment_id not in rolled_back],
            )

        missing_apply, missing_rollback = missing()
        if record and (missing_apply or missing_rollback):
            # Only now the ledger-wide lock (held to commit), and a second look under it: a writer finishing its
            # own record meanwhile must not be recorded twice.
            ledger.lock_ledger(conn)
            missing_apply, missing_rollback = missing()
        if not record:
            return [
                Finding(environment, r.deployment_id, "applied", "missing", r.release_id, "no ledger record")
                for r in missing_apply
            ] + [
                Finding(
                    environment, r.deployment_id, "rolled_back", "missing", r.release_id, "no ledger record"
                )
                for r in missing_rollback
            ]
        findings = [_record_apply(conn, environment, r, ctx=ctx, crosswalk=crosswalk) for r in missing_apply]
        findings += [_record_rollback(conn, environment, r, ctx=ctx) for r in missing_rollback]
        conn.commit()
        return findings
    finally:
        conn.rollback()
        conn.close()


def reconcile(
    config: GardienConfig, *, ctx: Any, environments: Iterable[str] | None = None, record: bool = True
) -> list[Finding]:
    """``reconcile_environment`` over every environment of the configuration (or those named).

    An unreachable target does not stop the others: it is reported as a finding with action ``unreachable``.
    """
    findings: list[Finding] = []
    for env in environments if environments is not None else sorted(config.environments):
        try:
            findings.extend(reconcile_environment(config, env, ctx=ctx, record=record))
        except EnvironmentUnavailableError as exc:  # the message names the target or the ledger
            findings.append(Finding(env, None, "journal", "unreachable", None, str(exc)))
    return findings


def apply_recorded(conn: Any, environment: str, target_deployment_id: str) -> bool:
    """Whether the ledger already records this apply (e.g. a reconciler did, while its writer was slow).

    Call under ``ledger.lock_ledger`` so that nobody records it between this check and the caller's record.
    """
    return target_deployment_id in _known(conn, environment)[0]


def rollback_recorded(conn: Any, environment: str, target_deployment_id: str) -> bool:
    """Whether the ledger already records a proven rollback of this journal row (e.g. a reconciler did).

    Call under ``ledger.lock_ledger``, like ``apply_recorded``.
    """
    return target_deployment_id in _known(conn, environment)[1]


def _known(conn: Any, environment: str) -> tuple[set[str], set[str]]:
    """Target deployment ids whose apply, and whose rollback, the ledger already records for ``environment``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT target_deployment_id FROM ledger.deployments "
            "WHERE environment = %(env)s AND target_deployment_id IS NOT NULL "
            "UNION SELECT payload ->> 'target_deployment_id' FROM ledger.events "
            "WHERE kind = ANY(%(kinds)s) AND payload ->> 'environment' = %(env)s",
            {"env": environment, "kinds": [APPLIED_OUTSIDE_RELEASE, UNRECORDED_APPLY]},
        )
        applied = {r[0] for r in cur.fetchall()}
        cur.execute(
            "SELECT d.target_deployment_id FROM ledger.rollbacks r JOIN ledger.deployments d "
            "ON d.id = r.deployment_id WHERE d.environment = %(env)s AND r.proven "
            "UNION SELECT payload ->> 'target_deployment_id' FROM ledger.events "
            "WHERE kind = ANY(%(kinds)s) AND payload ->> 'environment' = %(env)s",
            {"env": environment, "kinds": [ROLLED_BACK_OUTSIDE_RELEASE, UNRECORDED_ROLLBACK]},
        )
        rolled_back = {r[0] for r in cur.fetchall()}
    return applied, rolled_back


def _record_apply(conn: Any, env: str, row: JournalRow, *, ctx: Any, crosswalk: CrosswalkReader) -> Finding:
    intent = ledger.find_event(
        conn, kind=APPLY_INTENT, payload_field="target_deployment_id", value=row.deployment_id
    )
    release_id = (intent.release_id if intent else None) or row.release_id
    release = _release(conn, release_id)
    who = (
        f"started by {intent.actor} at {intent.at:%Y-%m-%d %H:%M:%S} UTC" if intent else "no intent recorded"
    )
    if release is not None and env in release.path:
        ledger.get_changeset(conn, row.changeset_id)  # LedgerError if the ledger never stored it
        record = ledger.record_deployment(
            conn,
            release_id=release.id,
            environment=env,
            changeset_id=row.changeset_id,
            status="applied",
            actor=ctx.actor,
            at=ctx.now,
            target_deployment_id=row.deployment_id,
            fingerprints={
                "before": row.fingerprint_before,
                "after": row.fingerprint_after,
                "apply_status": "applied",
                "reconciled": True,
            },
            airflow=ctx.airflow,
        )
        _crosswalks(conn, row, record.id, crosswalk=crosswalk, ctx=ctx)
        detail = (
            f"committed on {env} at {row.applied_at:%Y-%m-%d %H:%M:%S} UTC ({who}) but never recorded: "
            f"recorded now as deployment {record.id}"
        )
        _append(conn, RECONCILED, ctx, env, row, release.id, detail, ledger_deployment_id=record.id)
        return Finding(env, row.deployment_id, "applied", "recorded", release.id, detail)
    if intent is not None:
        detail = f"applied on {env} outside a release ({who}, via {intent.payload.get('entry_point')}); recorded now"
        _append(
            conn,
            APPLIED_OUTSIDE_RELEASE,
            ctx,
            env,
            row,
            release_id if release else None,
            detail,
            intent_seq=intent.seq,
            entry_point=intent.payload.get("entry_point"),
            reconciled=True,
        )
        return Finding(env, row.deployment_id, "applied", "recorded", release_id if release else None, detail)
    detail = (
        f"changeset {row.changeset_id[:12]} was applied on {env} at {row.applied_at:%Y-%m-%d %H:%M:%S} UTC with no "
        f"intent in the ledger and no known release ({row.release_id or 'none named'}): applied outside "
        "Gardien's recorded paths. Find out who applied it."
    )
    _append(conn, UNRECORDED_APPLY, ctx, env, row, release_id if release else None, detail)
    return Finding(env, row.deployment_id, "applied", "alerted", release_id if release else None, detail)


def _record_rollback(conn: Any, env: str, row: JournalRow, *, ctx: Any) -> Finding:
    intent = ledger.find_event(
        conn, kind=ROLLBACK_INTENT, payload_field="target_deployment_id", value=row.deployment_id
    )
    proof = row.rollback_proof or {}
    proven = bool(proof.get("proven"))
    who = (
        f"by {intent.actor} via {intent.payload.get('entry_point')}: {intent.reason}"
        if intent
        else "no intent recorded"
    )
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, release_id FROM ledger.deployments WHERE environment = %s AND target_deployment_id = %s "
            "ORDER BY id DESC LIMIT 1",
            (env, row.deployment_id),
        )
        dep = cur.fetchone()
    when = f"{row.rolled_back_at:%Y-%m-%d %H:%M:%S} UTC" if row.rolled_back_at else "?"
    if dep is not None:
        detail = f"rolled back on {env} at {when} ({who}) but never recorded: recorded now"
        ledger.record_rollback(
            conn,
            deployment_id=dep[0],
            proven=proven,
            fingerprints={"expected": proof.get("expected"), "restored": proof.get("restored")},
            reason=detail,
            actor=ctx.actor,
            at=ctx.now,
            airflow=ctx.airflow,
        )
        return Finding(env, row.deployment_id, "rolled_back", "recorded", dep[1], detail)
    kind = ROLLED_BACK_OUTSIDE_RELEASE if intent is not None else UNRECORDED_ROLLBACK
    detail = f"rolled back on {env} at {when} ({who})" + (
        "; recorded now" if intent else ": no intent in the ledger. Find out who rolled it back."
    )
    _append(conn, kind, ctx, env, row, None, detail, proven=proven, reconciled=True)
    return Finding(env, row.deployment_id, "rolled_back", "recorded" if intent else "alerted", None, detail)


def _release(conn: Any, release_id: str | None) -> ledger.Release | None:
    if not release_id:
        return None
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM ledger.releases WHERE id = %s", (release_id,))
        if cur.fetchone() is None:
            return None
    return ledger.get_release(conn, release_id)


def _crosswalks(conn: Any, row: JournalRow, record_id: int, *, crosswalk: CrosswalkReader, ctx: Any) -> None:
    for table, entries in crosswalk(row.deployment_id).items():
        if entries:
            ledger.record_crosswalk(
                conn, deployment_id=record_id, table=table, entries=entries, actor=ctx.actor, at=ctx.now
            )


def _append(
    conn: Any,
    kind: str,
    ctx: Any,
    env: str,
    row: JournalRow,
    release_id: str | None,
    detail: str,
    **extra: Any,
) -> None:
    ledger.append_event(
        conn,
        kind=kind,
        actor=ctx.actor,
        at=ctx.now,
        release_id=release_id,
        subject=env,
        payload={
            "environment": env,
            "target_deployment_id": row.deployment_id,
            "changeset_id": row.changeset_id,
            "journal_release_id": row.release_id,
            "applied_at": row.applied_at.isoformat(),
            **extra,
        },
        reason=detail,
        airflow=ctx.airflow,
    )

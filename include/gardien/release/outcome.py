"""Closing a release: derive the one true outcome from the ledger, record it, write the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gardien import ledger
from gardien.release.service import ReleaseService, StepContext

# Outcomes that leave production as intended; every other outcome must end the Airflow run as failed.
SUCCESS_OUTCOMES = frozenset({"released", "empty"})


@dataclass(frozen=True, slots=True)
class Outcome:
    release_id: str
    outcome: str  # released | empty | rejected | validation_failed | missed_window | conflict | rolled_back | manual_repair_needed | rollback_refused | failed
    detail: str
    changeset_id: str | None

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCESS_OUTCOMES

    def note(self) -> str:
        """The DAG run note: the run list then reads like a release log."""
        cs = (self.changeset_id or "-")[:12]
        return f"{self.release_id} · changeset {cs} · {self.outcome.upper()} — {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "release_id": self.release_id,
            "outcome": self.outcome,
            "ok": self.ok,
            "detail": self.detail,
            "changeset_id": self.changeset_id,
        }


def derive_outcome(
    history: ledger.ReleaseHistory, *, final_targets: tuple[str, ...], hint: str | None
) -> Outcome:
    """The outcome from what the ledger holds; ``hint`` carries what only the DAG knows (missed window...)."""
    rel = history.release
    latest: dict[str, ledger.DeploymentRecord] = {}
    for d in history.deployments:
        latest[d.environment] = d

    def make(outcome: str, detail: str) -> Outcome:
        return Outcome(rel.id, outcome, detail, rel.changeset_id)

    if any(d.status == "rollback_unproven" for d in latest.values()):
        envs = ", ".join(e for e, d in latest.items() if d.status == "rollback_unproven")
        return make("manual_repair_needed", f"rollback could not be proven on {envs}: MANUAL REPAIR NEEDED")
    rolled = [e for e, d in latest.items() if d.status == "rolled_back"]
    refused = [e for e, d in latest.items() if d.status == "rollback_refused"]
    if refused:  # never green: the rollback asked for did not happen, the deployment is still there
        extra = f"; rolled back with proof on {', '.join(rolled)}" if rolled else ""
        return make(
            "rollback_refused",
            f"rollback refused on {', '.join(refused)} before anything was written: the deployment is STILL IN "
            f"EFFECT there (reason and any later production edits in the ledger){extra}",
        )
    conflicts = [e.subject for e in history.events if e.kind == "deployment.conflict"]
    if conflicts:
        extra = f"; rolled back with proof on {', '.join(rolled)}" if rolled else ""
        return make(
            "conflict",
            f"{', '.join(sorted(set(conflicts)))} changed since capture on fields this release changes; "
            f"nothing applied there{extra}",
        )
    if rolled:
        return make("rolled_back", f"deployment rolled back on {', '.join(rolled)}, restoration proven")
    if rel.status == "rejected" or hint == "rejected":
        return make("rejected", "approval rejected (reason in the ledger and the report)")
    if rel.status == "validation_failed":
        return make("validation_failed", "the rehearsed state failed validation; nothing deployed")
    if hint == "empty" or rel.status == "empty":
        return make("empty", "no pending change between source and target")
    if hint == "missed_window" or rel.status == "missed_window":
        return make(
            "missed_window", "approval came too late for this window; changes stay pending, nothing deployed"
        )
    baked_bad = sorted({e.subject or "?" for e in history.events if e.kind == "bake.failed"})
    if baked_bad:
        return make(
            "failed", f"bake probes failed on {', '.join(baked_bad)} and no rollback was recorded there"
        )
    if final_targets and all(
        latest.get(t) is not None and latest[t].status == "verified" for t in final_targets
    ):
        return make("released", f"deployed and verified on {', '.join(latest)}")
    return make("failed", hint or f"release stopped in status {rel.status}")


_STATUS_FOR = {
    "released": "closed",
    "empty": "empty",
    "rejected": "rejected",
    "validation_failed": "validation_failed",
    "missed_window": "missed_window",
    "rolled_back": "rolled_back",
}


def close(svc: ReleaseService, release_id: str, *, ctx: StepContext, hint: str | None = None) -> Outcome:
    """Record the final outcome (status + ``release.closed`` event) and write outcome.json."""
    with svc.ledger() as conn:
        history = ledger.release_history(conn, release_id)
        outcome = derive_outcome(history, final_targets=svc.path.final_targets, hint=hint)
        status = _STATUS_FOR.get(outcome.outcome, "failed")
        if history.release.status != status:
            ledger.set_release_status(
                conn,
                release_id=release_id,
                status=status,
                actor=ctx.actor,
                at=ctx.now,
                reason=outcome.detail,
                airflow=ctx.airflow,
            )
        if "release.closed" not in {e.kind for e in history.events}:
            ledger.append_event(
                conn,
                kind="release.closed",
                actor=ctx.actor,
                at=ctx.now,
                release_id=release_id,
                subject=history.release.changeset_id,
                payload=outcome.to_dict(),
                reason=outcome.detail,
                airflow=ctx.airflow,
            )
    svc.write_json(release_id, "outcome.json", outcome.to_dict())
    return outcome

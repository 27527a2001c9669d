"""Map release events to Slack messages (gardien.notify) and send them; the caller swallows every error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gardien.notify import (
    DriftItem,
    NullNotifier,
    TableCounts,
    ValidationFailure,
    messages,
    notifier_from_settings,
)


def _counts(counts: Mapping[str, Mapping[str, int]] | None) -> list[Any]:
    return list(TableCounts.from_mapping({t: c for t, c in (counts or {}).items() if sum(c.values())}))


def build(svc: Any, kind: str, data: Mapping[str, Any]) -> Any:
    """The SlackMessage for ``kind`` (None for kinds that need no message)."""
    rid = data.get("release_id")
    if kind == "release_opened":
        return messages.release_opened(
            release_id=rid,
            path=(svc.path.source, *svc.path.all_targets),
            changeset_hash=data["changeset_id"],
            counts=_counts(data.get("counts")),
        )
    if kind == "release_empty":
        return messages.release_closed(
            release_id=rid, outcome="empty", summary="No pending change between qualification and production."
        )
    if kind == "validation_failed":
        return messages.validation_failed(
            release_id=rid,
            environment=svc.path.final_targets[0],
            failures=[
                ValidationFailure(
                    table="-", rule="validation", keys=(), detail=str(data.get("detail"))[:2500]
                )
            ],
        )
    if kind == "approved":
        return messages.approved(release_id=rid, by=", ".join(data.get("approvers") or []) or "?")
    if kind == "rejected":
        return messages.rejected(release_id=rid, by=data.get("by"), reason=str(data.get("reason") or ""))
    if kind == "stage_deployed":
        result = data.get("result") or {}
        notes = [f"{d.get('table')} {d.get('key')}: {d.get('field')}" for d in result.get("drift") or []]
        return messages.stage_deployed(
            release_id=rid,
            environment=data["environment"],
            counts=_counts(result.get("counts")),
            drift_notes=notes[:10],
        )
    if kind == "deployment_failed":
        return messages.validation_failed(
            release_id=rid,
            environment=data["environment"],
            failures=[
                ValidationFailure(
                    table="-",
                    rule="deployment refused, nothing applied",
                    keys=(),
                    detail=str(data.get("detail"))[:2500],
                )
            ],
        )
    if kind == "stage_verified":
        result = data.get("result") or {}
        return messages.stage_verified(
            release_id=rid, environment=data["environment"], fingerprint=result.get("fingerprint")
        )
    if kind == "verification_failed":
        return messages.validation_failed(
            release_id=rid,
            environment=data["environment"],
            failures=[
                ValidationFailure(
                    table="-", rule="verification", keys=(), detail=str(data.get("detail"))[:2500]
                )
            ],
        )
    if kind == "rollback":
        return messages.rollback(
            release_id=rid,
            environment=data["environment"],
            reason=str(data.get("reason")),
            restoration_proven=bool(data.get("proven")),
        )
    if kind == "release_closed":
        outcome = data.get("outcome") or {}
        return messages.release_closed(
            release_id=rid,
            outcome=str(outcome.get("outcome")),
            report_url=data.get("report"),
            summary=outcome.get("detail"),
        )
    if kind == "drift_detected":
        drifts = [
            DriftItem(
                table=t,
                rows=len(keys),
                keys=tuple(k if isinstance(k, Mapping) else {"key": str(k)} for k in keys[:10]),
            )
            for t, keys in (data.get("tables") or {}).items()
        ]
        return messages.drift_detected(environment=data["environment"], drifts=drifts, release_id=rid)
    if kind == "reconciled":
        return messages.reconciled(
            environment=data["environment"],
            findings=list(data.get("findings") or []),
            alerted=list(data.get("alerted") or []),
        )
    return None


def send(svc: Any, kind: str, *, environ: Mapping[str, str], **data: Any) -> None:
    message = build(svc, kind, data)
    if message is None:
        return
    # Quiet when Slack is off: the release's first task says so once (announce), not every task.
    notifier = notifier_from_settings(svc.config.notifications, environ=environ, announce_off=False)
    notifier.flush_outbox()  # earlier messages first, so the channel reads in order
    notifier.send(message)


def send_task_failure(*, where: str, error: str, environ: Mapping[str, str]) -> None:
    import os

    from gardien.config import load_config

    config = load_config(environ.get("GARDIEN_CONFIG") or os.environ.get("GARDIEN_CONFIG"))
    notifier = notifier_from_settings(config.notifications, environ=environ, announce_off=False)
    notifier.send(messages.release_closed(release_id=where, outcome="task_failed", summary=error[:2000]))


def announce(svc: Any, *, environ: Mapping[str, str]) -> str:
    """Say once (at the start of a release run) whether Slack is on; the other tasks stay quiet about it."""
    notifier = notifier_from_settings(svc.config.notifications, environ=environ, announce_off=True)
    return f"off: {notifier.reason}" if isinstance(notifier, NullNotifier) else "on"

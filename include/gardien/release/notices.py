"""Release notifications: build the Slack message for a release event and send it, never failing the release."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def notify(svc: Any, kind: str, **data: Any) -> None:
    """Send the notification ``kind`` for a release; any failure is logged, never raised."""
    try:
        from gardien.release import slack_glue

        slack_glue.send(svc, kind, environ=os.environ, **data)
    except Exception:  # a notification must never fail or delay a release
        log.exception("notification %s for %s could not be sent", kind, data.get("release_id"))


@dataclass(frozen=True, slots=True)
class _ConfigOnly:
    """What ``notify`` needs outside a release path: the configuration."""

    config: Any


def announce_watch(config: Any, result: Any) -> None:
    """The drift watch's notices for one environment (a gardien.release.drift_watch.WatchResult): journal rows
    reconciliation found unrecorded (alerts first), and a new drift. Never raises; Slack down: the outbox."""
    holder = _ConfigOnly(config)
    if result.reconciled:
        notify(
            holder,
            "reconciled",
            environment=result.environment,
            findings=list(result.reconciled),
            alerted=list(result.alerted),
        )
    if result.status == "drift":
        notify(
            holder,
            "drift_detected",
            environment=result.environment,
            release_id=result.last_release,
            tables={
                t.table: [r.to_dict() for r in t.rows] or [{"note": t.note}] for t in result.report.tables
            },
        )


def notify_task_failure(*, where: str, error: str) -> None:
    """A task failed: tell the operators (best effort)."""
    try:
        from gardien.release import slack_glue

        slack_glue.send_task_failure(where=where, error=error, environ=os.environ)
    except Exception:
        log.exception("failure notification for %s could not be sent", where)


def announce(svc: Any) -> str:
    """Log once per run whether Slack notifications are on (the other tasks do not repeat it)."""
    try:
        from gardien.release import slack_glue

        return slack_glue.announce(svc, environ=os.environ)
    except Exception:
        log.exception("could not read the Slack settings")
        return "unknown"

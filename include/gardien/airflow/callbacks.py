"""Task-level failure callback: log the failure and notify operators; never raises."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def on_task_failure(context: Any) -> None:
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    where = (
        f"{getattr(dag_run, 'dag_id', '?')}/{getattr(dag_run, 'run_id', '?')}/{getattr(ti, 'task_id', '?')}"
    )
    log.error("Gardien task failed: %s: %s", where, exc)
    try:
        from gardien.release.notices import notify_task_failure

        notify_task_failure(where=where, error=str(exc)[:1500])
    except Exception:  # a callback must never raise
        log.exception("could not notify the failure of %s", where)

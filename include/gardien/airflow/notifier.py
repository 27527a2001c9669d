"""Airflow notifier: tell Slack an approval is waiting, with who may answer and the Required Action link."""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)


class ApprovalRequestedNotifier(BaseNotifier):
    """Runs when an approval seat parks (HITL notifiers run before the task waits); never raises."""

    template_fields = ()

    def __init__(self, *, path_name: str) -> None:
        super().__init__()
        self.path_name = path_name

    def notify(self, context: Any) -> None:
        try:
            from gardien.airflow.approval import required_action_link
            from gardien.airflow.release import service
            from gardien.notify import messages, notifier_from_settings

            task = context["task"]
            svc = service(self.path_name)
            release_id = context["ti"].xcom_pull(task_ids="open_release")
            changeset = svc.changeset(release_id)
            users = [u["id"] for u in (task.assigned_users or [])]
            try:
                link = required_action_link(context)
            except Exception:  # no [api] base_url configured: the message still names the task
                link = f"{context['dag_run'].dag_id}/{context['dag_run'].run_id}/{task.task_id}"
            message = messages.approval_requested(
                release_id=release_id,
                changeset_hash=changeset.id,
                assigned_users=users,
                groups=[task.subject],
                required_action_url=link,
            )
            notifier_from_settings(svc.config.notifications, environ=os.environ, announce_off=False).send(
                message
            )
        except Exception:  # a notification never fails or delays an approval
            log.exception("approval-requested notification failed")

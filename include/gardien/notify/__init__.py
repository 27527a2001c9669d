"""Slack notifications: pure Block Kit builders and an outage-tolerant sender (no Airflow here)."""

from __future__ import annotations

from gardien.notify import messages
from gardien.notify.base import FlushResult, Notifier, NullNotifier, SendResult
from gardien.notify.blocks import SlackMessage, escape
from gardien.notify.events import DriftItem, TableCounts, ValidationFailure
from gardien.notify.settings import notifier_from_settings
from gardien.notify.slack import SlackNotifier

__all__ = [
    "DriftItem",
    "FlushResult",
    "Notifier",
    "NullNotifier",
    "SendResult",
    "SlackMessage",
    "SlackNotifier",
    "TableCounts",
    "ValidationFailure",
    "escape",
    "messages",
    "notifier_from_settings",
]

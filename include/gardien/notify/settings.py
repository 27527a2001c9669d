"""Build the notifier from the ``notifications`` section of gardien.yaml (see docs/adr/0003)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gardien.errors import ConfigurationError
from gardien.notify.base import NullNotifier
from gardien.notify.slack import SlackNotifier

log = logging.getLogger("gardien.notify")


class SlackSettings(BaseModel):
    """The ``notifications.slack`` mapping; the token itself is read from the variable ``token_env`` names.

    ``extra="forbid"`` also refuses a ``token:`` key, so a secret cannot be committed to the file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(min_length=1)
    token_env: str = Field(default="SLACK_BOT_TOKEN", min_length=1)
    base_url_env: str | None = None
    outbox: str | None = None
    timeout: float = Field(default=3.0, gt=0, le=30)
    max_attempts: int = Field(default=3, ge=1, le=10)
    max_total_seconds: float = Field(default=8.0, gt=0, le=60)


class NotificationSettings(BaseModel):
    """The ``notifications`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack: SlackSettings | None = None


def parse_settings(raw: Mapping[str, Any] | None) -> NotificationSettings:
    """Validate the ``notifications`` section; raises ConfigurationError naming the bad key."""
    if raw is None:
        return NotificationSettings()
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"notifications must be a mapping such as {{slack: {{channel: '#dpi-mep'}}}}, got {type(raw).__name__}"
        )
    try:
        return NotificationSettings.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"notifications.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(
            f"invalid notifications section ({problems}). Expected slack: {{channel, token_env, "
            "base_url_env, outbox, timeout, max_attempts, max_total_seconds}; the token itself belongs "
            "in the environment variable named by token_env, never in the file."
        ) from None


def notifier_from_settings(
    raw: Mapping[str, Any] | None, *, environ: Mapping[str, str], announce_off: bool = True
) -> SlackNotifier | NullNotifier:
    """The notifier the configuration asks for.

    ``raw`` is the ``notifications`` section (None when absent). Without a ``slack`` entry, or when
    the token variable is unset or empty, Slack is off: a NullNotifier (with a warning in the latter
    case, since someone meant to configure it). ``announce_off=False`` keeps that quiet (and the
    NullNotifier's "not sent" lines at DEBUG): a release says it once per run, not in every task.
    Raises ConfigurationError for a malformed section.
    """
    settings = parse_settings(raw)
    slack = settings.slack
    if slack is None:
        if announce_off:
            log.info("no notifications.slack section: Slack notifications are off")
        return NullNotifier(
            "Slack is not configured (no notifications.slack section)", quiet=not announce_off
        )
    token = environ.get(slack.token_env, "").strip()
    if not token:
        if announce_off:
            log.warning(
                "Slack notifications are off: environment variable %s is not set; set it to the bot token "
                "(xoxb-...) to post to %s",
                slack.token_env,
                slack.channel,
            )
        return NullNotifier(f"Slack is not configured ({slack.token_env} is not set)", quiet=not announce_off)
    base_url = environ.get(slack.base_url_env, "").strip() if slack.base_url_env else ""
    return SlackNotifier(
        token,
        slack.channel,
        base_url=base_url or None,
        timeout=slack.timeout,
        max_attempts=slack.max_attempts,
        max_total_seconds=slack.max_total_seconds,
        outbox=slack.outbox,
    )

"""The Slack notifier: slack-sdk's WebClient, bounded retries, an outbox; it never raises or stalls."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from gardien.notify.base import FlushResult, SendResult
from gardien.notify.blocks import SlackMessage, truncate
from gardien.notify.outbox import Outbox
from gardien.notify.retry import MIN_ATTEMPT_SECONDS, SendBudget, budgeted_handlers, is_timeout

log = logging.getLogger("gardien.notify")
# slack-sdk logs every failed attempt at ERROR on its own logger; our one line per send is the record,
# so its logger is quietened (lower it to DEBUG to see the SDK's own traces).
_sdk_log = logging.getLogger("gardien.notify.sdk")
_sdk_log.setLevel(logging.CRITICAL)

AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})
CONFIG_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived", "missing_scope"})
BLOCK_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format"})


from gardien.redact import redact  # noqa: E402


class SlackNotifier:
    """Posts messages to one channel with ``chat.postMessage``.

    ``send`` never raises and returns within ``max_total_seconds`` (plus one short socket timeout at
    worst): connection errors and HTTP 500/503 are retried with backoff, HTTP 429 only when its
    Retry-After fits in the budget, timeouts and Slack's own refusals not at all. A wrong token is
    logged at ERROR once; later sends go straight to the outbox. Undelivered messages are appended to
    ``outbox`` (JSONL) when given, for :meth:`flush_outbox`.
    """

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        base_url: str | None = None,
        timeout: float = 3.0,
        max_attempts: int = 3,
        max_total_seconds: float = 8.0,
        outbox: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise ValueError("token is empty; use NullNotifier when Slack is not configured")
        if timeout <= 0 or max_total_seconds <= 0 or max_attempts < 1:
            raise ValueError("timeout and max_total_seconds must be positive and max_attempts at least 1")
        self._token = token
        self.channel = channel
        # slack-sdk joins method names onto base_url, so it must end with a slash.
        self.base_url = None if not base_url else base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_total_seconds = max_total_seconds
        self.outbox = None if outbox is None else Outbox(outbox)
        self._clock = clock
        self._sleep = sleep
        self._auth_failed: str | None = None

    def __repr__(self) -> str:  # the token must not leak through a repr in a log or traceback
        return f"SlackNotifier(channel={self.channel!r}, base_url={self.base_url!r})"

    def send(self, message: SlackMessage) -> SendResult:
        """Deliver ``message``; on failure log it, queue it in the outbox, and return ``ok=False``."""
        try:
            message = redact(message)  # no password leaves through Slack (nor lands in the outbox)
            return self._send(message)
        except Exception as exc:  # noqa: BLE001 — a notification must never fail a release
            log.exception("unexpected error while notifying Slack; notification: %s", message.text)
            return SendResult(ok=False, attempts=0, error=f"unexpected: {self._describe(exc)}")

    def _send(self, message: SlackMessage) -> SendResult:
        if self._auth_failed is not None:
            result = SendResult(ok=False, attempts=0, error=f"{self._auth_failed} (token refused earlier)")
            log.warning("Slack token was refused earlier; notification not sent: %s", message.text)
            return self._queue(message, result)
        result = self._deliver(message)
        if result.ok:
            return result
        code = (result.error or "").split(":", 1)[0]
        if code in AUTH_ERRORS:
            self._auth_failed = code
            log.error(
                "Slack refused the bot token (%s): no notification can be delivered until the token "
                "(notifications.slack.token_env) is fixed; undelivered messages stay in the outbox",
                code,
            )
        elif code in CONFIG_ERRORS:
            log.error(
                "Slack refused to post to %s (%s): check notifications.slack.channel and invite the bot "
                "to the channel",
                self.channel,
                code,
            )
        else:
            log.warning(
                "Slack notification not delivered after %d attempt(s): %s", result.attempts, result.error
            )
        return self._queue(message, result)

    def flush_outbox(self) -> FlushResult:
        """Resend queued messages oldest first; what still fails stays queued. Never raises."""
        if self.outbox is None:
            return FlushResult(delivered=0, remaining=0)
        try:
            result = self.outbox.drain(self._deliver)
        except OSError as exc:
            log.error("cannot flush the Slack outbox %s: %s", self.outbox.path, exc)
            return FlushResult(delivered=0, remaining=-1)
        if result.delivered or result.remaining:
            log.info("Slack outbox: %d delivered, %d still queued", result.delivered, result.remaining)
        return result

    def check(self) -> SendResult:
        """Call ``auth.test`` with the same budget: does Slack accept this token?"""
        return self._call(lambda client: client.auth_test())

    def _deliver(self, message: SlackMessage) -> SendResult:
        started = self._clock()
        result = self._call(
            lambda client: client.chat_postMessage(channel=self.channel, **message.payload()),
        )
        code = (result.error or "").split(":", 1)[0]
        left = self.max_total_seconds - (self._clock() - started)
        if code in BLOCK_ERRORS and left >= MIN_ATTEMPT_SECONDS:
            # Slack refused our blocks: the text fallback still tells the channel what happened.
            retry = self._call(
                lambda client: client.chat_postMessage(channel=self.channel, text=message.text),
                total_seconds=left,
            )
            return SendResult(
                ok=retry.ok,
                attempts=result.attempts + retry.attempts,
                error=None if retry.ok else retry.error,
                ts=retry.ts,
            )
        return result

    def _call(
        self, request: Callable[[WebClient], object], *, total_seconds: float | None = None
    ) -> SendResult:
        budget = SendBudget(
            total_seconds=self.max_total_seconds if total_seconds is None else total_seconds,
            attempt_timeout=self.timeout,
            clock=self._clock,
            sleep=self._sleep,
        )
        client = WebClient(
            token=self._token,
            base_url=self.base_url or WebClient.BASE_URL,
            timeout=budget.first_timeout(),  # type: ignore[arg-type]  # urllib accepts a float
            retry_handlers=budgeted_handlers(budget, max_attempts=self.max_attempts),
            logger=_sdk_log,
        )
        budget.client = client
        try:
            response = request(client)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error") or "no error code")
            if status != 200 and status != 429:
                error = f"HTTP {status}: {error}"
            if budget.note:
                error = f"{error}: {budget.note}"
            return SendResult(ok=False, attempts=budget.retries + 1, error=truncate(error, 300))
        except Exception as exc:  # noqa: BLE001 — a notification must never fail a release
            kind = "timeout" if is_timeout(exc) else "connection" if isinstance(exc, OSError) else "error"
            return SendResult(ok=False, attempts=budget.retries + 1, error=f"{kind}: {self._describe(exc)}")
        ts = response.get("ts") if hasattr(response, "get") else None
        return SendResult.delivered(attempts=budget.retries + 1, ts=ts)

    def _queue(self, message: SlackMessage, result: SendResult) -> SendResult:
        if self.outbox is None:
            # No outbox: the task log is the last place the message survives.
            log.warning("no Slack outbox configured; undelivered notification: %s", message.text)
            return result
        try:
            self.outbox.append(message, channel=self.channel, error=result.error)
        except OSError as exc:
            log.error(
                "cannot write the Slack outbox %s (%s); lost notification: %s",
                self.outbox.path,
                exc,
                message.text,
            )
            return result
        return SendResult(ok=False, attempts=result.attempts, error=result.error, queued=True)

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        return truncate(text.replace(self._token, "***"), 300)

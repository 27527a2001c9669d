"""What every notifier returns, the notifier protocol, and the notifier used when Slack is not configured."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gardien.notify.blocks import SlackMessage

log = logging.getLogger("gardien.notify")


@dataclass(frozen=True, slots=True)
class SendResult:
    """Outcome of one send: ``ok``, how many HTTP attempts it took, and why it failed.

    ``queued`` says the message was written to the outbox for a later :meth:`flush_outbox`.
    """

    ok: bool
    attempts: int
    error: str | None = None
    ts: str | None = None
    queued: bool = False

    @classmethod
    def delivered(cls, *, attempts: int, ts: str | None) -> SendResult:
        return cls(ok=True, attempts=attempts, ts=ts)


@dataclass(frozen=True, slots=True)
class FlushResult:
    """Outcome of an outbox flush: messages delivered now, and messages still waiting."""

    delivered: int
    remaining: int


@runtime_checkable
class Notifier(Protocol):
    """Anything that can announce a release event; ``send`` never raises."""

    def send(self, message: SlackMessage) -> SendResult: ...

    def flush_outbox(self) -> FlushResult: ...


class NullNotifier:
    """Used when Slack is not configured: logs at INFO what would have been sent, sends nothing."""

    def __init__(self, reason: str = "Slack is not configured", *, quiet: bool = False) -> None:
        self.reason = reason
        self.quiet = quiet

    def send(self, message: SlackMessage) -> SendResult:
        log.log(
            logging.DEBUG if self.quiet else logging.INFO,
            "%s; notification not sent: %s",
            self.reason,
            message.text,
        )
        return SendResult(ok=False, attempts=0, error=self.reason)

    def flush_outbox(self) -> FlushResult:
        return FlushResult(delivered=0, remaining=0)

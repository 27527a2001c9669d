"""slack-sdk retry handlers bounded by one per-send time budget, so Slack can never stall a release."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.error import URLError

from slack_sdk.http_retry import (
    ConnectionErrorRetryHandler,
    HttpRequest,
    HttpResponse,
    RateLimitErrorRetryHandler,
    RetryHandler,
    RetryState,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

# An attempt needs at least this long to have a chance; a retry that would get less is pointless.
MIN_ATTEMPT_SECONDS = 0.25
BACKOFF_SECONDS = 0.5
DEFAULT_RETRY_AFTER = 1.0


class SendBudget:
    """The deadline of one send, shared by the retry handlers and the client they retry.

    Mutable on purpose: the handlers record retries and shorten the client's socket timeout so that
    the last attempt ends by the deadline.
    """

    def __init__(
        self,
        *,
        total_seconds: float,
        attempt_timeout: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._attempt_timeout = attempt_timeout
        self.deadline = clock() + total_seconds
        self.retries = 0
        self.note: str | None = None
        self.client: Any = None

    def remaining(self) -> float:
        return max(0.0, self.deadline - self._clock())

    def first_timeout(self) -> float:
        return max(MIN_ATTEMPT_SECONDS, min(self._attempt_timeout, self.remaining()))

    def allows(self, wait: float) -> bool:
        """Whether waiting ``wait`` seconds still leaves a useful attempt before the deadline."""
        return wait + MIN_ATTEMPT_SECONDS <= self.remaining()

    def retry_after(self, wait: float, state: RetryState) -> None:
        """Wait, then ask the client for one more attempt with a timeout that ends by the deadline."""
        self._sleep(wait)
        self.retries += 1
        if self.client is not None:
            self.client.timeout = max(MIN_ATTEMPT_SECONDS, min(self._attempt_timeout, self.remaining()))
        state.next_attempt_requested = True
        state.increment_current_attempt()


def is_timeout(error: BaseException | None) -> bool:
    """A read or connect timeout: Slack is slow, not refusing."""
    if isinstance(error, TimeoutError):
        return True
    return isinstance(error, URLError) and isinstance(error.reason, TimeoutError)


def backoff(state: RetryState) -> float:
    """0.5 s, 1 s, 2 s, … (deterministic: few senders, no herd to spread)."""
    return BACKOFF_SECONDS * (2**state.current_attempt)


class BudgetedConnectionErrorRetryHandler(ConnectionErrorRetryHandler):
    """Retries refused or reset connections with backoff, within the budget; never a timeout.

    A timed-out chat.postMessage may still be posted by Slack, so retrying it risks a duplicate and
    spends the budget on a server that is already slow: it goes to the outbox instead.
    """

    def __init__(self, budget: SendBudget, *, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._budget = budget

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if is_timeout(error):
            return False
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        return self._budget.allows(backoff(state))

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        self._budget.retry_after(backoff(state), state)


class BudgetedServerErrorRetryHandler(ServerErrorRetryHandler):
    """Retries HTTP 500/503 with backoff, within the budget."""

    def __init__(self, budget: SendBudget, *, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._budget = budget

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        return self._budget.allows(backoff(state))

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        self._budget.retry_after(backoff(state), state)


class BudgetedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Honours HTTP 429 Retry-After only when the wait fits in the remaining budget.

    Waiting less than Slack asked would only earn another 429, so a wait that does not fit means
    giving up now (the message goes to the outbox) rather than sleeping to the deadline.
    """

    def __init__(self, budget: SendBudget, *, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._budget = budget

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        wait = retry_after_seconds(response)
        if self._budget.allows(wait):
            return True
        self._budget.note = f"Slack asked to retry after {wait:g}s, beyond the remaining {self._budget.remaining():.1f}s budget"
        return False

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        self._budget.retry_after(retry_after_seconds(response), state)


def retry_after_seconds(response: HttpResponse | None) -> float:
    """The Retry-After header in seconds (Slack sends an integer); 1 s when absent or unreadable."""
    if response is None:
        return DEFAULT_RETRY_AFTER
    # HttpResponse normalises every header to a list of values.
    for name, values in response.headers.items():
        if name.lower() == "retry-after":
            raw = values[0] if values else ""
            try:
                return max(0.0, float(str(raw).strip()))
            except ValueError:
                return DEFAULT_RETRY_AFTER
    return DEFAULT_RETRY_AFTER


def budgeted_handlers(budget: SendBudget, *, max_attempts: int) -> list[RetryHandler]:
    """The handlers for one send; they share the client's attempt counter, so ``max_attempts`` is total."""
    retries = max(0, max_attempts - 1)
    return [
        BudgetedConnectionErrorRetryHandler(budget, max_retry_count=retries),
        BudgetedRateLimitRetryHandler(budget, max_retry_count=retries),
        BudgetedServerErrorRetryHandler(budget, max_retry_count=retries),
    ]

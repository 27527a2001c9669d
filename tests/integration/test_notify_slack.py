"""Integration tests: the real slack-sdk against a local fake Slack Web API (never a mocked SDK)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytest
from fakeslack import FakeSlack
from slack_sdk import WebClient
from slack_sdk.http_retry import HttpResponse

from gardien.errors import ConfigurationError
from gardien.notify import (
    NullNotifier,
    SlackMessage,
    SlackNotifier,
    TableCounts,
    messages,
    notifier_from_settings,
)
from gardien.notify.base import FlushResult, SendResult
from gardien.notify.outbox import Outbox
from gardien.notify.retry import is_timeout, retry_after_seconds

CHANNEL = "#dpi-mep"
# Short budgets keep the suite fast; the bound asserted is the contract, with slack for a busy machine.
TIMEOUT = 0.5
BUDGET = 2.5
MARGIN = 1.5


def _message(n: int = 1) -> SlackMessage:
    return messages.release_opened(
        release_id=f"R-{n}",
        path=["qualif", "preprod", "prod"],
        changeset_hash="sha256:" + "ab" * 32,
        counts=TableCounts.from_mapping({"medicament": {"inserts": 2, "updates": 1}}),
        window="Tue 19:00",
    )


class RecordingSleep:
    """Really sleeps (the fake's rate limit is real) and records what the notifier asked for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        time.sleep(seconds)


def _notifier(fake: FakeSlack, tmp_path: Path, **kwargs: Any) -> SlackNotifier:
    options: dict[str, Any] = dict(
        base_url=fake.base_url, timeout=TIMEOUT, max_total_seconds=BUDGET, outbox=tmp_path / "outbox.jsonl"
    )
    options.update(kwargs)
    token = options.pop("token", fake.token)
    return SlackNotifier(token, CHANNEL, **options)


def _outbox_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _timed_send(notifier: SlackNotifier, message: SlackMessage) -> tuple[SendResult, float]:
    started = time.monotonic()
    result = notifier.send(message)
    return result, time.monotonic() - started


def test_send_slack_up_delivers_blocks_with_bearer_token(fake_slack: FakeSlack, tmp_path: Path) -> None:
    msg = _message()
    result = _notifier(fake_slack, tmp_path).send(msg)
    assert result.ok
    assert result.attempts == 1
    assert result.ts
    [received] = fake_slack.requests()
    assert received.token == fake_slack.token
    assert received.params["channel"] == CHANNEL
    assert received.params["text"] == msg.text
    assert received.params["blocks"] == msg.payload()["blocks"]
    assert _outbox_lines(tmp_path) == []


def test_send_slack_down_fails_within_budget_logged_queued_then_flush_delivers(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = _notifier(fake_slack, tmp_path)
    fake_slack.set_mode("down")
    with caplog.at_level(logging.WARNING, logger="gardien.notify"):
        result, elapsed = _timed_send(notifier, _message(1))
    assert not result.ok
    assert result.queued
    assert result.attempts == 3
    assert result.error.startswith("connection:")
    assert elapsed < BUDGET + MARGIN
    assert "not delivered after 3 attempt(s)" in caplog.text
    assert [rec["text"] for rec in _outbox_lines(tmp_path)] == [_message(1).text]

    fake_slack.set_mode("normal")
    flushed = notifier.flush_outbox()
    assert (flushed.delivered, flushed.remaining) == (1, 0)
    assert [m["text"] for m in fake_slack.messages] == [_message(1).text]
    assert _outbox_lines(tmp_path) == []


def test_send_slack_slow_returns_within_budget_without_retry(fake_slack: FakeSlack, tmp_path: Path) -> None:
    fake_slack.set_mode("slow", delay=30)
    result, elapsed = _timed_send(_notifier(fake_slack, tmp_path), _message())
    assert not result.ok
    assert result.error.startswith("timeout:")
    # A timed-out post may still land in Slack: retrying would risk a duplicate.
    assert result.attempts == 1
    assert len(fake_slack.requests()) == 1
    assert elapsed < BUDGET + MARGIN
    assert result.queued


def test_send_budget_shorter_than_timeout_caps_socket_timeout(fake_slack: FakeSlack, tmp_path: Path) -> None:
    fake_slack.set_mode("slow", delay=30)
    result, elapsed = _timed_send(
        _notifier(fake_slack, tmp_path, timeout=20.0, max_total_seconds=1.0), _message()
    )
    assert not result.ok
    assert elapsed < 1.0 + MARGIN


def test_send_rate_limited_retry_after_1_retried_then_delivered(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    sleep = RecordingSleep()
    fake_slack.set_mode("rate_limited", times=1, retry_after=1)
    result = _notifier(fake_slack, tmp_path, sleep=sleep).send(_message())
    assert result.ok
    assert result.attempts == 2
    assert sleep.calls == [1.0]
    assert [r.status for r in fake_slack.requests()] == [429, 200]
    assert len(fake_slack.messages) == 1


def test_send_rate_limited_retry_after_60_gives_up_without_waiting(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    sleep = RecordingSleep()
    fake_slack.set_mode("rate_limited", retry_after=60)
    result, elapsed = _timed_send(_notifier(fake_slack, tmp_path, sleep=sleep), _message())
    assert not result.ok
    assert result.error.startswith("ratelimited: Slack asked to retry after 60s")
    assert result.attempts == 1
    assert sleep.calls == []
    assert elapsed < BUDGET + MARGIN
    assert result.queued


@pytest.mark.parametrize(
    ("times", "ok", "statuses"),
    [(1, True, [500, 200]), (None, False, [500, 500, 500])],
    ids=["transient_500_recovers", "persistent_500_gives_up"],
)
def test_send_server_error_retried_up_to_max_attempts(
    fake_slack: FakeSlack, tmp_path: Path, times: int | None, ok: bool, statuses: list[int]
) -> None:
    fake_slack.set_mode("server_error", times=times)
    result = _notifier(fake_slack, tmp_path, sleep=RecordingSleep()).send(_message())
    assert result.ok is ok
    assert [r.status for r in fake_slack.requests()] == statuses
    if not ok:
        assert result.error.startswith("HTTP 500")


@pytest.mark.parametrize(
    ("mode", "token", "code"),
    [("invalid_auth", None, "invalid_auth"), ("normal", "xoxb-wrong-token", "invalid_auth")],
    ids=["server_refuses", "wrong_token"],
)
def test_send_token_refused_not_retried_logged_error_once(
    fake_slack: FakeSlack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    token: str | None,
    code: str,
) -> None:
    fake_slack.set_mode(mode)
    notifier = _notifier(fake_slack, tmp_path, **({"token": token} if token else {}))
    with caplog.at_level(logging.INFO):
        first = notifier.send(_message(1))
        second = notifier.send(_message(2))
    assert (first.ok, first.attempts, first.error) == (False, 1, code)
    assert (second.ok, second.attempts) == (False, 0)
    assert len(fake_slack.requests()) == 1  # the second send did not even try
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "gardien.notify"]
    assert len(errors) == 1
    assert "refused the bot token" in errors[0].getMessage()
    assert len(_outbox_lines(tmp_path)) == 2  # nothing lost: resent once the token is fixed
    if token:
        assert token not in caplog.text


def test_send_channel_not_found_logged_error_not_retried(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SlackNotifier(fake_slack.token, "", base_url=fake_slack.base_url, timeout=TIMEOUT)
    with caplog.at_level(logging.ERROR, logger="gardien.notify"):
        result = notifier.send(_message())
    assert (result.ok, result.attempts, result.error) == (False, 1, "channel_not_found")
    assert "check notifications.slack.channel" in caplog.text


def test_send_blocks_refused_falls_back_to_text(fake_slack: FakeSlack, tmp_path: Path) -> None:
    msg = SlackMessage(text="Release R-1 opened", blocks=({"not_a_block": True},))
    result = _notifier(fake_slack, tmp_path).send(msg)
    assert result.ok
    assert result.attempts == 2
    assert [m.get("blocks") for m in fake_slack.messages] == [None]
    assert fake_slack.messages[0]["text"] == "Release R-1 opened"


def test_send_unserialisable_block_never_raises(fake_slack: FakeSlack, tmp_path: Path) -> None:
    msg = SlackMessage(text="t", blocks=({"type": "section", "odd": object()},))
    result = _notifier(fake_slack, tmp_path).send(msg)
    assert not result.ok
    assert result.error.startswith("error: TypeError")
    assert fake_slack.requests() == []


def test_send_outbox_unwritable_returns_not_queued_and_logs(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a_directory"
    blocked.mkdir()
    fake_slack.set_mode("down")
    notifier = _notifier(fake_slack, tmp_path, outbox=blocked, max_attempts=1)
    with caplog.at_level(logging.ERROR, logger="gardien.notify"):
        result = notifier.send(_message())
    assert not result.ok
    assert not result.queued
    assert "lost notification: Release R-1 opened" in caplog.text


def test_flush_outbox_slack_still_failing_stops_at_first_failure(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    notifier = _notifier(fake_slack, tmp_path, max_attempts=1)
    fake_slack.set_mode("down")
    for n in (1, 2, 3):
        notifier.send(_message(n))
    fake_slack.set_mode("server_error")
    flushed = notifier.flush_outbox()
    assert (flushed.delivered, flushed.remaining) == (0, 3)
    assert len(fake_slack.requests()) == 1
    fake_slack.set_mode("normal")
    flushed = notifier.flush_outbox()
    assert (flushed.delivered, flushed.remaining) == (3, 0)
    assert [m["text"] for m in fake_slack.messages] == [_message(n).text for n in (1, 2, 3)]


def test_outbox_drain_keeps_records_appended_during_flush(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.append(_message(1), channel=CHANNEL, error="down")
    sent: list[str] = []

    def deliver(message: SlackMessage) -> SendResult:
        sent.append(message.text)
        outbox.append(_message(2), channel=CHANNEL, error="down")  # another task queues meanwhile
        return SendResult.delivered(attempts=1, ts="1.0")

    flushed = outbox.drain(deliver)
    assert sent == [_message(1).text]
    assert (flushed.delivered, flushed.remaining) == (1, 1)
    assert [json.loads(line)["text"] for line in outbox.pending()] == [_message(2).text]


def test_outbox_drain_unreadable_record_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    path.write_text("{not json\n")
    outbox = Outbox(path)
    outbox.append(_message(1), channel=CHANNEL, error="down")
    flushed = outbox.drain(lambda m: SendResult.delivered(attempts=1, ts=None))
    assert (flushed.delivered, flushed.remaining) == (1, 1)
    assert outbox.pending() == ["{not json"]


def test_flush_outbox_without_outbox_is_noop(fake_slack: FakeSlack) -> None:
    notifier = SlackNotifier(fake_slack.token, CHANNEL, base_url=fake_slack.base_url)
    assert notifier.flush_outbox().delivered == 0


@pytest.mark.parametrize(
    ("token", "ok", "error"),
    [(None, True, None), ("xoxb-wrong", False, "invalid_auth")],
    ids=["good_token", "wrong_token"],
)
def test_check_auth_test_reports_token_validity(
    fake_slack: FakeSlack, tmp_path: Path, token: str | None, ok: bool, error: str | None
) -> None:
    notifier = _notifier(fake_slack, tmp_path, **({"token": token} if token else {}))
    result = notifier.check()
    assert (result.ok, result.error) == (ok, error)
    assert fake_slack.requests("auth.test")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(token=""), "token is empty"),
        (dict(timeout=0), "must be positive"),
        (dict(max_attempts=0), "max_attempts at least 1"),
    ],
    ids=["empty_token", "zero_timeout", "zero_attempts"],
)
def test_slack_notifier_bad_arguments_raise(kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = dict(token="xoxb-x")
    options.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SlackNotifier(options.pop("token"), CHANNEL, **options)


def test_slack_notifier_repr_hides_token() -> None:
    assert "xoxb-secret" not in repr(SlackNotifier("xoxb-secret", CHANNEL))


def test_null_notifier_send_logs_info_and_sends_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gardien.notify"):
        result = NullNotifier().send(_message())
    assert (result.ok, result.attempts) == (False, 0)
    assert "notification not sent: Release R-1 opened" in caplog.text


# -- configuration ---------------------------------------------------------------------------


def test_notifier_from_settings_token_in_env_delivers(fake_slack: FakeSlack) -> None:
    raw = {"slack": {"channel": CHANNEL, "token_env": "SLACK_BOT_TOKEN", "base_url_env": "SLACK_BASE_URL"}}
    env = {"SLACK_BOT_TOKEN": fake_slack.token, "SLACK_BASE_URL": fake_slack.base_url}
    notifier = notifier_from_settings(raw, environ=env)
    assert isinstance(notifier, SlackNotifier)
    assert notifier.send(_message()).ok
    assert fake_slack.messages[0]["channel"] == CHANNEL


@pytest.mark.parametrize(
    ("raw", "environ", "level"),
    [
        (None, {}, logging.INFO),
        ({}, {}, logging.INFO),
        ({"slack": {"channel": CHANNEL}}, {}, logging.WARNING),
        ({"slack": {"channel": CHANNEL, "token_env": "MY_TOKEN"}}, {"MY_TOKEN": "  "}, logging.WARNING),
    ],
    ids=["no_section", "empty_section", "token_env_unset", "token_env_blank"],
)
def test_notifier_from_settings_slack_off_gives_null_notifier(
    caplog: pytest.LogCaptureFixture, raw: dict[str, Any] | None, environ: dict[str, str], level: int
) -> None:
    with caplog.at_level(logging.INFO, logger="gardien.notify"):
        notifier = notifier_from_settings(raw, environ=environ)
    assert isinstance(notifier, NullNotifier)
    assert any(r.levelno == level for r in caplog.records)


def test_notifier_from_settings_options_are_passed(tmp_path: Path) -> None:
    raw = {
        "slack": {
            "channel": CHANNEL,
            "outbox": str(tmp_path / "o.jsonl"),
            "timeout": 1.5,
            "max_attempts": 2,
            "max_total_seconds": 4,
        }
    }
    notifier = notifier_from_settings(raw, environ={"SLACK_BOT_TOKEN": "xoxb-x"})
    assert isinstance(notifier, SlackNotifier)
    assert (notifier.timeout, notifier.max_attempts, notifier.max_total_seconds) == (1.5, 2, 4.0)
    assert notifier.outbox is not None and notifier.outbox.path == tmp_path / "o.jsonl"
    assert notifier.base_url is None


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (
            {"slack": {"channel": CHANNEL, "token": "xoxb-in-file"}},
            r"notifications\.slack\.token: Extra inputs",
        ),
        ({"slack": {}}, r"notifications\.slack\.channel: Field required"),
        ({"slack": {"channel": CHANNEL, "timeout": -1}}, r"notifications\.slack\.timeout"),
        ({"email": {}}, r"notifications\.email"),
        ("slack", "notifications must be a mapping"),
    ],
    ids=[
        "token_literal_refused",
        "channel_missing",
        "negative_timeout",
        "unknown_channel_type",
        "not_a_mapping",
    ],
)
def test_notifier_from_settings_bad_section_raises(raw: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        notifier_from_settings(raw, environ={"SLACK_BOT_TOKEN": "xoxb-x"})


def test_outbox_drain_while_another_flush_runs_skips(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.append(_message(1), channel=CHANNEL, error="down")
    nested: list[FlushResult] = []

    def deliver(message: SlackMessage) -> SendResult:
        nested.append(
            Outbox(tmp_path / "outbox.jsonl").drain(lambda m: SendResult.delivered(attempts=1, ts=None))
        )
        return SendResult.delivered(attempts=1, ts=None)

    assert outbox.drain(deliver) == FlushResult(delivered=1, remaining=0)
    assert nested == [FlushResult(delivered=0, remaining=1)]


def test_flush_outbox_unusable_path_logs_error_and_never_raises(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    notifier = _notifier(fake_slack, tmp_path, outbox=not_a_dir / "outbox.jsonl")
    with caplog.at_level(logging.ERROR, logger="gardien.notify"):
        result = notifier.flush_outbox()
    assert result == FlushResult(delivered=0, remaining=-1)
    assert "cannot flush the Slack outbox" in caplog.text


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "2"}, 2.0), ({"retry-after": ["30"]}, 30.0), ({"Retry-After": "soon"}, 1.0), ({}, 1.0)],
    ids=["seconds", "lowercase_list", "unreadable_defaults_to_1", "absent_defaults_to_1"],
)
def test_retry_after_seconds_header_parsed(headers: dict[str, Any], expected: float) -> None:
    assert retry_after_seconds(HttpResponse(status_code=429, headers=headers)) == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError("timed out"), True),
        (URLError(TimeoutError("timed out")), True),
        (URLError(ConnectionRefusedError(111, "refused")), False),
        (None, False),
    ],
    ids=["read_timeout", "connect_timeout", "refused", "no_error"],
)
def test_is_timeout_classifies_errors(error: BaseException | None, expected: bool) -> None:
    assert is_timeout(error) is expected


def test_fake_slack_form_body_with_token_param_is_understood(fake_slack: FakeSlack) -> None:
    client = WebClient(base_url=fake_slack.base_url, timeout=2)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    response = client.api_call(
        "chat.postMessage",
        data={"token": fake_slack.token, "channel": CHANNEL, "text": "hi", "blocks": json.dumps(blocks)},
    )
    assert response["ok"]
    assert fake_slack.messages[0]["blocks"] == blocks
    assert fake_slack.requests()[0].token == fake_slack.token

"""When the CLI, the demo and the tests may answer a Required Action (Airflow 3.3.2 answer race)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gardien.restapi import SETTLE_SECONDS, seconds_until_settled


def _created(delta: timedelta) -> dict[str, str]:
    return {"created_at": (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")}


def test_a_required_action_that_just_appeared_waits_the_settle_time() -> None:
    wait = seconds_until_settled(_created(timedelta(0)))
    assert SETTLE_SECONDS - 0.5 < wait <= SETTLE_SECONDS


def test_an_older_required_action_is_answered_at_once() -> None:
    assert seconds_until_settled(_created(timedelta(seconds=-10))) == 0.0


def test_partial_age_waits_only_the_rest() -> None:
    assert seconds_until_settled(_created(timedelta(seconds=-2)), settle=3.0) == pytest.approx(1.0, abs=0.3)


@pytest.mark.parametrize("detail", [{}, {"created_at": None}, {"created_at": ""}])
def test_unknown_creation_time_does_not_wait(detail: dict) -> None:
    assert seconds_until_settled(detail) == 0.0


def test_a_creation_time_in_the_future_clock_skew_waits_at_most_the_settle_time() -> None:
    assert seconds_until_settled(_created(timedelta(minutes=5))) == SETTLE_SECONDS

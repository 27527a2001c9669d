"""Fixtures for integration tests: a local fake Slack Web API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakeslack import FakeSlack


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API on 127.0.0.1 (see tests/fakeslack.py); stopped after the test."""
    with FakeSlack() as server:
        yield server

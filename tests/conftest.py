"""Shared fixtures: a real PostgreSQL server, and fresh uniquely named databases dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

# The browser tier starts its own Airflow and Chromium: only `make test-ui` (GARDIEN_UI_TESTS=1) collects it.
collect_ignore = [] if os.environ.get("GARDIEN_UI_TESTS") == "1" else ["ui"]


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    """DSN of a maintenance database; tests needing PostgreSQL fail loudly if it is unreachable."""
    from gardien import pg

    dsn = pg.admin_dsn()
    conn = pg.connect(dsn)  # raises EnvironmentUnavailableError with the reason
    conn.close()
    return dsn


@pytest.fixture
def make_db(pg_admin_dsn: str) -> Iterator[Callable[[str], str]]:
    """Factory: ``make_db("qualif")`` creates a fresh database with a unique name and returns its DSN."""
    from gardien import pg

    created: list[str] = []

    def _make(label: str = "db") -> str:
        name = f"gt_{label}_{uuid.uuid4().hex[:10]}".lower()
        created.append(name)
        return pg.create_database(pg_admin_dsn, name)

    yield _make
    for name in created:
        pg.drop_database(pg_admin_dsn, name)

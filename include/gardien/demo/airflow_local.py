"""Run Airflow locally for the demo: metadata DB on the demo's PostgreSQL, one process per component.

``python -m gardien.demo.airflow_local start|stop|status|env``. Components (scheduler, dag-processor,
triggerer, api-server) each run in their own session so ``stop`` can end each process group. State and logs
live under ``.gardien/airflow``. A restart happens only when the settings or the plugin code changed, so a
second ``make demo`` is fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gardien import pg
from gardien.errors import EnvironmentUnavailableError, GardienError

COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
METADATA_DB = "gardien_airflow"
# Demo identities (SimpleAuthManager). Approvers are listed in include/config/gardien.yaml `approvals`.
DEMO_USERS = {
    "admin": ("admin", "admin"),
    "parametreur": ("user", "parametreur"),
    "chef.projet": ("user", "cab-chef"),
    "resp.exploitation": ("user", "cab-exploit"),
    "dsi.adjoint": ("user", "cab-dsi"),
    "pharma.chef": ("user", "pharma-chef"),
    "pharma.adjoint": ("user", "pharma-adj"),
    "rssi": ("user", "rssi"),
    "auditeur": ("viewer", "auditeur"),
}


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_port(wanted: int, *, taken: set[int] | None = None) -> int:
    """The first port from ``wanted`` on that nothing listens on and that is not in ``taken``."""
    port = wanted
    while port in (taken or set()) or not port_free(port):
        port += 1
    return port


def state_dir(root: Path) -> Path:
    d = root / ".gardien" / "airflow"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _settings(root: Path, admin_dsn: str, port: int) -> dict[str, str]:
    return base_settings(root, admin_dsn, port=port, home=state_dir(root), metadata_db=METADATA_DB)


def base_settings(root: Path, admin_dsn: str, *, port: int, home: Path, metadata_db: str) -> dict[str, str]:
    """Environment shared by every component of a stack living in ``home`` (LocalExecutor)."""
    secret_file = home / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(32))
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({u: pw for u, (_, pw) in DEMO_USERS.items()}, indent=2))
    meta = pg.dsn_for_database(admin_dsn, metadata_db)
    params = psycopg2_params(meta)
    sqla = "postgresql+psycopg2://{user}@{host}:{port}/{dbname}".format(**params)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqla,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, (r, _) in DEMO_USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        # Only this machine reaches the demo (its users have well-known passwords): never 0.0.0.0.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "GARDIEN_CONFIG": os.environ.get("GARDIEN_CONFIG", str(root / "include" / "config" / "gardien.yaml")),
        "GARDIEN_PG_DSN": admin_dsn,
        "GARDIEN_STATE_DIR": str(root / ".gardien"),
        "TQDM_DISABLE": "1",
        "NO_COLOR": "1",
    }


def psycopg2_params(dsn: str) -> dict[str, str]:
    import psycopg2.extensions

    p = psycopg2.extensions.parse_dsn(dsn)
    return {
        "user": p.get("user", "postgres"),
        "host": p.get("host", "127.0.0.1"),
        "port": p.get("port", "5432"),
        "dbname": p["dbname"],
    }


def fingerprint(root: Path, settings: dict[str, str]) -> str:
    """Changes here need a restart: settings and the code the plugin loads (plugins are loaded once)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    pkg = root / "include" / "gardien"
    loaded_by_plugin = [
        *sorted((root / "plugins").rglob("*.py")),
        pkg / "airflow" / "timetable.py",
        pkg / "airflow" / "listener.py",
        pkg / "release" / "ids.py",
        *sorted((pkg / "calendar").rglob("*.py")),
    ]
    for f in loaded_by_plugin:  # task code is imported afresh by each task process: no restart needed
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()


def alive(pid: int) -> bool:
    try:  # reap it first if it is our own exited child: a zombie still answers kill(pid, 0)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def read_pids(home: Path) -> dict[str, int]:
    f = home / "pids.json"
    return json.loads(f.read_text()) if f.exists() else {}


def read_state(home: Path) -> dict:
    f = home / "state.json"
    return json.loads(f.read_text()) if f.exists() else {}


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def stop_processes(home: Path) -> list[str]:
    """End every process group recorded in ``home``/pids.json (TERM, KILL after 20 s); return their names."""
    pids = read_pids(home)
    stopped = []
    for name, pid in pids.items():
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(name)
    deadline = time.monotonic() + 20
    while any(alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    for pid in pids.values():
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    (home / "pids.json").unlink(missing_ok=True)
    return stopped


def stop(root: Path) -> str:
    stopped = stop_processes(state_dir(root))
    return f"Airflow stopped ({', '.join(stopped)})" if stopped else "Airflow was not running"


def airflow_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment of `airflow` commands: ours plus the settings, with the venv's bin on PATH."""
    env = {**os.environ, **settings}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def migrate(admin_dsn: str, metadata_db: str, env: dict[str, str]) -> None:
    """Create the metadata database if missing and migrate it. Raises EnvironmentUnavailableError."""
    if not pg.database_exists(admin_dsn, metadata_db):
        pg.create_database(admin_dsn, metadata_db)
    res = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, check=False)  # noqa: S607
    if res.returncode != 0:
        raise EnvironmentUnavailableError(f"`airflow db migrate` failed:\n{res.stderr[-3000:]}")


def spawn(argv: list[str], *, env: dict[str, str], log: Path, cwd: Path) -> int:
    """Start one component in a session of its own, so stop can end its whole process group; return its pid."""
    with open(log, "ab") as out:  # the child inherits its own copy of the descriptor
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,  # noqa: S603,S607
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )
    return proc.pid


def wait_healthy(port: int, pids: dict[str, int], *, logs: str, wait: int) -> None:
    """Wait until the API reports scheduler and metadata DB healthy; fail as soon as a component exits."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        dead = [n for n, p in pids.items() if not alive(p)]
        if dead:
            raise EnvironmentUnavailableError(
                f"Airflow component(s) {', '.join(dead)} exited at start; see {logs}/{dead[0]}.log"
            )
        h = health(port)
        if (
            h
            and h.get("scheduler", {}).get("status") == "healthy"
            and h.get("metadatabase", {}).get("status") == "healthy"
        ):
            return
        time.sleep(1)
    raise EnvironmentUnavailableError(
        f"Airflow did not become healthy within {wait}s; see the logs in {logs}/*.log, then `make stop`."
    )


def start(root: Path, admin_dsn: str, *, wanted_port: int = 8080, wait: int = 180) -> dict[str, str]:
    """Start (or reuse) the local Airflow; return its settings. Raises EnvironmentUnavailableError."""
    home = state_dir(root)
    previous = read_state(home)
    pids = read_pids(home)
    running = bool(pids) and all(alive(p) for p in pids.values())
    port = int(previous.get("port", wanted_port)) if running else wanted_port
    if not running:
        if pids:
            print("gardien: found a partly stopped Airflow from an earlier run; stopping what is left of it.")
            stop(root)
        while not port_free(port):
            print(f"gardien: port {port} is taken by another program; trying {port + 1} for the Airflow UI.")
            port += 1
    settings = _settings(root, admin_dsn, port)
    fp = fingerprint(root, settings)
    if running and previous.get("fingerprint") == fp and health(port):
        print(f"gardien: Airflow already running at http://127.0.0.1:{port} (unchanged).")
        return settings
    if running:
        print("gardien: Airflow settings or plugin code changed; restarting Airflow.")
        stop(root)
    env = airflow_env(settings)
    print("gardien: migrating the Airflow metadata database ...")
    migrate(admin_dsn, METADATA_DB, env)
    new_pids = {
        name: spawn(["airflow", name], env=env, log=home / f"{name}.log", cwd=root) for name in COMPONENTS
    }
    (home / "pids.json").write_text(json.dumps(new_pids))
    (home / "state.json").write_text(json.dumps({"port": port, "fingerprint": fp}))
    print(f"gardien: starting Airflow ({', '.join(COMPONENTS)}) on http://127.0.0.1:{port} ...")
    wait_healthy(port, new_pids, logs=".gardien/airflow", wait=wait)
    print("gardien: Airflow is up.")
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gardien.demo.airflow_local")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--root", default=".")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        if args.action == "stop":
            print(f"gardien: {stop(root)}")
        elif args.action == "start":
            start(root, pg.admin_dsn(), wanted_port=args.port)
        else:
            state = read_state(state_dir(root))
            print(
                json.dumps(
                    {"pids": read_pids(state_dir(root)), "health": health(int(state.get("port", args.port)))}
                )
            )
    except GardienError as exc:
        print(f"gardien: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

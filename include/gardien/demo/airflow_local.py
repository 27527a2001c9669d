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


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def state_dir(root: Path) -> Path:
    d = root / ".gardien" / "airflow"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _settings(root: Path, admin_dsn: str, port: int) -> dict[str, str]:
    home = state_dir(root)
    secret_file = home / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(32))
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({u: pw for u, (_, pw) in DEMO_USERS.items()}, indent=2))
    meta = pg.dsn_for_database(admin_dsn, METADATA_DB)
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


def _fingerprint(root: Path, settings: dict[str, str]) -> str:
    """Changes here need a restart: settings and the code the plugin loads (plugins are loaded once)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    pkg = root / "include" / "gardien"
    loaded_by_plugin = [
        *sorted((root / "plugins").rglob("*.py")),
        pkg / "airflow" / "timetable.py",
        pkg / "airflow" / "listener.py",
        *sorted((pkg / "calendar").rglob("*.py")),
    ]
    for f in loaded_by_plugin:  # task code is imported afresh by each task process: no restart needed
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _pids(home: Path) -> dict[str, int]:
    f = home / "pids.json"
    return json.loads(f.read_text()) if f.exists() else {}


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def stop(root: Path) -> str:
    home = state_dir(root)
    pids = _pids(home)
    stopped = []
    for name, pid in pids.items():
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(name)
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    for pid in pids.values():
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    (home / "pids.json").unlink(missing_ok=True)
    return f"Airflow stopped ({', '.join(stopped)})" if stopped else "Airflow was not running"


def start(root: Path, admin_dsn: str, *, wanted_port: int = 8080, wait: int = 180) -> dict[str, str]:
    """Start (or reuse) the local Airflow; return its settings. Raises EnvironmentUnavailableError."""
    home = state_dir(root)
    previous = json.loads((home / "state.json").read_text()) if (home / "state.json").exists() else {}
    pids = _pids(home)
    running = bool(pids) and all(_alive(p) for p in pids.values())
    port = int(previous.get("port", wanted_port)) if running else wanted_port
    if not running:
        if pids:
            print("gardien: found a partly stopped Airflow from an earlier run; stopping what is left of it.")
            stop(root)
        while not _port_free(port):
            print(f"gardien: port {port} is taken by another program; trying {port + 1} for the Airflow UI.")
            port += 1
    settings = _settings(root, admin_dsn, port)
    fp = _fingerprint(root, settings)
    if running and previous.get("fingerprint") == fp and health(port):
        print(f"gardien: Airflow already running at http://127.0.0.1:{port} (unchanged).")
        return settings
    if running:
        print("gardien: Airflow settings or plugin code changed; restarting Airflow.")
        stop(root)
    env = {**os.environ, **settings}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if not pg.database_exists(admin_dsn, METADATA_DB):
        pg.create_database(admin_dsn, METADATA_DB)
    print("gardien: migrating the Airflow metadata database ...")
    res = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, check=False)  # noqa: S607
    if res.returncode != 0:
        raise EnvironmentUnavailableError(f"`airflow db migrate` failed:\n{res.stderr[-3000:]}")
    new_pids = {}
    for name in COMPONENTS:
        log = open(home / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child process
        proc = subprocess.Popen(
            ["airflow", name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,  # noqa: S603,S607
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=root,
        )
        new_pids[name] = proc.pid
    (home / "pids.json").write_text(json.dumps(new_pids))
    (home / "state.json").write_text(json.dumps({"port": port, "fingerprint": fp}))
    print(f"gardien: starting Airflow ({', '.join(COMPONENTS)}) on http://127.0.0.1:{port} ...")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        dead = [n for n, p in new_pids.items() if not _alive(p)]
        if dead:
            raise EnvironmentUnavailableError(
                f"Airflow component(s) {', '.join(dead)} exited at start; see .gardien/airflow/{dead[0]}.log"
            )
        h = health(port)
        if (
            h
            and h.get("scheduler", {}).get("status") == "healthy"
            and h.get("metadatabase", {}).get("status") == "healthy"
        ):
            print("gardien: Airflow is up.")
            return settings
        time.sleep(1)
    raise EnvironmentUnavailableError(
        f"Airflow did not become healthy within {wait}s; see the logs in .gardien/airflow/*.log, then `make stop`."
    )


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
            state = (
                json.loads((state_dir(root) / "state.json").read_text())
                if (state_dir(root) / "state.json").exists()
                else {}
            )
            print(
                json.dumps(
                    {"pids": _pids(state_dir(root)), "health": health(int(state.get("port", args.port)))}
                )
            )
    except GardienError as exc:
        print(f"gardien: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

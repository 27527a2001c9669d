"""Run Airflow distributed on this machine: CeleryExecutor, Redis broker, separate processes, no Docker.

``python -m gardien.demo.airflow_distributed start|stop|status``. Scheduler, dag-processor, triggerer,
api-server and two Celery workers each run in their own session (so ``stop`` ends each process group), with
their logs and pids under ``.gardien/airflow-dist``. Metadata DB and Celery result backend: the database
``gardien_airflow_dist`` on the project's PostgreSQL; broker: a Redis database of its own, emptied at every
start so no stale task message from an earlier stack can run. Like airflow_local, a running stack is reused
unless its settings (e.g. GARDIEN_CONFIG) or the plugin code changed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from gardien import pg
from gardien.demo import airflow_local as local
from gardien.errors import EnvironmentUnavailableError, GardienError

COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
WORKERS = ("worker1", "worker2")
WORKER_CONCURRENCY = 2
METADATA_DB = "gardien_airflow_dist"
DEFAULT_PORT = 8090
# Redis database 5: the other databases of the shared Redis are left alone (FLUSHDB, never FLUSHALL).
DEFAULT_BROKER = "redis://127.0.0.1:6379/5"
POOL = "gardien_targets"  # the release DAG's fan-out pool (dags/gardien_release.py)
POOL_SLOTS = 4
HOSTNAME_ENV = "GARDIEN_AIRFLOW_HOSTNAME"


def component_hostname() -> str:
    """``[core] hostname_callable`` of the stack: each worker names itself, as separate machines would.

    Both workers run on one machine, so the default (the FQDN) would record the same hostname on every task
    instance and hide which worker ran what.
    """
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


def _airflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def state_dir(root: Path) -> Path:
    d = root / ".gardien" / "airflow-dist"
    d.mkdir(parents=True, exist_ok=True)
    return d


def broker_url() -> str:
    return os.environ.get("GARDIEN_REDIS_URL", DEFAULT_BROKER)


def settings(root: Path, admin_dsn: str, *, port: int, trigger_log_port: int) -> dict[str, str]:
    """The environment shared by every component (workers add their hostname and log-server port)."""
    home = state_dir(root)
    base = local.base_settings(root, admin_dsn, port=port, home=home, metadata_db=METADATA_DB)
    meta = local.psycopg2_params(pg.dsn_for_database(admin_dsn, METADATA_DB))
    return {
        **base,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url(),
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://{user}@{host}:{port}/{dbname}".format(**meta),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "gardien.demo.airflow_distributed.component_hostname",
        # The LocalExecutor stack may run beside this one: no fixed port may be shared with it.
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
        # A rewritten GARDIEN_CONFIG (new paths, a new window) reaches the DAGs within seconds.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
    }


def _flush_broker(url: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.flushdb()
        client.close()
    except redis.RedisError as exc:
        raise EnvironmentUnavailableError(
            f"cannot reach the Celery broker {url}: {exc}. Start Redis on 127.0.0.1:6379, or set "
            "GARDIEN_REDIS_URL to a Redis database the stack may empty (redis://host:port/db)."
        ) from exc


def _set_pool(env: dict[str, str]) -> None:
    res = subprocess.run(  # noqa: S603
        _airflow("pools", "set", POOL, str(POOL_SLOTS), "Gardien: targets of a stage deployed at once"),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise EnvironmentUnavailableError(f"`airflow pools set {POOL}` failed:\n{res.stderr[-2000:]}")


def _wait_workers_ready(home: Path, offsets: dict[str, int], pids: dict[str, int], *, wait: int) -> None:
    """Celery prints ``<name>@<host> ready.`` once it consumes the queue; wait for every worker to say so."""
    deadline = time.monotonic() + wait
    pending = set(offsets)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            if not local.alive(pids[name]):
                raise EnvironmentUnavailableError(
                    f"Celery {name} exited at start; see .gardien/airflow-dist/{name}.log"
                )
            with open(home / f"{name}.log", "rb") as f:
                f.seek(offsets[name])
                if b" ready." in f.read():
                    pending.discard(name)
        time.sleep(1)
    if pending:
        raise EnvironmentUnavailableError(
            f"Celery {', '.join(sorted(pending))} not ready within {wait}s; see .gardien/airflow-dist/*.log"
        )


def stop(root: Path) -> str:
    stopped = local.stop_processes(state_dir(root))
    return (
        f"distributed Airflow stopped ({', '.join(stopped)})"
        if stopped
        else "distributed Airflow was not running"
    )


def start(
    root: Path, admin_dsn: str, *, config: str | None = None, wanted_port: int = DEFAULT_PORT, wait: int = 240
) -> dict[str, str]:
    """Start (or reuse) the distributed stack with ``config`` as GARDIEN_CONFIG; return its settings.

    Raises EnvironmentUnavailableError when Redis, PostgreSQL or a component is not there.
    """
    home = state_dir(root)
    previous = local.read_state(home)
    pids = local.read_pids(home)
    running = bool(pids) and all(local.alive(p) for p in pids.values())
    if running:
        port, trigger_port = int(previous["port"]), int(previous["trigger_log_port"])
        worker_ports = {w: int(p) for w, p in previous["worker_log_ports"].items()}
    else:
        if pids:
            print("gardien: found a partly stopped distributed Airflow; stopping what is left of it.")
            stop(root)
        port = local.free_port(wanted_port)
        trigger_port = local.free_port(8795, taken={port})
        worker_ports = {}
        for worker in WORKERS:
            worker_ports[worker] = local.free_port(trigger_port + 1, taken={port, *worker_ports.values()})
    config = config or os.environ.get("GARDIEN_CONFIG") or str(root / "include" / "config" / "gardien.yaml")
    env_settings = {
        **settings(root, admin_dsn, port=port, trigger_log_port=trigger_port),
        "GARDIEN_CONFIG": str(Path(config).resolve()),
    }
    fp = local.fingerprint(root, {**env_settings, "workers": json.dumps(worker_ports)})
    if running and previous.get("fingerprint") == fp and local.health(port):
        print(f"gardien: distributed Airflow already running at http://127.0.0.1:{port} (unchanged).")
        return env_settings
    if running:
        print("gardien: distributed Airflow settings or plugin code changed; restarting it.")
        stop(root)
    env = local.airflow_env(env_settings)
    _flush_broker(env_settings["AIRFLOW__CELERY__BROKER_URL"])
    print(f"gardien: migrating the Airflow metadata database {METADATA_DB} ...")
    local.migrate(admin_dsn, METADATA_DB, env)
    _set_pool(env)
    new_pids = {
        name: local.spawn(_airflow(name), env=env, log=home / f"{name}.log", cwd=root) for name in COMPONENTS
    }
    offsets = {}
    for worker, log_port in worker_ports.items():
        log = home / f"{worker}.log"
        offsets[worker] = log.stat().st_size if log.exists() else 0
        worker_env = {
            **env,
            HOSTNAME_ENV: f"{worker}.{socket.gethostname()}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
        }
        argv = _airflow(
            "celery", "worker", "--concurrency", str(WORKER_CONCURRENCY), "--celery-hostname", f"{worker}@%h"
        )
        new_pids[worker] = local.spawn(argv, env=worker_env, log=log, cwd=root)
    (home / "pids.json").write_text(json.dumps(new_pids))
    (home / "state.json").write_text(
        json.dumps(
            {
                "port": port,
                "trigger_log_port": trigger_port,
                "worker_log_ports": worker_ports,
                "config": env_settings["GARDIEN_CONFIG"],
                "fingerprint": fp,
            }
        )
    )
    print(
        f"gardien: starting distributed Airflow ({', '.join((*COMPONENTS, *WORKERS))}) "
        f"on http://127.0.0.1:{port} ..."
    )
    local.wait_healthy(port, new_pids, logs=".gardien/airflow-dist", wait=wait)
    _wait_workers_ready(home, offsets, new_pids, wait=wait)
    print("gardien: distributed Airflow is up.")
    return env_settings


def status(root: Path) -> dict[str, object]:
    home = state_dir(root)
    state = local.read_state(home)
    pids = local.read_pids(home)
    return {
        "components": {name: {"pid": pid, "alive": local.alive(pid)} for name, pid in pids.items()},
        "port": state.get("port"),
        "config": state.get("config"),
        "health": local.health(int(state["port"])) if state.get("port") else None,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m gardien.demo.airflow_distributed")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--root", default=".")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--config", default=None, help="GARDIEN_CONFIG of the components (default: $GARDIEN_CONFIG)"
    )
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        if args.action == "stop":
            print(f"gardien: {stop(root)}")
        elif args.action == "start":
            start(root, pg.admin_dsn(), config=args.config, wanted_port=args.port)
        else:
            print(json.dumps(status(root), indent=2))
    except GardienError as exc:
        print(f"gardien: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

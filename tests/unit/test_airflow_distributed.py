"""The distributed stack's launcher: settings, worker hostnames, broker errors (no processes)."""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gardien.demo import airflow_distributed as dist
from gardien.demo import airflow_local
from gardien.errors import EnvironmentUnavailableError

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("env", "expected"),
    [({dist.HOSTNAME_ENV: "worker2.vm"}, "worker2.vm"), ({}, socket.getfqdn())],
    ids=["worker-names-itself", "other-components-use-the-fqdn"],
)
def test_component_hostname_env_set_or_not_names_the_component(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(dist.HOSTNAME_ENV, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert dist.component_hostname() == expected


@pytest.mark.parametrize(
    ("redis_url", "broker"),
    [(None, "redis://127.0.0.1:6379/5"), ("redis://10.0.0.9:6380/2", "redis://10.0.0.9:6380/2")],
    ids=["default-broker-db-5", "GARDIEN_REDIS_URL-overrides"],
)
def test_settings_celery_stack_points_at_broker_and_metadata_db(
    redis_url: str | None, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GARDIEN_REDIS_URL", raising=False)
    if redis_url:
        monkeypatch.setenv("GARDIEN_REDIS_URL", redis_url)
    s = dist.settings(tmp_path, ADMIN, port=8090, trigger_log_port=8795)

    assert s["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert s["AIRFLOW__CELERY__BROKER_URL"] == broker
    assert (
        s["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql://postgres@127.0.0.1:5432/gardien_airflow_dist"
    )
    assert s["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/gardien_airflow_dist")
    assert s["AIRFLOW_HOME"] == str(tmp_path / ".gardien" / "airflow-dist")
    assert s["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8090"
    assert s["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "8795"
    module, _, name = s["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is dist.component_hostname


def test_flush_broker_redis_unreachable_names_the_fix() -> None:
    with pytest.raises(EnvironmentUnavailableError, match=r"Celery broker .* GARDIEN_REDIS_URL"):
        dist._flush_broker(f"redis://127.0.0.1:{_closed_port()}/5")


def test_alive_exited_child_reaped_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603 - never waited for, like a component
    for _ in range(200):  # until it has exited (a zombie until reaped: kill(pid, 0) alone says alive)
        if not airflow_local.alive(proc.pid):
            break
        time.sleep(0.05)
    assert not airflow_local.alive(proc.pid)

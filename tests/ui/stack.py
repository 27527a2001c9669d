"""A private Airflow stack for the browser tests: unique databases, a free port, its own AIRFLOW_HOME.

Never the demo's names (gardien_*) nor port 8080: ``UiStack.start()`` builds the demo environments into
``gt_ui_<hex>_*`` databases, writes a configuration naming them (with a release window open now), starts
scheduler, dag-processor, triggerer and api-server (LocalExecutor) the way ``make demo`` does, and
``stop()`` ends those process groups and drops every database it created.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from gardien import ledger, pg
from gardien.demo import airflow_local
from gardien.restapi import AirflowAPI, AirflowAPIError

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("qualif", "preprod", "prod")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ui_config(*, prefix: str, now: datetime, state: Path) -> dict:
    """The project configuration on the private databases, with a one-off window open now (like the demo)."""
    data = yaml.safe_load((ROOT / "include" / "config" / "gardien.yaml").read_text())
    for env in ENVIRONMENTS:
        data["environments"][env]["database"] = f"{prefix}{env}"
    data["ledger"]["database"] = f"{prefix}ledger"
    data["validation"]["suites_dir"] = str(ROOT / "include" / "expectations")
    data["notifications"]["slack"]["outbox"] = str(state / "slack-outbox.jsonl")
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    data["calendar"]["one_off"] = [
        {
            "name": "ui-test",
            "start": f"{start:%Y-%m-%dT%H:%M}",
            "end": f"{start + timedelta(hours=2):%Y-%m-%dT%H:%M}",
        }
    ]
    data["calendar"]["timezone"] = "UTC"
    data["calendar"]["windows"] = []
    data["calendar"]["public_holidays"] = {"enabled": False}
    data["calendar"]["freezes"] = []
    return data


@dataclass
class UiStack:
    admin_dsn: str
    prefix: str = field(default_factory=lambda: f"gt_ui_{uuid.uuid4().hex[:8]}_")
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gardien-ui-")))
    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ledger_dsn(self) -> str:
        return pg.dsn_for_database(self.admin_dsn, f"{self.prefix}ledger")

    def password(self, user: str) -> str:
        return airflow_local.DEMO_USERS[user][1]

    def api(self, user: str) -> AirflowAPI:
        return AirflowAPI(base_url=self.base_url, username=user, password=self.password(user))

    def start(self) -> None:
        from gardien.demo.generator import build_environments

        state = self.home / "state"
        state.mkdir(parents=True, exist_ok=True)
        self.created.extend(f"{self.prefix}{env}" for env in ENVIRONMENTS)
        build_environments(self.admin_dsn, prefix=self.prefix)
        self.created.append(f"{self.prefix}ledger")
        pg.create_database(self.admin_dsn, f"{self.prefix}ledger")
        conn = pg.connect(self.ledger_dsn)
        ledger.ensure_schema(conn)
        conn.commit()
        conn.close()
        config = self.home / "gardien.yaml"
        config.write_text(yaml.safe_dump(ui_config(prefix=self.prefix, now=datetime.now(UTC), state=state)))
        os.environ["GARDIEN_CONFIG"] = str(config)
        metadata = f"{self.prefix}airflow"
        self.created.append(metadata)
        (self.home / "airflow").mkdir()
        settings = airflow_local.base_settings(
            ROOT, self.admin_dsn, port=self.port, home=self.home / "airflow", metadata_db=metadata
        )
        settings["GARDIEN_CONFIG"] = str(config)
        settings["GARDIEN_STATE_DIR"] = str(state)
        settings["AIRFLOW__CORE__PARALLELISM"] = "4"
        self.settings = settings
        env = airflow_local.airflow_env(settings)
        airflow_local.migrate(self.admin_dsn, metadata, env)
        pids = {
            name: airflow_local.spawn(["airflow", name], env=env, log=self.home / f"{name}.log", cwd=ROOT)
            for name in airflow_local.COMPONENTS
        }
        (self.home / "airflow" / "pids.json").write_text(json.dumps(pids))
        airflow_local.wait_healthy(self.port, pids, logs=str(self.home), wait=240)

    def wait_for_dags(self, *dag_ids: str, timeout: float = 240) -> None:
        admin = self.api("admin")
        deadline = time.monotonic() + timeout
        for dag_id in dag_ids:
            while True:
                try:
                    admin.dag(dag_id)
                    admin.set_paused(dag_id, False)
                    break
                except AirflowAPIError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(2)

    def stop(self) -> None:
        if os.environ.get("GARDIEN_UI_LOGS"):  # keep the components' logs for a failed run
            shutil.copytree(
                self.home,
                os.environ["GARDIEN_UI_LOGS"],
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("*.db"),
            )
        airflow_local.stop_processes(self.home / "airflow")
        for name in self.created:
            try:
                pg.drop_database(self.admin_dsn, name)
            except Exception as exc:  # noqa: BLE001 - keep dropping the others
                print(f"could not drop {name}: {exc}")
        if not os.environ.get("GARDIEN_UI_KEEP"):
            shutil.rmtree(self.home, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in sorted(self.home.glob("*.log"))
        )


def run_command(*argv: str, env: dict[str, str]) -> str:
    res = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False, timeout=300)  # noqa: S603
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{res.stderr[-2000:]}")
    return res.stdout

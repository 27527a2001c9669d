"""Distributed tier: real releases on the CeleryExecutor stack (gardien.demo.airflow_distributed).

One session builds every scenario's databases, writes one configuration with one release path per scenario,
starts (or reuses) the stack, triggers all runs at once and answers their approvals like people through the
REST API; the tests then check what each run left in the databases and the ledger. Running the scenarios
side by side keeps the tier's wall time near that of its slowest run.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

from gardien import ledger, pg
from gardien.demo import airflow_distributed, airflow_local
from gardien.restapi import AirflowAPI, AirflowAPIError, seconds_until_settled

ROOT = Path(__file__).resolve().parents[2]
REQUESTER = "parametreur"
TERMINAL = {"success", "failed"}
RUN_TIMEOUT = 2700  # seconds for all runs together (a slow shared machine; a normal session takes far less)
CONFIG_NAME = "release-config.yaml"  # GARDIEN_CONFIG of the stack; rewritten per session, read per task


@dataclass(frozen=True, slots=True)
class Scenario:
    path: str  # release path, DAG gardien_release_<path>
    env_prefix: str  # "" for the main scenario (qualif, preprod, prod_01...), else e.g. "b_"
    targets: int
    policy: str
    fails_on: str | None = None  # a smoke probe fails verification on this target (e.g. "prod_07")
    with_preprod: bool = True  # a preprod stage before the production stage
    down_target: str | None = None  # this target's DSN names a closed port
    missing_table: tuple[str, str] | None = None  # (target, managed table dropped from its schema)

    @property
    def dag_id(self) -> str:
        return f"gardien_release_{self.path}"

    def env(self, name: str) -> str:
        return f"{self.env_prefix}{name}"

    @property
    def production(self) -> list[str]:
        return [self.env(f"prod_{i:02d}") for i in range(1, self.targets + 1)]


# Every GX-backed verification costs CPU: the failure scenarios skip the preprod stage, and whole_stage uses
# four targets (the policy, not the count, is what it proves).
SCENARIOS = (
    Scenario(path="ght", env_prefix="", targets=10, policy="failed_target"),
    Scenario(
        path="ght_failed_target",
        env_prefix="b_",
        targets=10,
        policy="failed_target",
        fails_on="prod_07",
        with_preprod=False,
    ),
    Scenario(
        path="ght_whole_stage",
        env_prefix="c_",
        targets=4,
        policy="whole_stage",
        fails_on="prod_03",
        with_preprod=False,
    ),
    Scenario(
        path="ght_target_down",
        env_prefix="d_",
        targets=4,
        policy="failed_target",
        down_target="prod_03",
        missing_table=("prod_04", "champ_formulaire"),
        with_preprod=False,
    ),
)


@dataclass
class RunResult:
    scenario: Scenario
    run_id: str
    state: str
    task_instances: list[dict[str, Any]]
    history: ledger.ReleaseHistory

    def states(self, task_id: str) -> dict[int, str]:
        """map_index → state of one task (-1 for an unmapped task)."""
        return {ti["map_index"]: ti["state"] for ti in self.task_instances if ti["task_id"] == task_id}

    def latest_deployments(self) -> dict[str, ledger.DeploymentRecord]:
        latest: dict[str, ledger.DeploymentRecord] = {}
        for d in self.history.deployments:
            latest[d.environment] = d
        return latest


@dataclass
class Fleet:
    """The databases of some scenarios: each one's qualif, preprod and production targets (+ its ledger)."""

    databases: dict[str, str] = field(default_factory=dict)  # environment → database name
    dsns: dict[str, str] = field(default_factory=dict)  # environment → DSN
    pristine_prod: dict[str, str] = field(default_factory=dict)  # scenario path → untouched production copy
    dsn_overrides: dict[str, str] = field(default_factory=dict)  # environment → server DSN (a target down)
    ledger_db: str = ""
    created: list[str] = field(default_factory=list)  # dropped by drop_fleet


@dataclass
class Session:
    config_file: Path
    admin_dsn: str
    dsns: dict[str, str]  # environment → DSN
    pristine_prod: dict[str, str]  # scenario path → DSN of the untouched production template
    results: dict[str, RunResult] = field(default_factory=dict)
    wall_seconds: float = 0.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on exit: nothing listens there


def copy_database(admin: str, source: str, name: str) -> str:
    from psycopg2 import sql

    with pg.autocommit(admin) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source))
        )
    return pg.dsn_for_database(admin, name)


def drop_table(dsn: str, table: str) -> None:
    from psycopg2 import sql

    with pg.autocommit(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(table)))


def write_config(path: Path, *, fleet: Fleet, scenarios: tuple[Scenario, ...], now: datetime) -> None:
    """The project configuration with the fleet's environments, one release path per scenario, and a
    one-off window open now (UTC, no recurring window, no public holidays)."""
    data = yaml.safe_load((ROOT / "include" / "config" / "gardien.yaml").read_text())
    server = data["environments"]["qualif"]["dsn"]  # ${GARDIEN_PG_DSN:-...}: the same server for every target
    data["environments"] = {
        env: {
            "dsn": fleet.dsn_overrides.get(env, server),
            "database": db,
            **({"role": "source"} if env.endswith("qualif") else {}),
            **({"production": True} if "prod_" in env else {}),
        }
        for env, db in fleet.databases.items()
    }
    data["ledger"] = {"dsn": server, "database": fleet.ledger_db}
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    data["calendar"] = {
        "timezone": "UTC",
        "windows": [],
        "one_off": [
            {
                "name": "distributed-test",
                "start": f"{start:%Y-%m-%dT%H:%M}",
                "end": f"{start + timedelta(hours=3):%Y-%m-%dT%H:%M}",
            }
        ],
        "public_holidays": {"enabled": False},
    }
    failing = [fleet.databases[s.env(s.fails_on)] for s in scenarios if s.fails_on]
    if failing:  # database names come from build_fleet (prefix checked by the generator), not from input
        data["smoke_probes"] = [
            *(data.get("smoke_probes") or []),
            {
                "name": "test_probe_fails_on_one_establishment",
                "description": "test only: fails on the establishment chosen to fail verification",
                "sql": "SELECT current_database() AS failing WHERE current_database() IN ("
                + ", ".join(f"'{name}'" for name in failing)
                + ")",
            },
        ]
    data["approvals"]["routing"] = []  # two CAB seats per run; content routing is tested elsewhere
    data["approvals"]["environments"] = {
        s.env("prod_01"): {"quorum": 2, "groups": ["cab"]} for s in scenarios
    }
    data["release_paths"] = {
        s.path: {
            "source": s.env("qualif"),
            "stages": [
                *([{"name": "preprod", "targets": [s.env("preprod")]}] if s.with_preprod else []),
                {"name": "etablissements", "targets": s.production},
            ],
            "rollback": "stage",
            "multi_target_policy": s.policy,
            "min_window_minutes": 15,
        }
        for s in scenarios
    }
    data.pop("notifications", None)  # no Slack in this tier
    path.write_text(
        "# Written by tests/distributed: the distributed test's release paths.\n"
        + yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    )


class Driver:
    """Triggers the runs and answers each run's Required Actions with distinct approvers until all end."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.clients: dict[str, AirflowAPI] = {}

    def api(self, user: str) -> AirflowAPI:
        if user not in self.clients:
            password = airflow_local.DEMO_USERS[user][1]
            self.clients[user] = AirflowAPI(base_url=self.base_url, username=user, password=password)
        return self.clients[user]

    def wait_parsed(self, dag_ids: list[str], *, since: datetime, timeout: float = 180) -> None:
        """Wait until every DAG was parsed after ``since`` (the configuration rewrite)."""
        admin = self.api("admin")
        deadline = time.monotonic() + timeout
        pending = set(dag_ids)
        while pending:
            for dag_id in sorted(pending):
                try:
                    parsed = admin.dag(dag_id).get("last_parsed_time")
                except AirflowAPIError:
                    continue
                if parsed and datetime.fromisoformat(parsed.replace("Z", "+00:00")) > since:
                    pending.discard(dag_id)
            if pending and time.monotonic() > deadline:
                errors = admin.import_errors()
                raise AssertionError(
                    f"DAGs {sorted(pending)} not (re)parsed in {timeout}s; import errors: {errors}"
                )
            time.sleep(2)

    def trigger(self, dag_id: str) -> str:
        self.api("admin").set_paused(dag_id, False)
        run = self.api(REQUESTER).trigger(
            dag_id,
            logical_date=datetime.now(UTC).isoformat(),
            conf={"requested_by": REQUESTER, "reason": "distributed test release"},
        )
        return run["dag_run_id"]

    def drive(self, runs: dict[str, str], *, timeout: float) -> dict[str, str]:
        admin = self.api("admin")
        used = {dag_id: {REQUESTER} for dag_id in runs}
        done: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while len(done) < len(runs):
            for dag_id, run_id in runs.items():
                if dag_id in done:
                    continue
                state = admin.run(dag_id, run_id)["state"]
                if state in TERMINAL:
                    done[dag_id] = state
                    continue
                for detail in admin.pending_actions(dag_id, run_id):
                    free = [u["id"] for u in detail["assigned_users"] if u["id"] not in used[dag_id]]
                    if not free or seconds_until_settled(detail):
                        continue
                    changeset = ((detail.get("params") or {}).get("changeset_id") or {}).get("value", "")
                    try:
                        self.api(free[0]).answer(
                            dag_id=dag_id,
                            run_id=run_id,
                            task_id=detail["task_instance"]["task_id"],
                            option="Approve",
                            params_input={"changeset_id": changeset, "reason": ""},
                        )
                        used[dag_id].add(free[0])
                    except AirflowAPIError as exc:
                        if exc.status != 409:  # 409: answered meanwhile; anything else is a real failure
                            raise
            if time.monotonic() > deadline:
                raise AssertionError(f"runs not finished within {timeout}s: {sorted(set(runs) - set(done))}")
            time.sleep(2)
        return done


def release_history(ledger_dsn: str, path: str) -> ledger.ReleaseHistory:
    conn = psycopg2.connect(ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM ledger.releases WHERE starts_with(id, %s)", (f"R-{path}-",))
            (release_id,) = cur.fetchone()
        return ledger.release_history(conn, release_id)
    finally:
        conn.close()


def build_fleet(admin: str, *, prefix: str, scenarios: tuple[Scenario, ...]) -> Fleet:
    """Build the demo environments once, then copy them per scenario (CREATE DATABASE ... TEMPLATE).

    Each scenario gets its qualif and preprod, and its production targets prod_01..NN as copies of one
    untouched production database, kept to prove rollbacks. On failure what was created is dropped.
    """
    from gardien.demo.generator import build_environments

    fleet = Fleet(ledger_db=f"{prefix}ledger")
    try:
        base = build_environments(admin, prefix=prefix)
        fleet.created.extend(e.database for e in base.environments)
        for s in scenarios:
            letters = s.env_prefix or "a_"
            for role in ("qualif", "preprod", "prod"):
                name = f"{prefix}{letters}{role}"
                dsn = copy_database(admin, f"{prefix}{role}", name)
                fleet.created.append(name)
                if role == "prod":
                    fleet.pristine_prod[s.path] = dsn
                else:
                    fleet.databases[s.env(role)], fleet.dsns[s.env(role)] = name, dsn
            for env in s.production:
                name = f"{prefix}{letters}{env.removeprefix(s.env_prefix)}"
                fleet.dsns[env] = copy_database(admin, f"{prefix}{letters}prod", name)
                fleet.created.append(name)
                fleet.databases[env] = name
            if s.missing_table:  # a target whose schema lacks a managed table (e.g. an older EHR version)
                drop_table(fleet.dsns[s.env(s.missing_table[0])], s.missing_table[1])
            if s.down_target:
                fleet.dsn_overrides[s.env(s.down_target)] = (
                    f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
                )
        _migrate(pg.create_database(admin, fleet.ledger_db))
        fleet.created.append(fleet.ledger_db)
    except BaseException:
        drop_fleet(admin, fleet)
        raise
    return fleet


def drop_fleet(admin: str, fleet: Fleet) -> None:
    for name in fleet.created:
        pg.drop_database(admin, name)


@pytest.fixture(scope="session")
def distributed(pg_admin_dsn: str) -> Iterator[Session]:
    admin = pg_admin_dsn
    fleet = build_fleet(admin, prefix=f"gt_dist_{uuid.uuid4().hex[:6]}_", scenarios=SCENARIOS)
    try:
        config_file = airflow_distributed.state_dir(ROOT) / CONFIG_NAME
        written_at = datetime.now(UTC)
        write_config(config_file, fleet=fleet, scenarios=SCENARIOS, now=written_at)
        settings = airflow_distributed.start(ROOT, admin, config=str(config_file))
        driver = Driver(f"http://127.0.0.1:{settings['AIRFLOW__API__PORT']}")
        driver.wait_parsed([s.dag_id for s in SCENARIOS], since=written_at)
        started = time.monotonic()
        runs = {s.dag_id: driver.trigger(s.dag_id) for s in SCENARIOS}
        states = driver.drive(runs, timeout=RUN_TIMEOUT)
        session = Session(
            config_file=config_file,
            admin_dsn=admin,
            dsns=fleet.dsns,
            pristine_prod=fleet.pristine_prod,
            wall_seconds=round(time.monotonic() - started, 1),
        )
        ledger_dsn = pg.dsn_for_database(admin, fleet.ledger_db)
        admin_api = driver.api("admin")
        for s in SCENARIOS:
            session.results[s.path] = RunResult(
                scenario=s,
                run_id=runs[s.dag_id],
                state=states[s.dag_id],
                task_instances=admin_api.task_instances(s.dag_id, runs[s.dag_id]),
                history=release_history(ledger_dsn, s.path),
            )
        print(f"\ndistributed runs: {states} in {session.wall_seconds} s")
        yield session
    finally:
        drop_fleet(admin, fleet)


def _migrate(ledger_dsn: str) -> None:
    """What `gardien ledger migrate` does before any release (steps no longer create the schema)."""
    conn = pg.connect(ledger_dsn)
    try:
        ledger.migrate(conn)
        conn.commit()
    finally:
        conn.close()

"""`make compose-check`: start docker-compose.yml for real (podman + podman-compose) and run releases through it.

Steps: images (official, or local ones from Debian's packages) → secrets generated for this run → postgres and
redis healthy → airflow-init completes → every service healthy → demo environments → release 1 through the
REST API (approvals answered by each approver) → outcome checked in the ledger, the run note and the artifacts
→ the stack restarted (containers recreated, volumes kept) and release 1's report read back → workers scaled
to 3 → release 2 with the worker running a deployment killed → released or rolled back, never half-applied →
everything stopped and removed. The wall time and the result are appended to docs/compose-check.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))

import compose_images  # noqa: E402

from gardien.demo import airflow_local  # noqa: E402
from gardien.demo.run import DAG_ID, api_clients, demo_config, follow_run, trigger_release  # noqa: E402
from gardien.errors import GardienError  # noqa: E402

PROJECT = "gardien-check"
STATE = ROOT / ".gardien" / "compose"
SERVICES = (
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
SECRETS = (
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "GARDIEN_DB_PASSWORD",
    "LEDGER_OWNER_PASSWORD",
    "LEDGER_WRITER_PASSWORD",
    "REDIS_PASSWORD",
)
STARTED = time.monotonic()
SEEN: list[str] = []  # what each step showed, for the line recorded in docs/compose-check.md


def seen(text: str) -> None:
    SEEN.append(text)


def elapsed() -> float:
    return time.monotonic() - STARTED


class CheckFailed(RuntimeError):
    """A step of the check did not show what it must (the message says what was seen)."""


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say(f"\n== [{time.monotonic() - STARTED:6.0f}s] {title}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings(images: dict[str, str], limits: compose_images.Limits) -> dict[str, str]:
    """The compose variables of this run: fresh secrets, a passwords file, a configuration with a window now."""
    STATE.mkdir(parents=True, exist_ok=True)
    values = {name: secrets.token_urlsafe(24) for name in SECRETS}
    values["AIRFLOW_FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    passwords = {user: secrets.token_urlsafe(12) for user in airflow_local.DEMO_USERS}
    pw_file = STATE / "passwords.json"
    pw_file.write_text(json.dumps(passwords))
    pw_file.chmod(0o600)
    if os.geteuid() == 0:  # Airflow's simple auth manager opens it for appending, as uid 50000
        os.chown(pw_file, 50000, 0)
    config_dir = STATE / "config"
    config_dir.mkdir(exist_ok=True)
    demo_config(ROOT, datetime.now(UTC), path=config_dir / "gardien.yaml").chmod(0o644)
    port = free_port()
    return {
        **values,
        **images,
        "AIRFLOW_PASSWORDS_FILE": str(pw_file),
        "GARDIEN_CONFIG_DIR": str(config_dir),
        "AIRFLOW_API_PORT": str(port),
        "AIRFLOW_BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW_TASK_HEARTBEAT_TIMEOUT": "60",
        "GARDIEN_ULIMIT_NOFILE": str(limits.nofile),
        "GARDIEN_ULIMIT_NPROC": str(limits.nproc),
        "GARDIEN_WORKERS": "2",
        "_PASSWORDS": json.dumps(passwords),
    }


class Stack:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, **{k: v for k, v in self.env.items() if not k.startswith("_")}}
        res = subprocess.run(  # noqa: S603
            ["podman-compose", "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml"), *args],  # noqa: S607
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if check and res.returncode != 0:
            raise CheckFailed(f"podman-compose {' '.join(args)} failed:\n{(res.stdout + res.stderr)[-2500:]}")
        return res

    def containers(self, service: str) -> list[str]:
        res = compose_images.podman(
            "ps", "-a", "--format", "{{.Names}}", "--filter", f"name=^{PROJECT}_{service}_"
        )
        return sorted(res.stdout.split())

    def one(self, service: str) -> str:
        names = self.containers(service)
        if not names:
            raise CheckFailed(f"no container for service {service}")
        return names[0]

    def exec(self, service: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        res = compose_images.podman("exec", self.one(service), *cmd, check=False, timeout=900)
        if check and res.returncode != 0:
            raise CheckFailed(
                f"{service}: {' '.join(cmd)} exited {res.returncode}:\n{(res.stdout + res.stderr)[-2500:]}"
            )
        return res

    def wait_healthy(self, names: list[str], *, timeout: float = 900) -> None:
        """Run each container's own healthcheck until it passes (podman runs them only under systemd)."""
        pending = dict.fromkeys(names, 0.0)
        deadline = time.monotonic() + timeout
        while pending:
            for name in list(pending):
                if (
                    compose_images.podman("healthcheck", "run", name, check=False, timeout=120).returncode
                    == 0
                ):
                    say(f"  {name:<44} healthy after {time.monotonic() - STARTED:5.0f} s")
                    del pending[name]
                    continue
                restarts = compose_images.podman(
                    "inspect", "--format", "{{.RestartCount}}", name, check=False
                )
                if restarts.stdout.strip() not in ("", "0", "1", "2"):
                    logs = compose_images.podman("logs", "--tail", "25", name, check=False)
                    raise CheckFailed(f"{name} keeps restarting:\n{(logs.stdout + logs.stderr)[-2500:]}")
            if pending and time.monotonic() > deadline:
                logs = {
                    n: compose_images.podman("logs", "--tail", "30", n, check=False).stderr[-1500:]
                    for n in pending
                }
                raise CheckFailed(f"not healthy within {timeout:.0f} s: {', '.join(pending)}\n{logs}")
            if pending:
                time.sleep(5)

    def up_all(self) -> None:
        self.compose("up", "-d", "postgres", "redis")
        self.wait_healthy([self.one("postgres"), self.one("redis")])
        self.compose("up", "-d", "airflow-init")
        init = self.one("airflow-init")
        code = compose_images.podman("wait", init, timeout=900).stdout.strip()
        say(f"  airflow-init exited {code}")
        if code != "0":
            raise CheckFailed(
                f"airflow-init failed:\n{compose_images.podman('logs', init, check=False).stderr[-3000:]}"
            )
        self.compose("up", "-d")
        names = [self.one(s) for s in SERVICES] + self.containers("airflow-worker")
        self.wait_healthy(names)


def gardien_json(stack: Stack, *args: str) -> Any:
    return json.loads(stack.exec("airflow-apiserver", "gardien", *args, "--json").stdout)


def check_release(stack: Stack, state: dict[str, Any], api: Any) -> dict[str, Any]:
    """The run's outcome as recorded in the artifacts, the ledger and the run note; they must agree."""
    run_id = state["dag_run_id"]
    listing = stack.exec(
        "airflow-apiserver", "sh", "-c", "ls -t /opt/gardien/state/releases/*/outcome.json"
    ).stdout
    outcome = json.loads(stack.exec("airflow-apiserver", "cat", listing.split()[0]).stdout)
    release_id = outcome["release_id"]
    events = gardien_json(stack, "audit", "log", "--release", release_id)
    kinds = [e.get("kind") for e in (events if isinstance(events, list) else events.get("events", []))]
    note = ""
    for _ in range(30):  # the plugin's listener sets the note just after the run ends
        note = (api.run(DAG_ID, run_id).get("note") or "").strip()
        if note:
            break
        time.sleep(2)
    say(f"  run {run_id}: {state['state']} in {state['wall_seconds']} s")
    say(f"  outcome {outcome['outcome'].upper()} — {outcome.get('detail', '')}")
    say(f"  ledger: {len(kinds)} events for {release_id}: {', '.join(dict.fromkeys(kinds))}")
    say(f"  run note: {note.splitlines()[0] if note else '(none)'}")
    verify = stack.exec("airflow-apiserver", "gardien", "audit", "verify", check=False)
    say(f"  audit verify: exit {verify.returncode} {verify.stdout.strip().splitlines()[-1:]}")
    if verify.returncode != 0 or not kinds or not note:
        raise CheckFailed(f"release {release_id}: ledger chain, events or run note missing")
    if outcome["outcome"].lower() not in note.lower():
        raise CheckFailed(f"the run note does not state the outcome {outcome['outcome']!r}: {note[:300]}")
    seen(
        f"{outcome['outcome'].upper()} in {state['wall_seconds']:.0f} s, {len(kinds)} ledger events, "
        "run note states it, `audit verify` exit 0"
    )
    return outcome


def plant_changes(stack: Stack) -> None:
    """Edits a configuration team makes in qualif for the next release."""
    sql = (
        "UPDATE parametre_global SET valeur = valeur || '-v2' WHERE cle IN "
        "(SELECT cle FROM parametre_global ORDER BY cle LIMIT 3);"
        "INSERT INTO parametre_global (cle, valeur, description) VALUES "
        "('COMPOSE_CHECK_FLAG', 'on', 'added by make compose-check');"
    )
    stack.exec(
        "postgres", "psql", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "gardien_qualif", "-c", sql
    )


def pending(stack: Stack, target: str) -> tuple[str, int]:
    """(id, size) of the changeset qualif holds over ``target``: the id is content-addressed over both sides'
    fingerprints, so an equal id means ``target`` is exactly as it was; size 0 means it equals qualif."""
    data = gardien_json(stack, "diff", "qualif", target)
    tables = data["changeset"]["tables"]
    return data["id"], sum(len(t["inserts"]) + len(t["updates"]) + len(t["deletes"]) for t in tables)


class WorkerKiller:
    """Kills the worker container running the first deployment task seen running (once)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.killed: dict[str, Any] | None = None

    def __call__(self, tis: list[dict]) -> None:
        if self.killed:
            return
        for ti in tis:
            if ti.get("state") == "running" and "deploy_" in ti["task_id"] and ti.get("hostname"):
                for name in self.stack.containers("airflow-worker"):
                    host = compose_images.podman(
                        "inspect", "--format", "{{.Config.Hostname}}", name
                    ).stdout.strip()
                    if host and ti["hostname"].startswith(host):
                        compose_images.podman("kill", "--signal", "KILL", name)
                        self.killed = {
                            "task": ti["task_id"],
                            "try": ti.get("try_number"),
                            "container": name,
                            "host": host,
                        }
                        say(
                            f"  killed {name} (kill -9) while it ran {ti['task_id']} try {ti.get('try_number')}"
                        )
                        return


def run(keep: bool) -> tuple[str, str]:
    limits = compose_images.host_limits()
    step(f"Images (container limits nofile={limits.nofile} nproc={limits.nproc})")
    images = compose_images.ensure_images(ROOT, STATE, limits=limits, say=say)
    local = images["AIRFLOW_IMAGE"] != compose_images.OFFICIAL["AIRFLOW_IMAGE"]
    seen(f"images ({'local, from Debian' if local else 'official'}) {elapsed() / 60:.1f} min")
    env = settings(images, limits)
    stack = Stack(env)
    passwords = json.loads(env["_PASSWORDS"])
    api_for = api_clients(env["AIRFLOW_BASE_URL"], passwords, timeout=90)  # one API process, a busy machine
    admin = api_for("admin")
    stack.compose("down", "-v", check=False)
    try:
        step(
            "Stack: postgres, redis → airflow-init → api-server, scheduler, dag-processor, triggerer, 2 workers"
        )
        stack.up_all()
        seen(f"stack healthy at {elapsed() / 60:.1f} min")
        step("Demo environments (qualif, preprod, prod) as the deployer role")
        stack.exec("airflow-apiserver", "gardien", "demo", "build", "--prefix", "gardien_")
        state = follow_run(
            api_for, admin, trigger_release(api_for, reason="compose-check: première mise en production")
        )
        step("Release 1: outcome in the artifacts, the ledger and the run note")
        seen("release 1")
        first = check_release(stack, state, admin)
        if state["state"] != "success" or first["outcome"].lower() != "released":
            raise CheckFailed(f"release 1 ended {state['state']} / {first['outcome']}")
        step("Restart: containers removed and recreated, volumes kept")
        stack.compose("down")
        stack.up_all()
        report = stack.exec(
            "airflow-apiserver", "ls", f"/opt/gardien/state/releases/{first['release_id']}"
        ).stdout.split()
        say(f"  release 1 artifacts after the restart: {', '.join(report)}")
        if "report.html" not in report:
            raise CheckFailed("release 1's report.html is gone after the restart")
        seen("restart (containers recreated, volumes kept): release 1's report.html read back")
        step("Scale the workers to 3")
        env["GARDIEN_WORKERS"] = "3"
        stack.compose("up", "-d")
        stack.wait_healthy(stack.containers("airflow-worker"))
        seen("workers scaled to 3")
        step("Release 2 with a worker killed during a deployment")
        plant_changes(stack)
        before = {t: pending(stack, t) for t in ("preprod", "prod")}
        if not all(size for _, size in before.values()):
            raise CheckFailed(f"the planted changes are not pending on every target: {before}")
        killer = WorkerKiller(stack)
        state = follow_run(
            api_for,
            admin,
            trigger_release(api_for, reason="compose-check: seconde mise en production"),
            on_poll=killer,
        )
        seen("release 2")
        second = check_release(stack, state, admin)
        after = {t: pending(stack, t) for t in ("preprod", "prod")}
        say(f"  pending changes over qualif: before {before}, after {after}")
        verdict = judge(second, before, after, killer.killed, admin, state["dag_run_id"])
        say(f"  {verdict}")
        seen(verdict)
        return "passed", verdict
    finally:
        if not keep:
            step("Stop and remove everything (containers, network, volumes)")
            down = stack.compose("down", "-v", check=False)
            seen(
                "everything removed (`down -v`)"
                if down.returncode == 0
                else f"`down -v` exited {down.returncode}"
            )


def judge(outcome: dict, before: dict, after: dict, killed: dict | None, api: Any, run_id: str) -> str:
    """Released: every target now equals qualif. Not released: every target exactly as before. Else: fail."""
    if killed is None:
        raise CheckFailed("no deployment task was seen running: no worker was killed")
    tries = {
        ti["task_id"]: (ti.get("try_number"), ti.get("hostname"), ti.get("state"))
        for ti in api.task_instances(DAG_ID, run_id)
    }
    retried = tries.get(killed["task"])
    say(f"  killed task {killed['task']}: now try {retried[0]} on {retried[1]} ({retried[2]})")
    if outcome["outcome"].lower() == "released":
        if any(size for _, size in after.values()):
            raise CheckFailed(f"RELEASED but a target still differs from qualif: {after}")
        return f"worker killed during {killed['task']}; the task was retried (try {retried[0]} on {retried[1]}) and the release completed: preprod and prod equal qualif"
    if any(after[t][0] != before[t][0] for t in before):
        raise CheckFailed(f"not released and a target changed: half-applied? before={before} after={after}")
    return f"worker killed during {killed['task']}; release {outcome['outcome']}: every target exactly as before (nothing half-applied)"


def summary(parts: list[str]) -> str:
    """The recorded detail of a passed run: each step's figures ("release 1" joins the figures after it)."""
    text = "; ".join(parts).replace("release 1; ", "release 1 ").replace("release 2; ", "release 2 ")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{text}; load average at the end {load}"


def record(result: str, detail: str, wall: float) -> None:
    path = ROOT / "docs" / "compose-check.md"
    line = f"| {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {result} | {wall / 60:.1f} min | {detail} |\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
    say(f"\nrecorded in {path.relative_to(ROOT)}: {line.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/compose_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end (inspection)")
    args = parser.parse_args(argv)
    for tool in ("podman", "podman-compose"):
        if shutil.which(tool) is None:
            print(
                f"compose-check: error: {tool} is not installed (apt-get install podman runc podman-compose "
                "debootstrap uidmap slirp4netns fuse-overlayfs); nothing was changed",
                file=sys.stderr,
            )
            return 3
    try:
        result, detail = run(args.keep)
        code = 0
    except (CheckFailed, compose_images.ImageError, GardienError, OSError, subprocess.TimeoutExpired) as exc:
        result, detail, code = "FAILED", str(exc).splitlines()[0][:300], 1
        print(f"\ncompose-check: FAILED: {exc}", file=sys.stderr)
    wall = elapsed()
    say(f"\ncompose-check: {result} in {wall / 60:.1f} min")
    if code == 0:
        detail = summary(SEEN)
    record(result, detail, wall)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

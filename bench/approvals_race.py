"""Approval answers under load: N approval cycles answered 0–10 s after each request, with a CPU burner beside.

    .venv/bin/python bench/approvals_race.py [--runs 20] [--burners 2] [--out result.json]

Starts its own Airflow (scheduler, dag-processor, api-server; LocalExecutor) on a free port with uniquely named
metadata and ledger databases, runs ``bench/dags_approvals`` (10 independent approval seats per DAG run, the
production operator and retry settings), and answers every Required Action through the REST API as an assigned
user at a uniformly random delay of 0–10 s after Airflow created it. Airflow 3.3.2 can lose an answer given
while the task is still pausing into ``awaiting_input``; the benchmark counts, per answer given (HTTP 200):

- kept: the seat ended ``success`` with exactly that answer (same user, same Airflow response time);
- lost: an answer given whose seat did not end with it (failed, asked again, or resumed with another answer);
- never asked: seats that failed before asking (Airflow's own API errors under load), so no answer was given;
- retried: seats whose first try was lost by Airflow and that resumed from the answer already given;
- in the ledger: answers recorded as ``approval.answered`` (source ``api``: recorded by the API server).

Everything it starts is stopped and its databases dropped at the end. Needs GARDIEN_PG_DSN (make pg).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import yaml

from gardien import pg
from gardien.demo import airflow_local as af
from gardien.errors import EnvironmentUnavailableError
from gardien.restapi import AirflowAPI, AirflowAPIError

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "gardien_bench_approvals"
SEATS = 10
MAX_DELAY = 10.0


def say(line: str) -> None:
    print(f"[approvals-race {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


class Stack:
    """Our own Airflow + ledger, uniquely named; ``close()`` stops and drops everything it created."""

    def __init__(self, admin_dsn: str, home: Path) -> None:
        tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.admin_dsn, self.home = admin_dsn, home
        self.metadata_db, self.ledger_db = f"gardien_bench_airflow_{tag}", f"gardien_bench_ledger_{tag}"
        self.port = af.free_port(18480)
        self.pids: dict[str, int] = {}
        self.burners: list[subprocess.Popen] = []

    def start(self) -> dict[str, str]:
        from gardien import ledger

        conn = pg.connect(pg.create_database(self.admin_dsn, self.ledger_db))
        try:  # `gardien ledger migrate` (the seats work as the writer role and never create the schema)
            ledger.migrate(conn)
            conn.commit()
        finally:
            conn.close()
        config = yaml.safe_load((ROOT / "include" / "config" / "gardien.yaml").read_text())
        config["ledger"]["database"] = self.ledger_db
        config_file = self.home / "gardien.yaml"
        config_file.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
        os.environ["GARDIEN_CONFIG"] = str(config_file)
        settings = af.base_settings(
            ROOT, self.admin_dsn, port=self.port, home=self.home, metadata_db=self.metadata_db
        )
        settings["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "bench" / "dags_approvals")
        settings["AIRFLOW__CORE__PARALLELISM"] = "16"
        settings["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] = "5"
        env = af.airflow_env(settings)
        say(f"migrating {self.metadata_db} ...")
        af.migrate(self.admin_dsn, self.metadata_db, env)
        for name in ("scheduler", "dag-processor", "api-server"):
            self.pids[name] = af.spawn(["airflow", name], env=env, log=self.home / f"{name}.log", cwd=ROOT)
        (self.home / "pids.json").write_text(json.dumps(self.pids))
        af.wait_healthy(self.port, self.pids, logs=str(self.home), wait=240)
        say(f"Airflow up on port {self.port} (logs in {self.home})")
        return settings

    def burn(self, n: int) -> None:
        for _ in range(n):
            self.burners.append(
                subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)  # noqa: S603
            )

    def close(self) -> None:
        for proc in self.burners:
            proc.kill()
            proc.wait()
        af.stop_processes(self.home)
        for db in (self.metadata_db, self.ledger_db):
            try:
                pg.drop_database(self.admin_dsn, db)
            except Exception as exc:  # noqa: BLE001 - report, keep cleaning
                say(f"could not drop {db}: {exc}")


class Answerer:
    """Answers each Required Action at created_at + U(0, 10 s) as an assigned user; notes what it gave."""

    def __init__(self, api_url: str, passwords: dict[str, str], rng: random.Random) -> None:
        self.api_url, self.passwords, self.rng = api_url, passwords, rng
        self.admin = AirflowAPI(base_url=api_url, username="admin", password=passwords["admin"], timeout=60)
        self.given: dict[tuple[str, str], dict[str, Any]] = {}  # (run, task) -> first answer given
        self.asked_again: list[tuple[str, str, int]] = []
        self.errors: list[str] = []
        self.delays: list[float] = []
        self._scheduled: set[tuple[str, str, int]] = set()
        self._pool = ThreadPoolExecutor(max_workers=32)
        self._clients: dict[str, AirflowAPI] = {}
        self._lock = threading.Lock()

    def client(self, user: str) -> AirflowAPI:
        with self._lock:
            if user not in self._clients:
                self._clients[user] = AirflowAPI(
                    base_url=self.api_url, username=user, password=self.passwords[user], timeout=60
                )
            return self._clients[user]

    def poll(self) -> None:
        for detail in self.admin.pending_actions(DAG_ID, "~"):
            ti = detail["task_instance"]
            key = (ti["dag_run_id"], ti["task_id"])
            attempt = (*key, int(ti.get("try_number") or 1))
            if attempt in self._scheduled:
                continue
            self._scheduled.add(attempt)
            if key in self.given:  # a seat asking again has lost the answer already given
                self.asked_again.append(attempt)
                delay = 0.0
            else:
                created = datetime.fromisoformat(str(detail["created_at"]).replace("Z", "+00:00"))
                target = self.rng.uniform(0.0, MAX_DELAY)
                delay = max(0.0, target - (datetime.now(UTC) - created).total_seconds())
                self.delays.append(target)
            self._pool.submit(self._answer, detail, key, delay)

    def _answer(self, detail: dict[str, Any], key: tuple[str, str], delay: float) -> None:
        time.sleep(delay)
        ti = detail["task_instance"]
        user = detail["assigned_users"][0]["id"]
        shown = detail["params"]["changeset_id"]["value"]
        api = self.client(user)
        for _attempt in range(6):  # a loaded API server can time out: retry; 409 then means it got through
            try:
                res = api.answer(
                    dag_id=DAG_ID,
                    run_id=ti["dag_run_id"],
                    task_id=ti["task_id"],
                    option="Approve",
                    params_input={"changeset_id": shown, "reason": ""},
                )
            except EnvironmentUnavailableError:
                continue
            except AirflowAPIError as exc:
                path = f"/api/v2/dags/{DAG_ID}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/-1/hitlDetails"
                now = self.admin._request("GET", path) if exc.status == 409 else {}
                if (now.get("responded_by_user") or now.get("responded_by") or {}).get("id") == user:
                    res = {"responded_at": now["responded_at"]}
                else:
                    self.errors.append(f"{key}: {exc}")
                    return
            with self._lock:
                self.given.setdefault(key, {"user": user, "responded_at": res["responded_at"]})
            return
        self.errors.append(f"{key}: the API server did not answer")


def verify(admin: AirflowAPI, answerer: Answerer, run_ids: list[str], ledger_dsn: str) -> dict[str, Any]:
    kept, lost, retried, never_asked, details = 0, 0, 0, 0, []
    for run_id in run_ids:
        tis = {t["task_id"]: t for t in admin.task_instances(DAG_ID, run_id)}
        for task_id, ti in sorted(tis.items()):
            given = answerer.given.get((run_id, task_id))
            if given is None:  # never asked (e.g. Airflow's API failed the task before it asked): no answer
                never_asked += 1
                details.append(f"{run_id}/{task_id}: never asked, no answer given (state {ti['state']})")
                continue
            if int(ti.get("try_number") or 1) > 1:
                retried += 1
            value = None
            if ti["state"] == "success":
                path = (
                    f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
                )
                value = admin._request("GET", path + "?deserialize=true")["value"]
            same = (
                isinstance(value, dict)
                and value.get("approved")
                and value["responded_by_user"]["id"] == given["user"]
                and _instant(value["responded_at"]) == _instant(given["responded_at"])
            )
            if same:
                kept += 1
            else:
                lost += 1
                details.append(f"{run_id}/{task_id}: state {ti['state']}, result {value!r}, given {given}")
    with psycopg2.connect(ledger_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT payload->>'source', count(*) FROM ledger.events WHERE kind = 'approval.answered' "
            "AND dag_id = %s GROUP BY 1",
            (DAG_ID,),
        )
        in_ledger = dict(cur.fetchall())
    conn.close()
    return {
        "kept": kept,
        "lost": lost,
        "retried_seats": retried,
        "in_ledger": in_ledger,
        "lost_details": details,
    }


def trigger(admin: AirflowAPI, conf: dict[str, Any], run_id: str) -> str:
    """Trigger one run; a timed-out trigger that got through answers 409 on the retry."""
    for _attempt in range(6):
        try:
            return admin.trigger(DAG_ID, conf=conf, run_id=run_id)["dag_run_id"]
        except EnvironmentUnavailableError:
            continue
        except AirflowAPIError as exc:
            if exc.status == 409:
                return run_id
            raise
    raise EnvironmentUnavailableError(f"could not trigger {run_id}: the API server did not answer")


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/approvals_race.py")
    parser.add_argument("--runs", type=int, default=20, help=f"DAG runs of {SEATS} seats each (default 20)")
    parser.add_argument("--burners", type=int, default=2, help="CPU-burning processes beside Airflow")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--deadline", type=int, default=1500, help="seconds before giving up")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    admin_dsn = os.environ.get("GARDIEN_PG_DSN") or pg.admin_dsn()
    home = Path(tempfile.mkdtemp(prefix="gardien-approvals-race-"))
    stack = Stack(admin_dsn, home)
    started = time.monotonic()
    try:
        stack.start()
        api_url = f"http://127.0.0.1:{stack.port}"
        passwords = {u: pw for u, (_, pw) in af.DEMO_USERS.items()}
        answerer = Answerer(api_url, passwords, random.Random(args.seed))
        admin = answerer.admin
        while True:
            try:
                admin.dag(DAG_ID)
                break
            except (AirflowAPIError, EnvironmentUnavailableError):
                time.sleep(2)
        while admin.set_paused(DAG_ID, False)["is_paused"]:
            time.sleep(1)
        stack.burn(args.burners)
        say(f"{args.burners} CPU burner(s) started; triggering {args.runs} runs x {SEATS} seats")
        run_ids = []
        for i in range(args.runs):
            conf = {
                "release": f"R-BENCH-{i:03d}",
                "changeset_id": uuid.uuid4().hex * 2,
                "requested_by": "parametreur",
                "tables_touched": [],
            }
            run_ids.append(trigger(admin, conf, f"bench_{i:03d}"))
        load_started = time.monotonic()
        last_said = 0.0
        while time.monotonic() - started < args.deadline:
            try:
                answerer.poll()
                states = {r["dag_run_id"]: r["state"] for r in admin.runs(DAG_ID, limit=args.runs + 10)}
            except EnvironmentUnavailableError:  # a loaded API server timed out: poll again
                continue
            except AirflowAPIError as exc:  # e.g. 500 when its connection pool is exhausted: poll again
                if exc.status < 500:
                    raise
                say(f"API server error {exc.status}; polling again")
                time.sleep(2)
                continue
            done = sum(states.get(r) in ("success", "failed") for r in run_ids)
            if done == len(run_ids):
                break
            if time.monotonic() - last_said > 30:
                last_said = time.monotonic()
                say(f"{done}/{len(run_ids)} runs finished, {len(answerer.given)} answers given")
            time.sleep(0.5)
        load_seconds = time.monotonic() - load_started
        with open("/proc/loadavg") as f:
            loadavg = f.read().split()[:3]
        ledger_dsn = pg.dsn_for_database(admin_dsn, stack.ledger_db)
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cycles": args.runs * SEATS,
            "answers_given": len(answerer.given),
            "asked_again": len(answerer.asked_again),
            "answer_errors": answerer.errors,
            "delay_s": {"min": min(answerer.delays, default=0), "max": max(answerer.delays, default=0)},
            "burners": args.burners,
            "loadavg_end": loadavg,
            "cores": os.cpu_count(),
            "wall_s": round(load_seconds, 1),
            **verify(admin, answerer, run_ids, ledger_dsn),
        }
        text = json.dumps(result, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
        return 0 if result["lost"] == 0 and not result["asked_again"] else 1
    finally:
        stack.close()
        say(f"stopped; total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())

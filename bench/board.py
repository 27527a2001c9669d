"""The release board's pages with 500 releases in the ledger: median and worst time per page (target < 300 ms).

Run by hand: ``set -a; source .gardien/pg.env; set +a; .venv/bin/python bench/board.py [--releases 500]``
(not part of ``make bench``). It records the releases through the ledger API into a fresh, uniquely named
database (dropped afterwards), then requests each page through the board's FastAPI app in-process: routing,
ledger queries (one per list, the release's whole history and the hash-chain verification for a release page)
and Jinja2 rendering are measured; Airflow's token check and the Required-Action lookup are not (the viewer is
given, the Airflow facts are empty).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from gardien import ledger, pg
from gardien.airflow import board_app
from gardien.board import BoardSettings
from gardien.board import pages as board_pages
from gardien.board.audit import ChainCache
from gardien.board.views import AirflowFacts, Viewer
from gardien.config import load_config
from gardien.demo.ledger_sample import record_sample_release

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 300
REPEAT = 15


def seed(dsn: str, count: int) -> list[str]:
    conn = pg.connect(dsn)
    ids = []
    try:
        ledger.ensure_schema(conn)
        t0 = datetime(2026, 1, 6, 19, tzinfo=UTC)
        for i in range(count):
            rid = f"R-standard-{i:05d}"
            # two releases per week, most deployed, every fifth one stopped after validation
            record_sample_release(
                conn, release_id=rid, at=t0 + timedelta(days=3.5 * i), n=i, deploy=i % 5 != 4
            )
            ids.append(rid)
            if i % 50 == 49:
                conn.commit()
        conn.commit()
    finally:
        conn.close()
    return ids


def timed(client: TestClient, path: str, *, cold_chain: bool = False) -> list[float]:
    client.get(path)  # warm: templates compiled, connection paths exercised
    times = []
    for _ in range(REPEAT):
        if cold_chain:  # the first view after the API server started: the chain is verified in the request
            board_pages.CHAIN = ChainCache()
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/board.py")
    parser.add_argument("--releases", type=int, default=500)
    args = parser.parse_args(argv)
    admin = pg.admin_dsn()
    name = f"gt_bench_board_{uuid.uuid4().hex[:8]}"
    dsn = pg.create_database(admin, name)
    try:
        start = time.perf_counter()
        ids = seed(dsn, args.releases)
        print(f"seeded {len(ids)} releases in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        settings = replace(
            BoardSettings.from_config(load_config(ROOT / "include" / "config" / "gardien.yaml")),
            ledger_dsn=dsn,
        )
        board_app.settings = lambda: settings  # the configuration, pointed at the benchmark's ledger
        board_app.airflow_facts = lambda dag_id, run_id: AirflowFacts()
        app = board_app.create_app()
        app.dependency_overrides[board_app.board_viewer] = lambda: Viewer(
            user_id="chef.projet",
            name="chef.projet",
            can_rollback=True,
            readable_dags=frozenset(settings.release_dag_ids),
        )
        client = TestClient(app)
        last = ids[-1]
        pages = {
            "releases (first page of 500)": "/",
            "releases (page 4)": "/?page=4",
            "releases (status=closed, env=prod)": "/?status=closed&environment=prod",
            "calendar (a month)": "/calendar?month=2027-06",
            "calendar.ics": "/calendar.ics",
            "release page": f"/releases/{ids[len(ids) // 2]}",
            "review page": f"/releases/{last}/review?seat=pharmaciens",
        }
        results = {}
        cases = [(label, path, False) for label, path in pages.items()]
        cases.append(("release page, first view (chain verified in it)", f"/releases/{ids[0]}", True))
        for label, path, cold in cases:
            t = timed(client, path, cold_chain=cold)
            results[label] = {"median_ms": round(statistics.median(t), 1), "max_ms": round(max(t), 1)}
            print(
                f"{label:<38} median {statistics.median(t):7.1f} ms   max {max(t):7.1f} ms", file=sys.stderr
            )
        print(
            json.dumps(
                {"releases": len(ids), "repeat": REPEAT, "target_ms": TARGET_MS, "pages": results}, indent=2
            )
        )
        return 0 if all(r["median_ms"] < TARGET_MS for r in results.values()) else 1
    finally:
        pg.drop_database(admin, name)


if __name__ == "__main__":
    raise SystemExit(main())

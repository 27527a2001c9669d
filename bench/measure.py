"""The measurements of bench/run.py: the COPY floor, a diff in a child process, reladiff, apply and rollback."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg2 import sql

from gardien import pg
from gardien.apply import deploy
from gardien.changeset import Changeset
from gardien.config import CatalogConfig
from gardien.rollback import rollback

BENCH = Path(__file__).resolve().parent
RELADIFF_VENV = BENCH / ".venv"
RELADIFF_TABLE = "gardien_bench_reladiff"


def summary(values: list[float]) -> dict[str, Any]:
    """Median and min of repeated wall times (seconds, 3 decimals) and every run."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "runs": [round(v, 3) for v in values],
    }


def managed_columns(dsn: str, catalog: CatalogConfig) -> dict[str, list[str]]:
    """Per managed table, the columns the diff reads: natural key and values, surrogate id and ignored excluded."""
    from gardien.catalog import bind_catalog

    conn = pg.connect(dsn)
    try:
        return {t.name: list(t.columns) for t in bind_catalog(conn, catalog).tables}
    finally:
        conn.close()


def _copy_side(dsn: str, schema: str, columns: dict[str, list[str]]) -> None:
    conn = pg.connect(dsn, application_name="gardien bench floor")
    try:
        with conn.cursor() as cur, open(os.devnull, "wb") as sink:
            for table, cols in columns.items():
                query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(
                    sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(schema, table)
                )
                cur.copy_expert(query.as_string(cur), sink)
        conn.rollback()
    finally:
        conn.close()


def floor(dsns: tuple[str, str], schema: str, columns: dict[str, list[str]], *, concurrent: bool) -> float:
    """Seconds to COPY both sides' managed columns to /dev/null, one side after the other or both at once."""
    started = time.perf_counter()
    if concurrent:
        threads = [threading.Thread(target=_copy_side, args=(d, schema, columns)) for d in dsns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for d in dsns:
            _copy_side(d, schema, columns)
    return time.perf_counter() - started


def diff_in_child(config: Path, source: str, target: str) -> dict[str, Any]:
    """Run one diff in a fresh interpreter (so its peak RSS is the diff's own) and return its report."""
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH / "child.py"),
            "--config",
            str(config),
            "--source",
            source,
            "--target",
            target,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def checkpoint(admin: str) -> bool:
    """CHECKPOINT (superuser or pg_checkpoint): the apply measured next then logs whole pages on first change,
    as on a production target whose last checkpoint is recent. False when not allowed (noted in the report)."""
    try:
        with pg.autocommit(admin) as conn, conn.cursor() as cur:
            cur.execute("CHECKPOINT")
        return True
    except Exception:  # noqa: BLE001 - a missing privilege only makes the figures less conservative
        return False


def apply_rollback(
    dsn: str, changeset: Changeset, *, catalog: CatalogConfig, at: datetime
) -> tuple[float, float, bool]:
    """Apply then roll back (so it can be repeated): wall seconds of each and whether rollback was proven."""
    started = time.perf_counter()
    applied = deploy(dsn, changeset, catalog_config=catalog, target="bench", applied_at=at)
    apply_s = time.perf_counter() - started
    if applied.status != "applied":
        raise RuntimeError(f"bench apply did nothing ({applied.status}); is the copy fresh?")
    started = time.perf_counter()
    undone = rollback(
        dsn,
        applied.deployment_id,
        catalog_config=catalog,
        target="bench",
        rolled_back_at=at + timedelta(seconds=1),
    )
    return apply_s, time.perf_counter() - started, undone.proven


# reladiff cannot translate foreign keys, and ids differ between environments, so it is given the best
# case: a pre-translated, indexed copy of ligne_protocole in each database (portable columns; one integer
# key built from the natural key, protocol number x 1000 + rank). The translation is not timed.
_RELADIFF_TABLE_SQL = """
DROP TABLE IF EXISTS {t};
CREATE TABLE {t} AS
SELECT (substr(p.code, 6)::bigint * 1000 + l.rang) AS nk, m.code_ucd::text AS code_ucd, l.dose,
       u.code AS unite, l.frequence
FROM ligne_protocole l JOIN protocole p ON p.id = l.protocole_id JOIN medicament m ON m.id = l.medicament_id
JOIN unite_mesure u ON u.id = l.unite_id;
ALTER TABLE {t} ADD PRIMARY KEY (nk);
ANALYZE {t};
"""


def reladiff_install(say: Callable[[str], None]) -> str | None:
    """Create bench/.venv with reladiff[postgresql] if missing; return its CLI path, or None with the reason said."""
    cli = RELADIFF_VENV / "bin" / "reladiff"
    if cli.exists():
        return str(cli)
    say("installing reladiff[postgresql] into bench/.venv (once)")
    try:
        subprocess.run(["python3.11", "-m", "venv", str(RELADIFF_VENV)], check=True, capture_output=True)
        subprocess.run(
            [str(RELADIFF_VENV / "bin" / "pip"), "install", "-q", "reladiff[postgresql]"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        say(f"reladiff could not be installed: {str(detail).strip().splitlines()[-1:]}")
        return None
    return str(cli) if cli.exists() else None


def reladiff_prepare(dsns: tuple[str, str]) -> None:
    for dsn in dsns:
        with pg.autocommit(dsn) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL(_RELADIFF_TABLE_SQL).format(t=sql.Identifier(RELADIFF_TABLE)))


def reladiff_cleanup(dsns: tuple[str, str]) -> None:
    for dsn in dsns:
        with pg.autocommit(dsn) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(RELADIFF_TABLE)))


def _uri(dsn: str) -> tuple[str, dict[str, str]]:
    """reladiff takes URIs only: the DSN as a URI, with its password moved to the child's environment."""
    from psycopg2.extensions import parse_dsn

    parts = parse_dsn(dsn)
    env = {"PGPASSWORD": parts["password"]} if parts.get("password") else {}
    user = parts.get("user", "postgres")
    host = parts.get("host", "127.0.0.1")
    return f"postgresql://{user}@{host}:{parts.get('port', '5432')}/{parts['dbname']}", env


def reladiff_run(cli: str, dsns: tuple[str, str]) -> tuple[float, int]:
    """Seconds of one reladiff CLI run over the prepared tables, and the number of +/- lines it printed.

    An update prints two lines (- old, + new), an insert or a delete one.
    """
    (a, env), (b, env_b) = _uri(dsns[0]), _uri(dsns[1])
    args = [cli, a, RELADIFF_TABLE, b, RELADIFF_TABLE, "-k", "nk"]
    args += [x for c in ("code_ucd", "dose", "unite", "frequence") for x in ("-c", c)]
    started = time.perf_counter()
    out = subprocess.run(args, check=True, capture_output=True, text=True, env={**os.environ, **env, **env_b})
    seconds = time.perf_counter() - started
    return seconds, sum(1 for line in out.stdout.splitlines() if line[:1] in "+-")

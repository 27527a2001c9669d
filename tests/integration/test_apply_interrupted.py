"""A deployment whose process is killed mid-apply leaves the target exactly as it was, and unlocked.

This is what protects a target when an Airflow worker dies (OOM, node loss, SIGKILL) in the middle of a
deploy task: the apply is one transaction, so PostgreSQL rolls back everything the dead session wrote and
frees its advisory lock; the task's retry then applies the whole changeset.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg2
import pytest
from test_engine_support import (
    BASE_STATE,
    NOW,
    by_natural_keys,
    catalog_config,
    database_pair,
    load,
    physical,
)

from gardien.apply import deploy
from gardien.diff import diff

pytestmark = pytest.mark.integration

APP = "gardien apply"  # application_name of the engine's apply sessions

CHILD = textwrap.dedent(
    """
    import datetime as dt, sys
    from test_engine_support import catalog_config
    from gardien.apply import Timeouts, deploy
    from gardien.diff import diff
    source, target = sys.argv[1], sys.argv[2]
    changeset = diff(source, target, catalog_config=catalog_config())
    print("diffed", flush=True)
    deploy(target, changeset, catalog_config=catalog_config(), target="tgt",
           applied_at=dt.datetime(2026, 3, 3, 20, 0, tzinfo=dt.UTC), timeouts=Timeouts(lock_ms=120_000))
    print("applied", flush=True)
    """
)


def _wait(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _one(dsn: str, statement: str, params=None):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchone()
    finally:
        conn.close()


@pytest.fixture
def pair(pg_admin_dsn):
    with database_pair(pg_admin_dsn, "killed") as dsns:
        yield dsns


def test_process_killed_mid_apply_leaves_target_untouched_and_unlocked(pair):
    source, target = pair
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    conn = psycopg2.connect(source)
    with conn, conn.cursor() as cur:  # changes in several tables: units are written before params
        cur.execute(
            "INSERT INTO unit (code, label, site_id) SELECT 'U4', 'Reanimation', id FROM site WHERE code='S2'"
        )
        cur.execute("UPDATE unit SET label = 'Urgences adultes' WHERE code = 'U1'")
        cur.execute("UPDATE param SET valeur = 'z', unit_codes = 'U1;U4' WHERE cle = 'P2'")
    conn.close()
    original = physical(target)

    # Hold a row lock on the param the apply must update, so the apply stops in the middle: after writing
    # units, waiting on param.
    holder = psycopg2.connect(target)
    holder_cur = holder.cursor()
    holder_cur.execute("SELECT id FROM param WHERE cle = 'P2' FOR UPDATE")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, source, target], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        pid = _wait(
            lambda: _one(
                target,
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                (APP,),
            ),
            "the apply to block on the locked param row",
        )[0]
        # Mid-apply for real: that session has already written to unit (it holds a write lock on it).
        wrote_units = _one(
            target,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.pid = %s AND c.relname = 'unit' AND l.mode = 'RowExclusiveLock'",
            (pid,),
        )[0]
        assert wrote_units == 1
        os.kill(child.pid, signal.SIGKILL)  # the worker dies
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        holder.rollback()
        holder.close()
    # PostgreSQL notices the dead client and aborts its transaction; the advisory lock goes with it.
    _wait(
        lambda: _one(target, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s", (pid,))[0],
        "the dead session to end",
    )
    assert child.returncode == -signal.SIGKILL
    assert physical(target) == original  # nothing half-applied
    if _one(target, "SELECT to_regclass('gardien.deployment') IS NOT NULL")[0]:  # nothing journaled
        assert _one(target, "SELECT count(*) FROM gardien.deployment")[0] == 0

    # The retry (a fresh apply) takes the lock at once and carries the whole changeset.
    changeset = diff(source, target, catalog_config=catalog_config())
    result = deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    assert result.status == "applied"
    assert _one(target, "SELECT count(*) FROM gardien.deployment")[0] == 1
    assert by_natural_keys(target) == by_natural_keys(source)

"""A deployment whose process is killed mid-apply leaves the target exactly as it was, and unlocked.

This is what protects a target when an Airflow worker dies (OOM, node loss, SIGKILL) in the middle of a
deploy task: the apply is one transaction, so PostgreSQL rolls back everything the dead session wrote and
frees its advisory lock; the task's retry then applies the whole changeset.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import psycopg2
import pytest
import yaml
from test_engine_support import (
    BASE_STATE,
    CATALOG,
    NOW,
    by_natural_keys,
    catalog_config,
    database_pair,
    execute,
    load,
    physical,
    query,
    reset,
)

from gardien.apply import _LOCK_CLASS, deploy
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


def _all(dsn: str, statement: str, params=None):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        conn.close()


def _one(dsn: str, statement: str, params=None):
    rows = _all(dsn, statement, params)
    return rows[0] if rows else None


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

    # Hold a row lock on the param the apply must update, so the apply stops in the middle: holding the
    # target lock and the locks of the touched units, waiting for param's (the apply locks every touched
    # row before its first write; the kill mid-writes and mid-COMMIT is tested below).
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
        # Mid-apply for real: that session has locked the units it will change (a row-share lock on unit).
        locked_units = _one(
            target,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.pid = %s AND c.relname = 'unit' AND l.mode = 'RowShareLock'",
            (pid,),
        )[0]
        assert locked_units == 1
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


# --- Every connection, several points, two ways of dying --------------------------------------------------
# Barriers on `param` (the last table both the apply and the rollback of CHANGES write), scripted with locks
# the test holds and releases: "before writes" = a colleague's row lock on P2 (the engine locks the touched
# rows before writing); "during writes" = a row trigger waiting on advisory lock 777 (units are written by
# then); "during COMMIT" = a deferred constraint trigger waiting on advisory lock 778 (it runs inside COMMIT).

BARRIERS = """
CREATE OR REPLACE FUNCTION barrier_write() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_advisory_xact_lock_shared(777); RETURN NULL; END $$;
CREATE OR REPLACE FUNCTION barrier_commit() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_advisory_xact_lock_shared(778); RETURN NULL; END $$;
CREATE TRIGGER barrier_write AFTER INSERT OR UPDATE OR DELETE ON param FOR EACH ROW EXECUTE FUNCTION barrier_write();
CREATE CONSTRAINT TRIGGER barrier_commit AFTER INSERT OR UPDATE OR DELETE ON param
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION barrier_commit();
"""

CLI = "from gardien.cli.main import main; main()"
# What the client learns of a terminated session (libpq may or may not pass on the server's last words).
_TERMINATED = "server closed the connection unexpectedly"


@pytest.fixture(scope="module")
def fault_databases(pg_admin_dsn):
    with database_pair(pg_admin_dsn, "faults") as dsns:
        execute(dsns[1], BARRIERS)
        yield dsns


@pytest.fixture
def faulty(fault_databases, tmp_path):
    """Source and target reset to BASE_STATE, the source changed (units then params), and a config file."""
    source, target = fault_databases
    for dsn in fault_databases:
        reset(dsn)
    load(source, BASE_STATE)
    load(target, BASE_STATE)
    execute(
        source,
        "INSERT INTO unit (code, label, site_id) SELECT 'U4', 'Reanimation', id FROM site WHERE code='S2'",
    )
    execute(source, "UPDATE unit SET label = 'Urgences adultes' WHERE code = 'U1'")
    execute(source, "UPDATE param SET valeur = 'z', unit_codes = 'U1;U4' WHERE cle = 'P2'")
    config = tmp_path / "gardien.yaml"
    config.write_text(
        yaml.safe_dump({"environments": {"src": {"dsn": source}, "tgt": {"dsn": target}}, "catalog": CATALOG})
    )
    changeset = tmp_path / "cs.json"
    changeset.write_text(diff(source, target, catalog_config=catalog_config()).to_json(), encoding="utf-8")
    return source, target, config, changeset


def _cli(config, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "GARDIEN_CONFIG": str(config)}
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


class Barrier:
    """Holds the engine at ``point`` until released."""

    def __init__(self, target: str, point: str) -> None:
        self.point = point
        self.conn = psycopg2.connect(target, application_name="barrier")
        self.conn.autocommit = point != "before_writes"
        with self.conn.cursor() as cur:
            if point == "before_writes":
                cur.execute("SELECT 1 FROM param WHERE cle = 'P2' FOR UPDATE")
            else:
                cur.execute("SELECT pg_advisory_lock(%s)", (777 if point == "during_writes" else 778,))

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback() if not self.conn.autocommit else None
            self.conn.close()


def _engine_waiting(target: str, application: str, point: str) -> int:
    """The pid of the engine's session once it waits at ``point`` (checked in pg_stat_activity)."""
    extra = " AND query = 'COMMIT'" if point == "during_commit" else ""
    try:
        (pid,) = _wait(
            lambda: _one(
                target,
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
                + extra,
                (application,),
            ),
            f"{application} to wait {point}",
            timeout=120.0,  # a child process on a loaded 2-core machine; it returns as soon as the wait is seen
        )
    except pytest.fail.Exception:
        sessions = _all(
            target,
            "SELECT application_name, state, wait_event_type, wait_event, left(query, 120) "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        pytest.fail(
            f"timed out waiting for {application} to wait {point}; sessions on the target: {sessions}"
        )
    if point == "during_writes":  # really mid-writes: units are written already
        assert (
            _one(
                target,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = %s AND c.relname = 'unit' AND l.mode = 'RowExclusiveLock'",
                (pid,),
            )[0]
            == 1
        )
    return pid


def _no_engine_session_left(target: str) -> None:
    _wait(
        lambda: _one(
            target,
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name LIKE 'gardien%%' AND datname = current_database()",
        )[0],
        "the engine's sessions to end",
    )
    assert (
        _one(
            target,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (_LOCK_CLASS,),
        )[0]
        == 0
    )


def _interrupted(target: str, config, point: str, how: str, application: str, *args: str):
    """Run the CLI with ``args``, stop it at ``point`` and end it ``how``; return it and its stderr once
    every engine session is gone (no traceback, no stray line)."""
    barrier = Barrier(target, point)
    try:
        child = _cli(config, *args)
        pid = _engine_waiting(target, application, point)
        if how == "kill -9":
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        else:
            _one(target, "SELECT pg_terminate_backend(%s)", (pid,))
        _, err = child.communicate(timeout=60)
    finally:
        barrier.release()
    _no_engine_session_left(target)
    assert "Traceback" not in err and "SystemError" not in err, err
    return child, err


def _journal(target: str) -> list[tuple]:
    if not _one(target, "SELECT to_regclass('gardien.deployment') IS NOT NULL")[0]:
        return []
    return query(target, "SELECT deployment_id, rolled_back_at IS NOT NULL FROM gardien.deployment")


@pytest.mark.parametrize("how", ["pg_terminate_backend", "kill -9"])
@pytest.mark.parametrize("point", ["before_writes", "during_writes", "during_commit"])
def test_apply_connection_lost_leaves_target_before_or_after_says_so_and_retry_converges(faulty, point, how):
    source, target, config, changeset = faulty
    original = physical(target)
    child, err = _interrupted(
        target, config, point, how, APP, "apply", str(changeset), "tgt", "--lock-timeout", "120000"
    )
    if how == "kill -9":
        assert child.returncode == -signal.SIGKILL
        # A dead client: the server rolled back, or (killed while COMMIT ran on the server) committed.
        assert physical(target) == original or by_natural_keys(target) == by_natural_keys(source)
    else:
        assert child.returncode == 9, err
        assert physical(target) == original  # exactly before
        assert _journal(target) == []
        assert _TERMINATED in err
        if point == "during_commit":
            assert "lost during COMMIT" in err and "checked after reconnecting: not committed" in err
        else:
            assert "lost before COMMIT" in err and "nothing was applied" in err
    retry = _cli(config, "apply", str(changeset), "tgt")
    out, err = retry.communicate(timeout=120)
    assert retry.returncode == 0, err
    assert by_natural_keys(target) == by_natural_keys(source)
    assert len(_journal(target)) == 1


@pytest.mark.parametrize("how", ["pg_terminate_backend", "kill -9"])
@pytest.mark.parametrize("point", ["before_writes", "during_writes", "during_commit"])
def test_rollback_connection_lost_leaves_target_deployed_or_restored_says_so_and_retry_converges(
    faulty, point, how
):
    source, target, config, changeset = faulty
    original = physical(target)
    applied = _cli(config, "apply", str(changeset), "tgt", "--json")
    out, err = applied.communicate(timeout=120)
    assert applied.returncode == 0, err
    deployment = json.loads(out)["deployment_id"]
    deployed = physical(target)
    child, err = _interrupted(target, config, point, how, "gardien rollback", "rollback", "tgt", deployment)
    if how == "kill -9":
        assert child.returncode == -signal.SIGKILL
        assert physical(target) in (deployed, original)
    else:
        assert child.returncode == 10, err
        assert physical(target) == deployed  # exactly as deployed
        assert _journal(target) == [(deployment, False)]
        assert _TERMINATED in err
        if point == "during_commit":
            assert "lost during COMMIT" in err and "checked after reconnecting: not committed" in err
        else:
            assert "lost before COMMIT" in err and "nothing was rolled back" in err
    retry = _cli(config, "rollback", "tgt", deployment)
    out, err = retry.communicate(timeout=120)
    assert retry.returncode == 0, err
    assert physical(target) == original
    assert _journal(target) == [(deployment, True)]


def test_fingerprint_connection_lost_is_named_and_nothing_is_applied(faulty):
    """The apply's second connection (full-scope fingerprints) terminated while it scans: the error names
    that connection and its cause, nothing is applied, no stray line is printed."""
    source, target, config, changeset = faulty
    original = physical(target)
    row = Barrier(target, "before_writes")
    # Queued behind the apply's row locks, an ACCESS EXCLUSIVE request makes the reader's scan of param wait.
    exclusive = psycopg2.connect(target, application_name="barrier")
    try:
        child = _cli(config, "apply", str(changeset), "tgt", "--lock-timeout", "120000")
        _engine_waiting(target, APP, "before_writes")
        exclusive.cursor().execute("SET lock_timeout = 0")
        threading.Thread(
            target=lambda: _quietly(exclusive, "LOCK TABLE param IN ACCESS EXCLUSIVE MODE"), daemon=True
        ).start()
        _engine_waiting(target, "barrier", "before_writes")
        row.release()
        reader = _engine_waiting(target, "gardien apply (fingerprint)", "before_writes")
        _one(target, "SELECT pg_terminate_backend(%s)", (reader,))
        out, err = child.communicate(timeout=60)
    finally:
        row.release()
    exclusive.close()
    _no_engine_session_left(target)
    assert child.returncode == 9, err
    assert "Traceback" not in err and "SystemError" not in err, err
    assert "second connection reading the full-scope fingerprints" in err
    assert _TERMINATED in err
    assert physical(target) == original
    retry = _cli(config, "apply", str(changeset), "tgt")
    assert retry.wait(timeout=120) == 0
    assert by_natural_keys(target) == by_natural_keys(source)


def _quietly(conn, statement: str) -> None:
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.rollback()
    except psycopg2.Error:
        pass


# --- COMMIT done on the server, the answer lost on the way back -----------------------------------------


class CommitCutter:
    """A TCP proxy to the target that, for the first session named ``application``, drops the connection
    instead of passing on the server's answer to COMMIT: the server has committed, the client never hears
    it. Every other session passes untouched. (Plain-text protocol: the DSN asks for sslmode=disable.)"""

    COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"  # CommandComplete "COMMIT"

    def __init__(self, dsn: str, application: str) -> None:
        params = psycopg2.extensions.parse_dsn(dsn)
        self.upstream = (params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
        self.marker = b"application_name\x00" + application.encode() + b"\x00"
        self.cut = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.dsn = psycopg2.extensions.make_dsn(
            dsn, host="127.0.0.1", port=self.listener.getsockname()[1], sslmode="disable"
        )
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            watched = {"on": False}
            threading.Thread(target=self._pipe, args=(client, server, watched, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, watched, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, watched: dict, from_server: bool) -> None:
        try:
            while data := src.recv(65536):
                if not from_server and self.marker in data and not self.cut.is_set():
                    watched["on"] = True
                if from_server and watched["on"] and self.COMMIT_DONE in data and not self.cut.is_set():
                    self.cut.set()
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def test_apply_whose_commit_answer_is_lost_checks_the_journal_and_says_committed(faulty):
    source, target, _, _ = faulty
    cutter = CommitCutter(target, "gardien apply")
    try:
        changeset = diff(source, target, catalog_config=catalog_config())
        result = deploy(cutter.dsn, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    finally:
        cutter.close()
    assert cutter.cut.is_set()  # the answer to COMMIT was really lost
    assert result.status == "applied"
    assert "checked after reconnecting: the target's journal shows it committed" in result.note
    assert by_natural_keys(target) == by_natural_keys(source)
    assert _journal(target) == [(result.deployment_id, False)]


def test_rollback_whose_commit_answer_is_lost_checks_the_journal_and_says_committed(faulty):
    from gardien.rollback import rollback

    source, target, _, _ = faulty
    original = physical(target)
    changeset = diff(source, target, catalog_config=catalog_config())
    deployed = deploy(target, changeset, catalog_config=catalog_config(), target="tgt", applied_at=NOW)
    cutter = CommitCutter(target, "gardien rollback")
    try:
        result = rollback(
            cutter.dsn,
            deployed.deployment_id,
            catalog_config=catalog_config(),
            target="tgt",
            rolled_back_at=NOW,
        )
    finally:
        cutter.close()
    assert cutter.cut.is_set()
    assert (result.status, result.proven) == ("rolled_back", True)
    assert "journal shows it committed" in result.note
    assert physical(target) == original

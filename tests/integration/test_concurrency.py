"""Concurrent production edits during and after a deployment, on real PostgreSQL, scripted (no timing luck).

A colleague's session is driven step by step: it takes row locks and commits at chosen points; the engine
runs in a thread and the test waits until PostgreSQL shows it waiting on that lock (pg_stat_activity) before
letting the colleague go on. What is checked: an edit committed during an apply is never overwritten (same
field: conflict, nothing written; another field: kept and reported as drift, the journal holding the value
really replaced); a rollback never silently reverts an edit made after the deployment; racing rollbacks and
an apply racing a rollback serialise.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
import time
from typing import Any

import psycopg2
import pytest
from test_engine_support import (
    BASE_STATE,
    NOW,
    catalog_config,
    database_pair,
    execute,
    load,
    physical,
    query,
    reset,
)

from gardien.apply import Timeouts, deploy
from gardien.diff import diff
from gardien.errors import ConflictError, RollbackError
from gardien.rollback import rollback

pytestmark = pytest.mark.integration
LATER = NOW + dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def databases(pg_admin_dsn):
    with database_pair(pg_admin_dsn, "conc") as dsns:
        yield dsns


@pytest.fixture
def pair(databases):
    for dsn in databases:
        reset(dsn)
    return databases


class Background:
    """Run ``func`` in a thread; ``result()`` returns its value or re-raises its error."""

    def __init__(self, func, *args, **kwargs) -> None:
        self._out: list[Any] = []
        self._thread = threading.Thread(target=self._run, args=(func, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, func, args, kwargs) -> None:
        try:
            self._out.append(("ok", func(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self._out.append(("error", exc))

    def result(self, timeout: float = 60.0) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the engine did not finish"
        kind, value = self._out[0]
        if kind == "error":
            raise value
        return value


def wait_for_lock_wait(dsn: str, application: str, count: int = 1, timeout: float = 30.0) -> None:
    """Wait until ``count`` sessions named ``application`` are waiting on a lock (a barrier, not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (waiting,) = query(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            (application,),
        )[0]
        if waiting >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"no {application} session waited on a lock within {timeout} s")


def colleague(dsn: str, statement: str, params: Any = None):
    """A production session that ran ``statement`` and has not committed yet (the caller commits)."""
    conn = psycopg2.connect(dsn, application_name="colleague")
    cur = conn.cursor()
    cur.execute(statement, params)
    return conn


def _capture(source: str, target: str):
    return diff(source, target, catalog_config=catalog_config())


def _apply(target: str, changeset, at=NOW):
    return deploy(
        target,
        changeset,
        catalog_config=catalog_config(),
        target="tgt",
        applied_at=at,
        timeouts=Timeouts(lock_ms=30_000),
    )


def _rollback(target: str, deployment_id: str, **kwargs):
    return rollback(
        target,
        deployment_id,
        catalog_config=catalog_config(),
        target="tgt",
        rolled_back_at=LATER,
        timeouts=Timeouts(lock_ms=30_000),
        **kwargs,
    )


def _with_param(state: dict[str, Any], cle: str, valeur: str, codes: str) -> dict[str, Any]:
    state = copy.deepcopy(state)
    state["params"] = [(c, v, u) if c != cle else (c, valeur, codes) for c, v, u in state["params"]]
    return state


def _param(dsn: str, cle: str) -> tuple[str, str]:
    return query(dsn, "SELECT valeur, unit_codes FROM param WHERE cle = %s", (cle,))[0]


def _journal_count(dsn: str) -> int:
    if not query(dsn, "SELECT to_regclass('gardien.deployment') IS NOT NULL")[0][0]:
        return 0
    return query(dsn, "SELECT count(*) FROM gardien.deployment")[0][0]


# --- during the apply -------------------------------------------------------------------------------


def test_edit_of_the_same_field_committed_during_the_apply_is_a_conflict_and_nothing_is_written(pair):
    source, target = pair
    load(source, _with_param(BASE_STATE, "P2", "z", ""))
    load(target, BASE_STATE)
    changeset = _capture(source, target)  # P2.valeur: y -> z
    other = colleague(target, "UPDATE param SET valeur = 'colleague' WHERE cle = 'P2'")
    try:
        run = Background(_apply, target, changeset)
        wait_for_lock_wait(target, "gardien apply")  # the apply has reached P2 and waits for the colleague
        other.commit()
    finally:
        other.close()
    with pytest.raises(
        ConflictError, match=r"param \[\"P2\"\] valeur: baseline 'y', now 'colleague', wanted 'z'"
    ):
        run.result()
    assert _param(target, "P2") == ("colleague", "")  # the colleague's value stands
    assert _journal_count(target) == 0


def test_edit_of_another_field_committed_during_the_apply_is_kept_reported_and_journaled(pair):
    source, target = pair
    load(source, _with_param(BASE_STATE, "P2", "z", ""))
    load(target, BASE_STATE)
    changeset = _capture(source, target)
    other = colleague(target, "UPDATE param SET unit_codes = 'U1' WHERE cle = 'P2'")
    try:
        run = Background(_apply, target, changeset)
        wait_for_lock_wait(target, "gardien apply")
        other.commit()
    finally:
        other.close()
    result = run.result()
    assert result.status == "applied"
    assert _param(target, "P2") == ("z", "U1")
    assert [(d.table, d.key, d.field, d.now) for d in result.drift] == [
        ("param", ("P2",), "unit_codes", "U1")
    ]
    # The before-image is the value the apply really replaced: a rollback gives the colleague's edit back.
    rolled = _rollback(target, result.deployment_id)
    assert rolled.proven
    assert _param(target, "P2") == ("y", "U1")


# --- after the deployment: rollback -----------------------------------------------------------------


def _deployed_p2(source: str, target: str):
    load(source, _with_param(BASE_STATE, "P2", "z", ""))
    load(target, BASE_STATE)
    return _apply(target, _capture(source, target))


def test_rollback_refuses_an_edit_of_the_same_field_made_after_the_deployment(pair):
    source, target = pair
    deployed = _deployed_p2(source, target)
    execute(target, "UPDATE param SET valeur = 'w' WHERE cle = 'P2'")
    before = physical(target)
    for keep in (False, True):
        with pytest.raises(RollbackError) as err:
            _rollback(target, deployed.deployment_id, keep_later_edits=keep)
        message = str(err.value)
        assert "param [\"P2\"] valeur: after the deployment 'z', now 'w'" in message
        assert "Nothing was changed" in message
        assert physical(target) == before


def test_rollback_refuses_an_edit_of_another_field_unless_told_to_keep_it_and_records_the_merge(pair):
    source, target = pair
    deployed = _deployed_p2(source, target)
    execute(target, "UPDATE param SET unit_codes = 'U1' WHERE cle = 'P2'")
    before = physical(target)
    with pytest.raises(
        RollbackError, match=r"param \[\"P2\"\] unit_codes: after the deployment '', now 'U1'"
    ):
        _rollback(target, deployed.deployment_id)
    assert physical(target) == before
    result = _rollback(target, deployed.deployment_id, keep_later_edits=True)
    assert (result.status, result.proven) == ("rolled_back", True)
    assert _param(target, "P2") == ("y", "U1")  # the deployment undone, the later edit kept
    (proof,) = query(target, "SELECT rollback_proof FROM gardien.deployment")[0]
    assert proof["kept_later_edits"] == [
        {"table": "param", "key": ["P2"], "field": "unit_codes", "value": "U1"}
    ]
    assert [k["field"] for k in result.kept_later_edits] == ["unit_codes"]


def test_rollback_refuses_a_touched_row_deleted_after_the_deployment(pair):
    source, target = pair
    deployed = _deployed_p2(source, target)
    execute(target, "DELETE FROM param WHERE cle = 'P2'")
    with pytest.raises(RollbackError, match=r"param \[\"P2\"\]: .*deleted since"):
        _rollback(target, deployed.deployment_id, keep_later_edits=True)


def test_rollback_recreates_a_deleted_row_whole_with_its_ignored_not_null_columns(pair):
    source, target = pair
    state = copy.deepcopy(BASE_STATE)
    state["units"] = [u for u in state["units"] if u[0] != "U3"]
    state["grants"] = [g for g in state["grants"] if g[0] != "U3"]
    load(source, state)
    load(target, BASE_STATE)
    execute(target, "ALTER TABLE unit ALTER COLUMN updated_at DROP DEFAULT")  # ignored, NOT NULL, no default
    try:
        execute(target, "UPDATE unit SET updated_at = '2001-02-03 04:05:06.789+00' WHERE code = 'U3'")
        original = query(target, "SELECT u::text FROM unit u ORDER BY id")
        deployed = _apply(target, _capture(source, target))
        assert deployed.counts["unit"]["deletes"] == 1
        result = _rollback(target, deployed.deployment_id)
        assert result.proven
        assert (
            query(target, "SELECT u::text FROM unit u ORDER BY id") == original
        )  # every column, id included
    finally:
        execute(target, "ALTER TABLE unit ALTER COLUMN updated_at SET DEFAULT now()")


# --- races ----------------------------------------------------------------------------------------------


def test_two_rollbacks_racing_restore_once(pair):
    source, target = pair
    original = None
    load(target, BASE_STATE)
    original = physical(target)
    load(source, _with_param(BASE_STATE, "P2", "z", ""))
    deployed = _apply(target, _capture(source, target))
    other = colleague(target, "SELECT 1 FROM param WHERE cle = 'P2' FOR UPDATE")  # holds the first one
    try:
        first = Background(_rollback, target, deployed.deployment_id)
        wait_for_lock_wait(target, "gardien rollback")
        second = Background(_rollback, target, deployed.deployment_id)
        wait_for_lock_wait(target, "gardien rollback", count=2)  # behind the target lock
        other.rollback()
    finally:
        other.close()
    statuses = sorted([first.result().status, second.result().status])
    assert statuses == ["already_rolled_back", "rolled_back"]
    assert physical(target) == original


def test_an_apply_racing_the_rollback_of_an_earlier_deployment_sees_the_restored_rows(pair):
    source, target = pair
    load(source, _with_param(BASE_STATE, "P2", "z", ""))
    load(target, BASE_STATE)
    deployed = _apply(target, _capture(source, target))  # P2: y -> z
    execute(source, "UPDATE param SET valeur = 'zz' WHERE cle = 'P2'")
    second = _capture(source, target)  # P2: z -> zz, captured while the deployment is in effect
    other = colleague(target, "SELECT 1 FROM param WHERE cle = 'P2' FOR UPDATE")
    try:
        undo = Background(_rollback, target, deployed.deployment_id)
        wait_for_lock_wait(target, "gardien rollback")
        run = Background(_apply, target, second)
        wait_for_lock_wait(target, "gardien apply")  # waits for the rollback's target lock
        other.rollback()
    finally:
        other.close()
    assert undo.result().status == "rolled_back"
    with pytest.raises(ConflictError, match=r"param \[\"P2\"\] valeur: baseline 'z', now 'y', wanted 'zz'"):
        run.result()
    assert _param(target, "P2") == ("y", "")
    assert _journal_count(target) == 1


# --- a frozen client ------------------------------------------------------------------------------------


def test_a_frozen_client_cannot_hold_the_target_lock_forever(pair):
    """A client that stops between statements (frozen, SIGSTOPped, a debugger) inside the apply's
    transaction: PostgreSQL ends its session after idle_in_transaction_session_timeout, which rolls back
    and frees the target lock and the row locks."""
    from gardien.apply import apply_changeset

    source, target = pair
    load(source, _with_param(BASE_STATE, "P2", "z", ""))
    load(target, BASE_STATE)
    changeset = _capture(source, target)
    frozen = psycopg2.connect(target, application_name="gardien apply")
    try:
        result = apply_changeset(
            frozen,
            changeset,
            catalog_config=catalog_config(),
            target="tgt",
            applied_at=NOW,
            timeouts=Timeouts(idle_ms=500),
        )
        assert result.status == "applied"  # ... and the client never commits: it is frozen from here
        deadline = time.monotonic() + 30
        while query(target, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gardien apply'")[
            0
        ][0]:
            assert time.monotonic() < deadline, "the frozen session still holds the target"
            time.sleep(0.1)
    finally:
        frozen.close()
    assert _param(target, "P2") == ("y", "")  # rolled back
    assert _apply(target, changeset).status == "applied"  # the lock is free


def test_a_journal_written_before_whole_rows_were_kept_still_rolls_back(pair):
    """Deployments journaled by the previous build (no after_images column, portable before-images only)
    are rolled back as before, from their portable before-images; the next apply adds the column."""
    source, target = pair
    load(target, BASE_STATE)
    original = physical(target)
    load(source, _with_param(BASE_STATE, "P2", "z", ""))
    deployed = _apply(target, _capture(source, target))
    execute(target, "ALTER TABLE gardien.deployment DROP COLUMN after_images")
    _as_older_format(target, whole=False)
    result = _rollback(target, deployed.deployment_id)
    assert (result.status, result.proven) == ("rolled_back", True)
    assert physical(target) == original
    assert _apply(target, _capture(source, target), at=LATER).status == "applied"
    assert query(target, "SELECT count(*) FROM gardien.deployment WHERE after_images IS NOT NULL")[0][0] == 1


def _as_older_format(dsn: str, *, whole: bool) -> None:
    """Rewrite the before-images of every journaled deployment (format 3: whole rows as arrays) into journal
    format 2 (``whole``: objects holding the whole row and the portable values) or 1 (portable values only).
    Only for param rows: param has no foreign key, so its portable values are its value columns' texts."""
    for dep_id, images in query(dsn, "SELECT deployment_id, before_images FROM gardien.deployment"):
        older = {}
        for table, compact in images.items():
            assert table == "param", table
            older[table] = []
            for key, row_id, values in compact["images"]:
                row = None if values is None else dict(zip(compact["columns"], values, strict=True))
                portable = None if row is None else {c: v for c, v in row.items() if c not in ("id", "cle")}
                older[table].append(
                    {"key": key, "id": row_id, "values": portable, **({"row": row} if whole else {})}
                )
        execute(
            dsn,
            "UPDATE gardien.deployment SET before_images = %s WHERE deployment_id = %s",
            (json.dumps(older), dep_id),
        )


def test_a_journal_written_with_portable_values_beside_whole_rows_still_rolls_back(pair):
    """Journal format 2 (the first whole-row journal: portable values kept beside each whole row) is
    still read and rolled back from its whole rows, with the later-edit check."""
    source, target = pair
    load(target, BASE_STATE)
    original = physical(target)
    load(source, _with_param(BASE_STATE, "P2", "z", ""))
    deployed = _apply(target, _capture(source, target))
    (images,) = query(target, "SELECT before_images FROM gardien.deployment")[0]
    assert set(images["param"]) == {"columns", "images"}  # format 3: whole rows only
    _as_older_format(target, whole=True)
    execute(target, "UPDATE param SET unit_codes = 'U1' WHERE cle = 'P2'")  # a later edit
    with pytest.raises(
        RollbackError, match=r'param \["P2"\] unit_codes: after the deployment \'\', now \'U1\''
    ):
        _rollback(target, deployed.deployment_id)
    execute(target, "UPDATE param SET unit_codes = '' WHERE cle = 'P2'")
    result = _rollback(target, deployed.deployment_id)
    assert (result.status, result.proven) == ("rolled_back", True)
    assert physical(target) == original


def test_a_row_lock_not_obtained_in_time_is_named_for_apply_and_rollback_and_nothing_changes(pair):
    from gardien.errors import DeploymentError

    source, target = pair
    load(source, _with_param(BASE_STATE, "P2", "z", ""))
    load(target, BASE_STATE)
    changeset = _capture(source, target)
    before = physical(target)
    other = colleague(target, "SELECT 1 FROM param WHERE cle = 'P2' FOR UPDATE")
    try:
        with pytest.raises(
            DeploymentError, match="a lock could not be obtained in time .*nothing was applied"
        ):
            deploy(
                target,
                changeset,
                catalog_config=catalog_config(),
                target="tgt",
                applied_at=NOW,
                timeouts=Timeouts(lock_ms=200),
            )
        assert physical(target) == before
    finally:
        other.rollback()
    deployed = _apply(target, changeset)
    other = colleague(target, "SELECT 1 FROM param WHERE cle = 'P2' FOR UPDATE")
    try:
        with pytest.raises(
            RollbackError, match="a lock could not be obtained in time .*nothing was rolled back"
        ):
            rollback(
                target,
                deployed.deployment_id,
                catalog_config=catalog_config(),
                target="tgt",
                rolled_back_at=LATER,
                timeouts=Timeouts(lock_ms=200),
            )
    finally:
        other.rollback()
        other.close()
    assert _rollback(target, deployed.deployment_id).proven


def test_cli_rollback_names_a_later_edit_exit_10_then_keeps_it_with_the_option(pair, tmp_path):
    import os
    import subprocess
    import sys

    import yaml
    from test_engine_support import CATALOG

    source, target = pair
    deployed = _deployed_p2(source, target)
    execute(target, "UPDATE param SET unit_codes = 'U1' WHERE cle = 'P2'")
    config = tmp_path / "gardien.yaml"
    config.write_text(yaml.safe_dump({"environments": {"tgt": {"dsn": target}}, "catalog": CATALOG}))
    env = {**os.environ, "GARDIEN_CONFIG": str(config)}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-c", "from gardien.cli.main import main; main()", "rollback", "tgt", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    refused = cli(deployed.deployment_id)
    assert refused.returncode == 10, refused.stderr
    assert "param [\"P2\"] unit_codes: after the deployment '', now 'U1'" in refused.stderr
    assert "Traceback" not in refused.stderr
    kept = cli(deployed.deployment_id, "--keep-later-edits")
    assert kept.returncode == 0, kept.stderr
    assert "restoration proven" in kept.stdout
    assert (
        "later edit kept (set back after the proven restoration): param [\"P2\"] unit_codes = 'U1'"
        in kept.stdout
    )
    assert _param(target, "P2") == ("y", "U1")

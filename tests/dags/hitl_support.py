"""Helpers for DAG tests that answer Required Actions through the real Airflow REST API."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gardien.cli.approvals import REJECT
from gardien.restapi import AirflowAPI, seconds_until_settled

WAIT = 60.0  # seconds a background approver waits for a Required Action to appear


def gardien_cli(
    api_url: str, passwords: dict[str, str], user: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run the real `gardien` command as `user`, the password passed through an environment variable."""
    exe = Path(sys.executable).with_name("gardien")
    env = {**os.environ, "GARDIEN_TEST_PASSWORD": passwords[user]}
    cmd = [str(exe), *args, "--api", api_url, "--user", user, "--password-env", "GARDIEN_TEST_PASSWORD"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


class Approvers(threading.Thread):
    """Runs `script(wait_for)` beside dag.test(); whatever it raises is re-raised by `check()`."""

    def __init__(
        self, login: Callable[[str], AirflowAPI], script: Callable[[Callable[[str], dict]], None], dag_id: str
    ) -> None:
        super().__init__(daemon=True)
        self.login, self.script, self.error, self.dag_id = login, script, None, dag_id
        self.admin = login("admin")

    def wait_for(self, task_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for detail in self.admin.pending_actions(self.dag_id, "~"):
                if detail["task_instance"]["task_id"] == task_id:
                    return detail
            time.sleep(0.2)
        raise AssertionError(f"{task_id} never asked for approval")

    def run(self) -> None:
        try:
            self.script(self.wait_for)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread by check()
            self.error = exc
            self._unblock()

    def _unblock(self) -> None:
        # A failed script must not leave dag.test() waiting forever: reject as an assigned user.
        for detail in self.admin.pending_actions(self.dag_id, "~"):
            ti, users = detail["task_instance"], detail["assigned_users"]
            if users:
                self.login(users[0]["id"]).answer(
                    dag_id=self.dag_id,
                    run_id=ti["dag_run_id"],
                    task_id=ti["task_id"],
                    option=REJECT,
                    params_input={"changeset_id": "", "reason": "test script failed"},
                )

    def check(self) -> None:
        self.join(timeout=WAIT)
        if self.error is not None:
            raise self.error


def settled(detail: dict[str, Any], seconds: float = 2.0) -> bool:
    """Answer like a person: Airflow 3.3.2 can lose an answer landing while the task is still pausing."""
    return not seconds_until_settled(detail, settle=seconds)


class AutoApprover(threading.Thread):
    """Answers every Required Action of ``dag_id`` until stopped: ``decide(detail)`` returns (user, option,
    reason) or None to leave it pending. ``before_answer(detail)`` runs first (e.g. to edit production while
    a release waits). Errors are re-raised by ``stop()``."""

    def __init__(
        self,
        login: Callable[[str], AirflowAPI],
        dag_id: str,
        decide: Callable[[dict[str, Any]], tuple[str, str, str] | None],
        before_answer: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.login, self.dag_id, self.decide, self.before_answer = login, dag_id, decide, before_answer
        self.admin = login("admin")
        self.answered: list[tuple[str, str, str]] = []
        self.max_pending: set[str] = set()  # the most seats seen waiting at the same time
        self.run_ids: set[str] = set()
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                pending = self.admin.pending_actions(self.dag_id, "~")
                waiting = {d["task_instance"]["task_id"] for d in pending}
                if len(waiting) > len(self.max_pending):
                    self.max_pending = waiting
                self.run_ids |= {d["task_instance"]["dag_run_id"] for d in pending}
                for detail in pending:
                    # A seat withdrawn (skipped) in an earlier run keeps an unanswered request: only a task
                    # waiting now can take an answer (answering stale ones would use up the approvers).
                    if detail["task_instance"].get("state") not in (None, "awaiting_input"):
                        continue
                    if not settled(detail):
                        continue
                    choice = self.decide(detail)
                    if choice is None:
                        continue
                    if self.before_answer is not None:
                        self.before_answer(detail)
                    user, option, reason = choice
                    ti = detail["task_instance"]
                    changeset = (detail.get("params") or {}).get("changeset_id", {}).get("value", "")
                    self.login(user).answer(
                        dag_id=self.dag_id,
                        run_id=ti["dag_run_id"],
                        task_id=ti["task_id"],
                        option=option,
                        params_input={"changeset_id": changeset, "reason": reason},
                    )
                    self.answered.append((ti["task_id"], user, option))
                time.sleep(0.3)
        except BaseException as exc:  # noqa: BLE001 - re-raised by stop()
            self.error = exc
            # Nobody answers any more: without this the run under test would wait for its approval deadline
            # (hours) and the suite would hang. SIGALRM is pytest-timeout's: it fails the current test now (a
            # KeyboardInterrupt would end the whole session), and stop() then raises this error; outside a
            # test the signal has no Python handler and this does nothing.
            _thread.interrupt_main(signal.SIGALRM)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=WAIT)
        if self.error is not None:
            raise self.error


def first_free_assignee(taken: set[str]) -> Callable[[dict[str, Any]], tuple[str, str, str] | None]:
    """A ``decide`` that approves with the first assigned user who has not approved yet."""

    def decide(detail: dict[str, Any]) -> tuple[str, str, str] | None:
        for user in detail["assigned_users"]:
            if user["id"] not in taken:
                taken.add(user["id"])
                return user["id"], "Approve", ""
        return None

    return decide

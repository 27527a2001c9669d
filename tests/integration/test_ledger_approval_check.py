"""`gardien audit verify` checks each approval against the answer the person gave (approval.answered): the same
approver, seat and decision, no approval row without its answer, no answer silently left uncounted."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gardien import ledger, pg
from gardien.ledger import AirflowIds, answers

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)


@pytest.fixture
def ledger_dsn(pg_admin_dsn: str) -> Iterator[str]:
    name = f"gt_apcheck_{uuid.uuid4().hex[:10]}"
    dsn = pg.create_database(pg_admin_dsn, name)
    conn = pg.connect(dsn)
    ledger.ensure_schema(conn)
    conn.commit()
    conn.close()
    yield dsn
    pg.drop_database(pg_admin_dsn, name)


def _release(conn: Any, rid: str = "R-1") -> str:
    ledger.create_release(
        conn, release_id=rid, path=["std", "prod"], requested_by="parametreur", reason="test", at=T0
    )
    body = json.dumps({"demo": rid}, sort_keys=True)
    cid = hashlib.sha256(body.encode()).hexdigest()
    ledger.put_changeset(conn, changeset_id=cid, body=body)
    ledger.attach_changeset(conn, release_id=rid, changeset_id=cid, actor="airflow", at=T0)
    return cid


def _answer(conn: Any, rid: str, cid: str, *, seat: int, who: str, option: str, task: str) -> None:
    req = answers.SeatRequest(
        release_id=rid,
        changeset_id=cid,
        seat=seat,
        role="cab",
        airflow=AirflowIds(dag_id="gardien_release_standard", run_id=rid, task_id=task),
        assigned=(who,),
    )
    answers.record_request(conn, req, at=T0 + timedelta(minutes=seat))
    answers.record_answer(
        conn,
        req,
        responder=who,
        responded_at=T0 + timedelta(minutes=seat, seconds=30),
        chosen_options=[option],
        params_input={"changeset_id": cid, "reason": None},
        source="api",
    )


def _approve(conn: Any, rid: str, cid: str, *, seat: int, who: str, decision: str = "approved") -> None:
    ledger.record_approval(
        conn,
        release_id=rid,
        changeset_id=cid,
        approver=who,
        decision=decision,
        at=T0 + timedelta(minutes=seat, seconds=30),
        seat=seat,
        role="cab",
    )


def test_approvals_that_agree_with_the_answers_pass(ledger_dsn: str) -> None:
    conn = pg.connect(ledger_dsn)
    cid = _release(conn)
    _answer(conn, "R-1", cid, seat=0, who="chef.projet", option="Approve", task="approve_cab_1")
    _answer(conn, "R-1", cid, seat=1, who="dsi.adjoint", option="Approve", task="approve_cab_2")
    _approve(conn, "R-1", cid, seat=0, who="chef.projet")
    _approve(conn, "R-1", cid, seat=1, who="dsi.adjoint")
    conn.commit()

    assert ledger.approval_mismatches(conn) == ()
    conn.close()


def test_each_disagreement_between_approvals_and_answers_is_named(ledger_dsn: str) -> None:
    conn = pg.connect(ledger_dsn)
    cid = _release(conn)
    # chose Reject, recorded as approved
    _answer(conn, "R-1", cid, seat=0, who="chef.projet", option="Reject", task="approve_cab_1")
    _approve(conn, "R-1", cid, seat=0, who="chef.projet")
    # answered seat 1, recorded on seat 2
    _answer(conn, "R-1", cid, seat=1, who="dsi.adjoint", option="Approve", task="approve_cab_2")
    _approve(conn, "R-1", cid, seat=2, who="dsi.adjoint")
    # an approval nobody answered
    _approve(conn, "R-1", cid, seat=3, who="resp.exploitation")
    # an answer that never became an approval, in a release no seat ended
    _answer(conn, "R-1", cid, seat=4, who="pharma.chef", option="Approve", task="approve_pharmaciens")
    conn.commit()

    found = {(m.approver, m.problem) for m in ledger.approval_mismatches(conn)}

    assert found == {
        ("chef.projet", "decision"),
        ("dsi.adjoint", "seat"),
        ("resp.exploitation", "no_answer"),
        ("pharma.chef", "no_approval"),
    }
    described = " | ".join(m.describe() for m in ledger.approval_mismatches(conn))
    assert "chose Reject" in described and "recorded as approved" in described
    conn.close()

    cli = subprocess.run(
        [
            sys.executable,
            "-c",
            "from gardien.cli.main import main; main()",
            "audit",
            "verify",
            "--dsn",
            ledger_dsn,
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
        check=False,
    )
    assert cli.returncode == 11, cli.stdout + cli.stderr
    assert "APPROVAL MISMATCH" in cli.stdout and "4 approval(s)" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_an_answer_to_a_seat_withdrawn_by_a_rejection_is_listed_as_not_counted(ledger_dsn: str) -> None:
    conn = pg.connect(ledger_dsn)
    cid = _release(conn)
    _answer(conn, "R-1", cid, seat=0, who="pharma.chef", option="Reject", task="approve_pharmaciens")
    _approve(conn, "R-1", cid, seat=0, who="pharma.chef", decision="rejected")
    ledger.append_event(
        conn,
        kind="approval.rejected",
        actor="airflow",
        at=T0,
        release_id="R-1",
        payload={"by": "pharma.chef"},
    )
    # the CAB seat was withdrawn; someone answered its request anyway (Airflow still lists it)
    _answer(conn, "R-1", cid, seat=1, who="chef.projet", option="Approve", task="approve_cab_1")
    conn.commit()

    [m] = ledger.approval_mismatches(conn)
    assert (m.approver, m.problem, m.counts_as_problem) == ("chef.projet", "not_counted", False)
    assert "withdrawn" in m.describe()
    conn.close()


def test_an_approve_the_seat_refused_is_not_recorded_as_a_rejection_and_is_listed_as_not_counted(
    ledger_dsn: str,
) -> None:
    # The person chose Approve; the seat refused it (four-eyes: they had answered another seat). The release
    # ends, the refusal is an event (``refused``), and no "rejected" decision is written in their name.
    conn = pg.connect(ledger_dsn)
    cid = _release(conn)
    _answer(conn, "R-1", cid, seat=0, who="chef.projet", option="Approve", task="approve_cab_1")
    _approve(conn, "R-1", cid, seat=0, who="chef.projet")
    _answer(conn, "R-1", cid, seat=1, who="chef.projet", option="Approve", task="approve_cab_2")
    ledger.append_event(
        conn,
        kind="approval.rejected",
        actor="airflow",
        at=T0,
        release_id="R-1",
        payload={
            "by": "chef.projet",
            "seat": 1,
            "refused": True,
            "reason": "approval refused: chef.projet already approved another seat",
        },
    )
    conn.commit()

    [m] = ledger.approval_mismatches(conn)
    assert (m.approver, m.problem, m.counts_as_problem) == ("chef.projet", "not_counted", False)
    assert "the seat refused it" in m.describe() and "already approved another seat" in m.describe()
    conn.close()

"""The approval's text names rows the changeset retires, with their reason (not as deletions)."""

from __future__ import annotations

from gardien.airflow.approval import ReleaseFacts, _body
from gardien.policy.seats import Requirement, Seat


def _requirement() -> Requirement:
    seat = Seat(0, "cab", frozenset({"chef"}), "quorum, cab required")
    return Requirement(
        environment="prod",
        requesters=frozenset({"builder"}),
        quorum=1,
        quorum_groups=("cab",),
        required_groups=(),
        seats=(seat,),
    )


def test_approval_body_names_retired_rows_with_their_reason() -> None:
    facts = ReleaseFacts(
        release="R-1",
        changeset_id="c" * 64,
        tables_touched=("encounter_type",),
        requested_by="builder",
        retired=("encounter_type e-2: retired (reason: merged into Admission)",),
    )

    body = _body(facts, _requirement(), seat_index=0, assigned=["chef"])

    assert (
        "**Retired (kept, not deleted)**: encounter_type e-2: retired (reason: merged into Admission)" in body
    )


def test_approval_body_without_retirements_has_no_retired_line() -> None:
    facts = ReleaseFacts(release="R-1", changeset_id="c" * 64, tables_touched=(), requested_by="builder")

    assert "Retired" not in _body(facts, _requirement(), seat_index=0, assigned=["chef"])


def test_approval_body_says_a_withdrawn_request_needs_no_answer() -> None:
    facts = ReleaseFacts(release="R-1", changeset_id="c" * 64, tables_touched=(), requested_by="builder")

    body = _body(facts, _requirement(), seat_index=0, assigned=["chef"])

    assert "withdrawn" in body and "No Response Received" in body and "no answer is needed" in body

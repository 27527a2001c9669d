"""Do the recorded approvals agree with the answers people gave? (``gardien audit verify``.)

``ledger.approvals`` holds the decisions a release counted; ``approval.answered`` events hold what each person
answered, recorded when Airflow accepted it (ADR 0011). Each approval with a seat must have the answer it came
from — same release, changeset, approver and seat, and the same decision (Approve → approved, Reject →
rejected) — and each answer must have become an approval, unless a seat ended the release (``approval.rejected``):
then the other seats were withdrawn and an answer given to one of them is listed as not counted, not a fault;
an Approve the seat itself refused (stale changeset, four-eyes: ``refused`` in the event) is listed the same
way, with the refusal, since no decision is recorded in that person's name.
Approvals without a seat (recorded before seats were recorded, or outside a release DAG) are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from gardien.ledger.answers import ANSWERED
from gardien.ledger.store import database_errors

DECISION_OF = {"Approve": "approved", "Reject": "rejected"}
PROBLEMS = ("decision", "seat", "no_answer", "no_approval", "not_counted")


@dataclass(frozen=True, slots=True)
class ApprovalMismatch:
    """One disagreement between ``ledger.approvals`` and the ``approval.answered`` events of a release."""

    release_id: str
    approver: str
    problem: str  # one of PROBLEMS
    detail: str
    approval_id: int | None = None
    event_seq: int | None = None

    @property
    def counts_as_problem(self) -> bool:
        """False only for an answer to a seat withdrawn when another seat ended the release."""
        return self.problem != "not_counted"

    def describe(self) -> str:
        where = [
            f"approval #{self.approval_id}" if self.approval_id else "",
            f"event seq {self.event_seq}" if self.event_seq else "",
        ]
        refs = ", ".join(w for w in where if w)
        return f"release {self.release_id}, {self.approver}: {self.detail}" + (f" ({refs})" if refs else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "release_id": self.release_id,
            "approver": self.approver,
            "problem": self.problem,
            "detail": self.detail,
            "approval_id": self.approval_id,
            "event_seq": self.event_seq,
            "counts_as_problem": self.counts_as_problem,
        }


@dataclass(frozen=True, slots=True)
class _Answer:
    seq: int
    release_id: str
    changeset_id: str
    approver: str
    seat: int | None
    decision: str | None


@dataclass(frozen=True, slots=True)
class _Approval:
    id: int
    release_id: str
    changeset_id: str
    approver: str
    seat: int | None
    decision: str


def approval_mismatches(
    conn: psycopg2.extensions.connection, *, release_id: str | None = None
) -> tuple[ApprovalMismatch, ...]:
    """Every approval without its answer or disagreeing with it, and every answer that became no approval."""
    with database_errors("check approvals against answers"), conn.cursor() as cur:
        cur.execute(
            "SELECT id, release_id, changeset_id, approver, seat, decision FROM ledger.approvals "
            "WHERE seat IS NOT NULL AND (%(rid)s::text IS NULL OR release_id = %(rid)s) ORDER BY id",
            {"rid": release_id},
        )
        approvals = [_Approval(*row) for row in cur.fetchall()]
        cur.execute(
            "SELECT seq, release_id, subject, actor, (payload ->> 'seat')::int, payload -> 'chosen_options' "
            "FROM ledger.events WHERE kind = %(kind)s AND (%(rid)s::text IS NULL OR release_id = %(rid)s) ORDER BY seq",
            {"rid": release_id, "kind": ANSWERED},
        )
        given = [
            _Answer(seq, rid, cs or "", actor, seat, _decision(chosen))
            for seq, rid, cs, actor, seat, chosen in cur.fetchall()
        ]
        cur.execute(
            "SELECT release_id, payload ->> 'by', (payload ->> 'seat')::int, payload ->> 'reason', "
            "coalesce((payload ->> 'refused')::boolean, false) FROM ledger.events "
            "WHERE kind = 'approval.rejected' AND (%(rid)s::text IS NULL OR release_id = %(rid)s)",
            {"rid": release_id},
        )
        rejections = cur.fetchall()
    ended = {row[0] for row in rejections}
    refusals = {(rid, by, seat): reason for rid, by, seat, reason, refused in rejections if refused}
    return compare(approvals, given, ended_by_a_seat=ended, refusals=refusals)


def compare(
    approvals: list[_Approval],
    given: list[_Answer],
    *,
    ended_by_a_seat: set[str],
    refusals: dict[tuple[str, str | None, int | None], str | None] | None = None,
) -> tuple[ApprovalMismatch, ...]:
    out: list[ApprovalMismatch] = []
    used: set[int] = set()
    for a in approvals:
        mine = [
            g
            for g in given
            if (g.release_id, g.changeset_id, g.approver) == (a.release_id, a.changeset_id, a.approver)
        ]
        same_seat = [g for g in mine if g.seat == a.seat and g.seq not in used]
        if same_seat:
            g = same_seat[-1]
            used.add(g.seq)
            if g.decision != a.decision:
                out.append(
                    ApprovalMismatch(
                        a.release_id,
                        a.approver,
                        "decision",
                        f"chose {_option(g.decision)} at seat {a.seat + 1} but is recorded as {a.decision}",
                        a.id,
                        g.seq,
                    )
                )
            continue
        other = [g for g in mine if g.seq not in used]
        if other:
            g = other[-1]
            used.add(g.seq)
            out.append(
                ApprovalMismatch(
                    a.release_id,
                    a.approver,
                    "seat",
                    f"answered seat {(g.seat or 0) + 1} but is recorded at seat {a.seat + 1}",
                    a.id,
                    g.seq,
                )
            )
            continue
        out.append(
            ApprovalMismatch(
                a.release_id,
                a.approver,
                "no_answer",
                f"recorded as {a.decision} at seat {a.seat + 1} for changeset {a.changeset_id[:12]} with no "
                "answer event (approval.answered) behind it",
                a.id,
                None,
            )
        )
    counted = {(a.release_id, a.changeset_id, a.approver, a.seat) for a in approvals}
    for g in given:
        if g.seq in used or (g.release_id, g.changeset_id, g.approver, g.seat) in counted:
            continue
        seat = f"seat {(g.seat or 0) + 1}"
        refusal_key = (g.release_id, g.approver, g.seat)
        if refusals and refusal_key in refusals and g.decision == "approved":
            out.append(
                ApprovalMismatch(
                    g.release_id,
                    g.approver,
                    "not_counted",
                    f"answered Approve at {seat}, not counted: the seat refused it and the release ended "
                    f"({refusals[refusal_key] or 'reason not recorded'})",
                    None,
                    g.seq,
                )
            )
        elif g.release_id in ended_by_a_seat:
            out.append(
                ApprovalMismatch(
                    g.release_id,
                    g.approver,
                    "not_counted",
                    f"answered {_option(g.decision)} at {seat}, not counted: another seat ended the release and "
                    "this seat was withdrawn (or its answer came too late)",
                    None,
                    g.seq,
                )
            )
        else:
            out.append(
                ApprovalMismatch(
                    g.release_id,
                    g.approver,
                    "no_approval",
                    f"answered {_option(g.decision)} at {seat} for changeset {g.changeset_id[:12]}, but no approval "
                    "records it",
                    None,
                    g.seq,
                )
            )
    return tuple(out)


def _decision(chosen: Any) -> str | None:
    if isinstance(chosen, list) and len(chosen) == 1:
        return DECISION_OF.get(str(chosen[0]))
    return None


def _option(decision: str | None) -> str:
    return {"approved": "Approve", "rejected": "Reject"}.get(decision or "", "no valid option")

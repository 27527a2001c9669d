"""Approval votes bound to a changeset hash, the refusal of invalid votes, and the resulting decision."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from gardien.errors import ApprovalError
from gardien.policy.seats import Requirement, Seat, match_seats


@dataclass(frozen=True, slots=True)
class ApprovalVote:
    """One answer: `user` approved (or rejected) the changeset whose hash is `changeset_id`."""

    user: str
    approve: bool
    changeset_id: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of evaluating votes: which seats are still open, which votes were void or refused."""

    state: Literal["approved", "pending", "rejected"]
    missing: tuple[Seat, ...] = ()
    voided: tuple[ApprovalVote, ...] = ()
    refused: tuple[tuple[ApprovalVote, str], ...] = ()
    approvers: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    rejected_by: ApprovalVote | None = None


def check_vote(
    requirement: Requirement,
    vote: ApprovalVote,
    *,
    changeset_id: str,
    seat: Seat | None = None,
    already_approved: Collection[str] = (),
) -> None:
    """Raise ApprovalError naming why `vote` cannot count; return None when it can.

    `seat` restricts the check to one seat's candidates; `already_approved` lists users who filled other
    seats (one person counts once).
    """
    if vote.changeset_id != changeset_id:
        raise ApprovalError(
            f"the vote of {vote.user} is bound to changeset {vote.changeset_id[:12] or '(none)'} but the release "
            f"now carries {changeset_id[:12]}; earlier approvals are void, review and approve the new changeset"
        )
    if vote.user in requirement.requesters:
        raise ApprovalError(
            f"{vote.user} requested this release and cannot approve it (separation of duties); "
            f"ask one of: {', '.join(sorted(requirement.eligible))}"
        )
    allowed = seat.candidates if seat is not None else requirement.eligible
    if vote.user not in allowed:
        where = seat.title if seat is not None else f"the {requirement.environment} approval"
        raise ApprovalError(
            f"{vote.user} is not assigned to {where}; assigned users: {', '.join(sorted(allowed))}"
        )
    if vote.approve and vote.user in already_approved:
        raise ApprovalError(
            f"{vote.user} already approved this release; the same person counts once, ask another approver"
        )


def evaluate(requirement: Requirement, approvals: Iterable[ApprovalVote], *, changeset_id: str) -> Decision:
    """Decide from the votes collected so far (a user's later approval does not undo their rejection).

    Votes for another changeset are void; votes by a requester or a non-eligible user are refused (a
    refused rejection does not reject either); any valid rejection rejects; a user counts once; the
    release is approved when every seat can be given a distinct approver.
    """
    voided: list[ApprovalVote] = []
    refused: list[tuple[ApprovalVote, str]] = []
    approvers: list[str] = []
    rejection: ApprovalVote | None = None
    for vote in approvals:
        if vote.changeset_id != changeset_id:
            voided.append(vote)
            continue
        try:
            check_vote(requirement, vote, changeset_id=changeset_id)
        except ApprovalError as exc:
            refused.append((vote, str(exc)))
            continue
        if not vote.approve:
            rejection = rejection or vote
        elif vote.user not in approvers:
            approvers.append(vote.user)
    filled = match_seats(requirement.seats, approvers)
    missing = tuple(s for s in requirement.seats if s.index not in filled)
    return Decision(
        state="rejected" if rejection else "pending" if missing else "approved",
        missing=missing,
        voided=tuple(voided),
        refused=tuple(refused),
        approvers=MappingProxyType(dict(sorted(filled.items()))),
        rejected_by=rejection,
    )

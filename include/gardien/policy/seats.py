"""The approvals one release needs (quorum, separation of duties, routing by content) as seats to fill."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gardien.errors import ApprovalError, ConfigurationError
from gardien.policy.config import ApprovalPolicy


@dataclass(frozen=True, slots=True)
class Seat:
    """One approval to collect: any one of `candidates` fills it (requester already excluded)."""

    index: int
    label: str
    candidates: frozenset[str]
    why: str

    @property
    def title(self) -> str:
        """Human label, 1-based, e.g. 'seat 1 (pharmaciens)'."""
        return f"seat {self.index + 1} ({self.label})"


@dataclass(frozen=True, slots=True)
class Requirement:
    """What one release needs before deploying to `environment`.

    Seats: one per required group that is not already a quorum group (routing by content, emergency
    `require_groups`), listed first, then `quorum` seats open to the quorum groups. One person fills at
    most one seat: a pharmacist who also sits on the CAB approves once and counts once, so a routed
    approval is never also counted towards the quorum. A required group that IS a quorum group is
    satisfied inside the quorum (its seat replaces one of the quorum seats). An emergency replaces the
    environment's rule by `approvals.emergency`; routing by content still applies (a drug change needs a
    pharmacist even at 3 a.m.).
    """

    environment: str
    requesters: frozenset[str]
    quorum: int
    quorum_groups: tuple[str, ...]
    required_groups: tuple[str, ...]
    seats: tuple[Seat, ...]
    emergency: bool = False
    reason: str | None = None
    routed_by: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def eligible(self) -> frozenset[str]:
        """Every user who may fill at least one seat."""
        return frozenset().union(*(s.candidates for s in self.seats))


def requirement_for(
    policy: ApprovalPolicy,
    *,
    environment: str,
    tables_touched: Iterable[str],
    requester: str | Collection[str],
    emergency: bool = False,
    reason: str | None = None,
) -> Requirement:
    """Compute the approvals a release needs; `requester` (one id or several: filer and triggerer) is excluded.

    Raises ConfigurationError when the policy has no rule for the environment (or no emergency rule), and
    ApprovalError when the requirement cannot be met once the requesters are excluded, or an emergency
    lacks its mandatory reason.
    """
    requesters = frozenset({requester} if isinstance(requester, str) else requester) - {""}
    if not requesters:
        raise ApprovalError(
            "the requester of the release is unknown; separation of duties needs it "
            "(pass requested_by when triggering the release)"
        )
    if emergency:
        if policy.emergency is None:
            raise ConfigurationError(
                "an emergency release was requested but approvals.emergency is not configured; add it"
            )
        rule = policy.emergency
        if rule.reason_required and not (reason or "").strip():
            raise ApprovalError("an emergency release needs a reason; give --reason explaining the urgency")
    else:
        try:
            rule = policy.environments[environment]
        except KeyError:
            raise ConfigurationError(
                f"no approval rule for environment {environment!r}; add approvals.environments.{environment} "
                f"(known: {', '.join(sorted(policy.environments))})"
            ) from None

    touched = frozenset(tables_touched)
    routed: dict[str, list[str]] = {}
    for r in policy.routing:
        if hit := sorted(touched & r.tables):
            routed.setdefault(r.require_group, []).extend(hit)
    required = tuple(dict.fromkeys([*rule.require_groups, *sorted(routed)]))

    seats: list[Seat] = []
    quorum_candidates = policy.members(*rule.groups) - requesters
    inside_quorum = [g for g in required if g in rule.groups]
    for g in required:
        if g in rule.groups:
            continue
        why = f"content: touches {', '.join(sorted(set(routed[g])))}" if g in routed else "required group"
        seats.append(Seat(len(seats), g, policy.groups[g] - requesters, why))
    for g in inside_quorum:
        seats.append(Seat(len(seats), g, policy.groups[g] - requesters, f"quorum, {g} required"))
    label = " or ".join(rule.groups)
    for _ in range(max(0, rule.quorum - len(inside_quorum))):
        seats.append(Seat(len(seats), label, quorum_candidates, f"quorum {rule.quorum} of {label}"))

    requirement = Requirement(
        environment=environment,
        requesters=requesters,
        quorum=rule.quorum,
        quorum_groups=rule.groups,
        required_groups=required,
        seats=tuple(seats),
        emergency=emergency,
        reason=reason,
        routed_by=MappingProxyType({g: tuple(sorted(set(t))) for g, t in routed.items()}),
    )
    _check_satisfiable(requirement)
    return requirement


def _check_satisfiable(req: Requirement) -> None:
    for seat in req.seats:
        if not seat.candidates:
            raise ApprovalError(
                f"{seat.title} for {req.environment} ({seat.why}) cannot be filled: every member of "
                f"{seat.label} is a requester of this release ({', '.join(sorted(req.requesters))}); "
                f"add a member to the group or have someone else request the release"
            )
    filled = match_seats(req.seats, req.eligible)
    if len(filled) < len(req.seats):
        raise ApprovalError(
            f"{len(req.seats)} distinct approvers needed for {req.environment} but only {len(filled)} "
            f"eligible user(s) can fill the seats once the requester(s) {', '.join(sorted(req.requesters))} "
            f"are excluded; add members to the approval groups"
        )


def match_seats(seats: Iterable[Seat], users: Collection[str]) -> dict[int, str]:
    """Maximum matching of users to seats (one user, one seat), by augmenting paths; sizes are tiny."""
    seat_of: dict[str, int] = {}
    user_of: dict[int, str] = {}
    seats = list(seats)

    def place(seat: Seat, seen: set[str]) -> bool:
        for user in sorted(seat.candidates & frozenset(users)):
            if user in seen:
                continue
            seen.add(user)
            if user not in seat_of or place(seats[seat_of[user]], seen):
                seat_of[user] = seat.index
                user_of[seat.index] = user
                return True
        return False

    for seat in seats:
        place(seat, set())
    return user_of

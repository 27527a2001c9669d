"""Approval slots: the fixed, role-labelled approval tasks of a DAG, and which seat of a requirement each fills."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gardien.policy.seats import Requirement


@dataclass(frozen=True, slots=True)
class SeatSlot:
    """One approval task: the seat of ``group`` (a group with a seat of its own: routed by content or
    required), or, with ``group`` None, the ``ordinal``-th (1-based) quorum seat."""

    task_id: str
    group: str | None
    ordinal: int

    @property
    def label(self) -> str:
        return self.group if self.group is not None else f"quorum seat {self.ordinal}"


def slot_index(requirement: Requirement, slot: SeatSlot) -> int | None:
    """The index in ``requirement.seats`` that ``slot`` fills, or None when this release does not need it.

    ``requirement.seats`` lists the groups with a seat of their own first, then the quorum seats (a required
    group that is also a quorum group takes one of the quorum seats), see requirement_for.
    """
    quorum_labels = {*requirement.quorum_groups, " or ".join(requirement.quorum_groups)}
    own = sum(1 for seat in requirement.seats if seat.label not in quorum_labels)
    if slot.group is None:
        index = own + slot.ordinal - 1
        return index if 0 < slot.ordinal and index < len(requirement.seats) else None
    for seat in requirement.seats[:own]:
        if seat.label == slot.group:
            return seat.index
    return None


def slots_after(
    slots: Sequence[SeatSlot], candidates: Mapping[str, frozenset[str]]
) -> dict[str, tuple[str, ...]]:
    """For each slot (by task id), the earlier slots it is asked after: those sharing a candidate with it.

    One person fills one seat. Seats whose candidates overlap (the quorum seats of one group, always) are asked
    one after the other, so a later seat is offered only to those who have not answered an earlier one; seats
    with disjoint candidates (pharmacists, security, CAB) still wait side by side. ``candidates`` maps a slot's
    task id to everyone who may fill it (before the requesters are excluded).
    """
    order: dict[str, tuple[str, ...]] = {}
    for i, slot in enumerate(slots):
        mine = candidates.get(slot.task_id, frozenset())
        order[slot.task_id] = tuple(
            earlier.task_id for earlier in slots[:i] if mine & candidates.get(earlier.task_id, frozenset())
        )
    return order

"""Role-labelled approval tasks (``approve_pharmaciens``, ``approve_cab_1``...) that wait side by side.

A release DAG has one task per slot of its approval policy (gardien.airflow.dagspec.seat_slots); which seat
of the release's requirement a slot fills depends on the content, so it is found at run time, both when
the request is made and when the answer arrives, then handed to GardienApprovalOperator as its seat index.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from gardien.airflow.approval import GardienApprovalOperator
from gardien.policy.slots import SeatSlot, slot_index


class RoleApprovalOperator(GardienApprovalOperator):
    """GardienApprovalOperator for one role slot; a slot the release does not need succeeds at once."""

    def __init__(self, *, slot: SeatSlot, **kwargs: Any) -> None:
        kwargs.setdefault("subject", f"Gardien approval: {slot.label}")
        super().__init__(seat_index=0, **kwargs)  # the real index is known only at run time (see _place)
        self.slot = slot

    def _place(self, context: Context) -> None:
        facts = self.release_facts(context)
        requirement = self._requirement(self.policy(), facts, context)
        index = slot_index(requirement, self.slot)
        if index is None:
            self.log.info(
                "%s: release %s does not need this approval (it needs: %s)",
                self.slot.label,
                facts.release,
                ", ".join(s.title for s in requirement.seats),
            )
        # past the last seat means "not required" to GardienApprovalOperator
        self.seat_index = len(requirement.seats) if index is None else index

    def execute(self, context: Context) -> Any:
        self._place(context)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        self._place(context)
        return super().execute_complete(context, event)

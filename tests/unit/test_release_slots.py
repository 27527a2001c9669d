"""Release ids (also run ids), role-labelled approval slots and the seat each fills, log summaries. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gardien.airflow.dagspec import load_dag_specs, seat_slots
from gardien.policy import parse_policy, requirement_for
from gardien.policy.slots import slot_index
from gardien.release import summaries
from gardien.release.ids import is_release_id, new_release_id, release_page

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "include" / "config" / "gardien.yaml"
AT = datetime(2026, 12, 8, 19, 0, tzinfo=UTC)


def _approvals() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())["approvals"]


def test_release_id_is_deterministic_anchored_on_the_window_and_unique_per_request() -> None:
    rid = new_release_id(path_name="standard", anchor=AT, seed="scheduled|x")
    assert rid == new_release_id(path_name="standard", anchor=AT, seed="scheduled|x")
    assert rid.startswith("R-standard-20261208-1900-") and len(rid.rsplit("-", 1)[1]) == 6
    assert rid != new_release_id(path_name="standard", anchor=AT, seed="manual|x")
    assert is_release_id(rid, path_name="standard")
    assert not is_release_id(rid, path_name="emergency")
    assert not is_release_id("manual__2026-12-08T19:00:00+00:00", path_name="standard")
    assert release_page(rid) == f"/gardien/releases/{rid}"


def test_release_id_of_a_window_in_another_zone_is_written_in_utc() -> None:
    paris = AT.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert new_release_id(path_name="p", anchor=paris, seed="s").startswith("R-p-20261208-1900-")


def test_seat_slots_of_the_demo_policy_are_labelled_by_role() -> None:
    assert [s.task_id for s in seat_slots(_approvals(), "prod", emergency=False)] == [
        "approve_pharmaciens",
        "approve_securite",
        "approve_cab_1",
        "approve_cab_2",
    ]
    assert [s.task_id for s in seat_slots(_approvals(), "prod", emergency=True)][-1] == "approve_cab_3"
    spec = {s.path.name: s for s in load_dag_specs(CONFIG)}
    assert spec["standard"].owner == "equipe-parametrage-dpi" and spec["standard"].seats == 4


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (
            ["medicament", "profil"],
            {"approve_pharmaciens": 0, "approve_securite": 1, "approve_cab_1": 2, "approve_cab_2": 3},
        ),
        (
            ["regle_alerte_dose"],
            {"approve_pharmaciens": 0, "approve_securite": None, "approve_cab_1": 1, "approve_cab_2": 2},
        ),
        (
            ["unite_fonctionnelle"],
            {"approve_pharmaciens": None, "approve_securite": None, "approve_cab_1": 0, "approve_cab_2": 1},
        ),
    ],
    ids=["both-routed", "pharmacist-only", "nothing-routed"],
)
def test_slot_index_finds_the_seat_each_role_fills(
    tables: list[str], expected: dict[str, int | None]
) -> None:
    approvals = _approvals()
    requirement = requirement_for(
        parse_policy(approvals, source="t"),
        environment="prod",
        tables_touched=tables,
        requester="parametreur",
    )
    slots = seat_slots(approvals, "prod", emergency=False)
    found = {s.task_id: slot_index(requirement, s) for s in slots}
    assert found == expected
    filled = [i for i in found.values() if i is not None]
    assert sorted(filled) == list(range(len(requirement.seats)))  # every seat has exactly one task
    for slot in slots:
        index = found[slot.task_id]
        if slot.group is not None and index is not None:
            assert requirement.seats[index].label == slot.group


def test_slot_index_required_group_inside_the_quorum_takes_a_quorum_seat() -> None:
    approvals = {
        "groups": {"cab": ["a", "b", "c"], "pharma": ["a", "p"]},
        "environments": {"prod": {"quorum": 2, "groups": ["cab", "pharma"]}},
        "routing": [{"tables": ["medicament"], "require_group": "pharma"}],
    }
    requirement = requirement_for(
        parse_policy(approvals, source="t"), environment="prod", tables_touched=["medicament"], requester="x"
    )
    slots = seat_slots(approvals, "prod", emergency=False)
    assert [s.task_id for s in slots] == ["approve_cab_pharma_1", "approve_cab_pharma_2"]
    assert [slot_index(requirement, s) for s in slots] == [0, 1]


def test_deploy_and_verify_summaries_name_counts_ids_and_checks() -> None:
    deployed = summaries.deployed(
        release_id="R-x",
        environment="prod",
        result={
            "status": "applied",
            "counts": {
                "medicament": {"inserts": 1, "updates": 0, "deletes": 0},
                "droit": {"inserts": 0, "updates": 0, "deletes": 0},
            },
            "deployment_id": "dep-42",
            "ledger_deployment_id": 7,
            "fingerprint_before": "a" * 64,
            "fingerprint_after": "b" * 64,
            "matches_source": True,
            "drift": [],
        },
    )
    assert deployed.startswith("Release R-x deployed to prod (applied): medicament +1 ~0 −0.")
    assert "droit" not in deployed and "dep-42" in deployed and "#7" in deployed and "a" * 16 in deployed
    verified = summaries.verified(
        release_id="R-x",
        environment="prod",
        result={
            "summary": "prod: OK: 40 passed",
            "tables": ["medicament"],
            "probes": ["smoke probe p"],
            "fingerprint": "c" * 64,
        },
    )
    assert "40 passed" in verified and "smoke probe p" in verified and "equals the rehearsal's" in verified
    assert summaries.counts_line({}) == "no row changed"
    start = AT + timedelta(hours=1)
    assert "window" in summaries.opened(
        release_id="R", path=["q", "p"], requested_by="u", window=f"{start}", page="/g"
    )


def test_quorum_seats_of_one_group_are_chained_and_seats_with_disjoint_candidates_wait_side_by_side() -> None:
    from gardien.airflow.dagspec import seat_after

    # One person fills one seat: a CAB member who filled approve_cab_1 is never offered approve_cab_2, because
    # approve_cab_2 is asked only once approve_cab_1 is answered (its assignees exclude that approver).
    assert seat_after(_approvals(), "prod", emergency=False) == {
        "approve_pharmaciens": (),
        "approve_securite": (),
        "approve_cab_1": (),
        "approve_cab_2": ("approve_cab_1",),
    }
    emergency = seat_after(_approvals(), "prod", emergency=True)
    assert emergency["approve_cab_3"] == ("approve_cab_1", "approve_cab_2")
    spec = {s.path.name: s for s in load_dag_specs(CONFIG)}
    assert spec["standard"].seat_after["approve_cab_2"] == ("approve_cab_1",)


def test_a_routed_seat_sharing_a_member_with_the_quorum_comes_before_the_quorum_seats() -> None:
    from gardien.airflow.dagspec import seat_after

    approvals = _approvals()
    approvals["groups"]["pharmaciens"] = [
        *approvals["groups"]["pharmaciens"],
        "chef.projet",
    ]  # also on the CAB

    order = seat_after(approvals, "prod", emergency=False)

    assert order["approve_securite"] == ()  # rssi shares no seat with anyone: asked at once
    assert order["approve_cab_1"] == ("approve_pharmaciens",)
    assert order["approve_cab_2"] == ("approve_pharmaciens", "approve_cab_1")

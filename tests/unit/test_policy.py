"""Approval policy: configuration errors, seats (quorum, routing by content), votes and decisions."""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from gardien.errors import ApprovalError, ConfigurationError
from gardien.policy import (
    ApprovalPolicy,
    ApprovalVote,
    check_vote,
    evaluate,
    parse_policy,
    requirement_for,
)

CS = "cs-3f9a1c"  # the current changeset hash
OLD_CS = "cs-old777"

RAW: dict[str, Any] = {
    "timeout": "24h",
    "groups": {
        "cab": ["chef.projet", "resp.exploitation", "dsi.adjoint"],
        "pharmaciens": ["pharma.chef", "pharma.adjoint"],
        "securite": ["rssi"],
    },
    "environments": {
        "preprod": {"quorum": 1, "groups": ["cab"]},
        "prod": {"quorum": 2, "groups": ["cab"]},
    },
    "routing": [
        {
            "tables": ["medicament", "protocole", "ligne_protocole", "regle_alerte_dose"],
            "require_group": "pharmaciens",
        },
        {"tables": ["profil", "droit", "profil_droit"], "require_group": "securite"},
    ],
    "emergency": {"quorum": 2, "groups": ["cab"], "require_groups": ["cab"], "reason_required": True},
}
TABLES = [
    "medicament",
    "protocole",
    "ligne_protocole",
    "regle_alerte_dose",
    "profil",
    "droit",
    "profil_droit",
]


def policy(**overrides: Any) -> ApprovalPolicy:
    raw = copy.deepcopy(RAW)
    raw.update(overrides)
    return parse_policy(raw, source="gardien.yaml", known_tables=[*TABLES, "unite_fonctionnelle"])


def vote(user: str, *, approve: bool = True, cs: str = CS) -> ApprovalVote:
    return ApprovalVote(user=user, approve=approve, changeset_id=cs)


# --- configuration ------------------------------------------------------------------------------------


def test_parse_policy_demo_section_builds_policy() -> None:
    p = policy()
    assert p.timeout == timedelta(hours=24)
    assert p.groups["pharmaciens"] == frozenset({"pharma.chef", "pharma.adjoint"})
    assert p.environments["prod"].quorum == 2
    assert p.emergency is not None and p.emergency.reason_required


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(minutes=90)),
        (90, timedelta(seconds=90)),
    ],
    ids=["minutes", "days", "compound", "seconds-number"],
)
def test_parse_policy_timeout_forms_are_read(timeout: Any, expected: timedelta) -> None:
    assert policy(timeout=timeout).timeout == expected


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"groups": {**RAW["groups"], "securite": []}}, r"approvals\.groups\.securite: the group is empty"),
        (
            {"environments": {"prod": {"quorum": 2, "groups": ["cabb"]}}},
            r"approvals\.environments\.prod\.groups: unknown group 'cabb'; known groups: cab, pharmaciens",
        ),
        (
            {"environments": {"prod": {"quorum": 0, "groups": ["cab"]}}},
            r"environments\.prod\.quorum: must be at least 1 \(got 0\)",
        ),
        (
            {"environments": {"prod": {"quorum": 4, "groups": ["cab"]}}},
            r"environments\.prod\.quorum: 4 distinct approvers needed but groups cab have only 3",
        ),
        (
            {"environments": {"prod": {"quorum": 1, "groups": []}}},
            r"environments\.prod\.groups: no group given",
        ),
        ({"environments": {}}, r"approvals\.environments: no environment listed"),
        (
            {"routing": [{"tables": ["medicament"], "require_group": "pharmacie"}]},
            r"approvals\.routing\[0\]\.require_group: unknown group 'pharmacie'",
        ),
        (
            {"routing": [{"tables": [], "require_group": "securite"}]},
            r"routing\[0\]\.tables: no table listed",
        ),
        (
            {"routing": [{"tables": ["medicaments"], "require_group": "pharmaciens"}]},
            r"routing\[0\]\.tables: unknown table\(s\) medicaments",
        ),
        (
            {"emergency": {"quorum": 1, "groups": ["cab"], "require_groups": ["direction"]}},
            r"approvals\.emergency\.require_groups: unknown group 'direction'",
        ),
        ({"timeout": "24x"}, r"approvals\.timeout: .*'24x' is not a duration"),
        ({"timeout": "0s"}, r"approvals\.timeout: must be positive"),
        ({"quorum": 2}, r"approvals\.quorum: Extra inputs are not permitted"),
        (
            {"environments": {"prod": {"quorum": "two", "groups": ["cab"]}}},
            r"approvals\.environments\.prod\.quorum",
        ),
    ],
    ids=[
        "empty-group",
        "unknown-group-in-env",
        "quorum-zero",
        "quorum-too-large",
        "env-without-groups",
        "no-environment",
        "unknown-group-in-routing",
        "routing-without-tables",
        "routing-unknown-table",
        "emergency-unknown-required-group",
        "bad-duration",
        "zero-duration",
        "unknown-key",
        "quorum-not-int",
    ],
)
def test_parse_policy_bad_entry_raises_configuration_error(override: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        policy(**override)


@pytest.mark.parametrize("raw", [None, ["cab"], "approvals"], ids=["missing", "list", "string"])
def test_parse_policy_not_a_mapping_raises_configuration_error(raw: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"site\.yaml: the 'approvals' section must be a mapping"):
        parse_policy(raw, source="site.yaml")


def test_policy_import_does_not_load_airflow() -> None:
    # A fresh interpreter: this test process may already have Airflow loaded by other tiers.
    code = "import sys, gardien.policy; sys.exit('airflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- requirement and seats ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "tables", "requester", "expected"),
    [
        (
            "preprod",
            ["unite_fonctionnelle"],
            "parametreur",
            [("cab", {"chef.projet", "resp.exploitation", "dsi.adjoint"})],
        ),
        (
            "prod",
            ["unite_fonctionnelle"],
            "chef.projet",
            [("cab", {"resp.exploitation", "dsi.adjoint"}), ("cab", {"resp.exploitation", "dsi.adjoint"})],
        ),
        (
            "prod",
            ["medicament", "unite_fonctionnelle"],
            "parametreur",
            [
                ("pharmaciens", {"pharma.chef", "pharma.adjoint"}),
                ("cab", {"chef.projet", "resp.exploitation", "dsi.adjoint"}),
                ("cab", {"chef.projet", "resp.exploitation", "dsi.adjoint"}),
            ],
        ),
        (
            "preprod",
            ["protocole", "profil_droit"],
            "pharma.chef",
            [
                ("pharmaciens", {"pharma.adjoint"}),
                ("securite", {"rssi"}),
                ("cab", {"chef.projet", "resp.exploitation", "dsi.adjoint"}),
            ],
        ),
    ],
    ids=["preprod-one-cab", "prod-quorum-requester-excluded", "drug-routes-to-pharmacist", "two-routes"],
)
def test_requirement_for_seats_follow_quorum_and_routing(
    environment: str, tables: list[str], requester: str, expected: list[tuple[str, set[str]]]
) -> None:
    req = requirement_for(policy(), environment=environment, tables_touched=tables, requester=requester)
    assert [(s.label, set(s.candidates)) for s in req.seats] == expected
    assert [s.index for s in req.seats] == list(range(len(expected)))
    assert requester not in req.eligible


def test_requirement_for_routed_seat_names_the_tables() -> None:
    req = requirement_for(
        policy(), environment="prod", tables_touched=["regle_alerte_dose", "medicament"], requester="x"
    )
    assert req.seats[0].why == "content: touches medicament, regle_alerte_dose"
    assert req.routed_by == {"pharmaciens": ("medicament", "regle_alerte_dose")}


def test_requirement_for_several_requesters_all_excluded() -> None:
    req = requirement_for(
        policy(), environment="preprod", tables_touched=[], requester={"chef.projet", "resp.exploitation"}
    )
    assert req.seats[0].candidates == {"dsi.adjoint"}


def test_requirement_for_emergency_uses_emergency_rule_and_keeps_routing() -> None:
    req = requirement_for(
        policy(),
        environment="prod",
        tables_touched=["droit"],
        requester="parametreur",
        emergency=True,
        reason="panne",
    )
    assert [s.label for s in req.seats] == ["securite", "cab", "cab"]
    assert req.emergency and req.reason == "panne"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"environment": "prod", "tables_touched": ["droit"], "requester": "rssi"},
            ApprovalError,
            r"seat 1 \(securite\) for prod \(content: touches droit\) cannot be filled: every member of securite is a requester",
        ),
        (
            {"environment": "prod", "tables_touched": [], "requester": {"chef.projet", "resp.exploitation"}},
            ApprovalError,
            r"2 distinct approvers needed for prod but only 1 eligible user",
        ),
        (
            {"environment": "prod", "tables_touched": [], "requester": ""},
            ApprovalError,
            r"the requester of the release is unknown",
        ),
        (
            {"environment": "recette", "tables_touched": [], "requester": "x"},
            ConfigurationError,
            r"no approval rule for environment 'recette'; add approvals\.environments\.recette",
        ),
        (
            {
                "environment": "prod",
                "tables_touched": [],
                "requester": "x",
                "emergency": True,
                "reason": "  ",
            },
            ApprovalError,
            r"an emergency release needs a reason",
        ),
    ],
    ids=[
        "routed-group-only-requester",
        "quorum-unreachable",
        "no-requester",
        "unknown-environment",
        "emergency-no-reason",
    ],
)
def test_requirement_for_unsatisfiable_raises(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        requirement_for(policy(), **kwargs)


def test_requirement_for_emergency_without_rule_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"approvals\.emergency is not configured"):
        requirement_for(
            policy(emergency=None),
            environment="prod",
            tables_touched=[],
            requester="x",
            emergency=True,
            reason="r",
        )


def test_requirement_for_shared_member_fills_one_seat_only() -> None:
    # pharma.chef also sits on the CAB: one person, one seat, so three distinct people are still needed.
    groups = {**RAW["groups"], "cab": ["chef.projet", "pharma.chef"]}
    p = policy(groups=groups, environments={"prod": {"quorum": 2, "groups": ["cab"]}})
    req = requirement_for(p, environment="prod", tables_touched=["medicament"], requester="parametreur")
    assert evaluate(req, [vote("pharma.chef"), vote("chef.projet")], changeset_id=CS).state == "pending"
    assert (
        evaluate(
            req, [vote("pharma.chef"), vote("chef.projet"), vote("pharma.adjoint")], changeset_id=CS
        ).state
        == "approved"
    )
    with pytest.raises(ApprovalError, match=r"only 2 eligible user\(s\)"):
        requirement_for(p, environment="prod", tables_touched=["medicament"], requester="pharma.adjoint")


# --- votes and decisions ------------------------------------------------------------------------------


@pytest.fixture
def prod_drug() -> Any:
    return requirement_for(
        policy(), environment="prod", tables_touched=["medicament"], requester="parametreur"
    )


@pytest.mark.parametrize(
    ("votes", "state", "missing"),
    [
        ([], "pending", ["pharmaciens", "cab", "cab"]),
        ([vote("chef.projet"), vote("dsi.adjoint")], "pending", ["pharmaciens"]),
        ([vote("pharma.chef"), vote("chef.projet")], "pending", ["cab"]),
        ([vote("pharma.chef"), vote("chef.projet"), vote("chef.projet")], "pending", ["cab"]),
        ([vote("pharma.chef"), vote("chef.projet"), vote("dsi.adjoint")], "approved", []),
        ([vote("pharma.chef"), vote("pharma.adjoint"), vote("chef.projet")], "pending", ["cab"]),
    ],
    ids=[
        "no-vote",
        "quorum-without-pharmacist",
        "one-cab-missing",
        "same-user-counts-once",
        "complete",
        "two-pharmacists",
    ],
)
def test_evaluate_quorum_and_routing(
    prod_drug: Any, votes: list[ApprovalVote], state: str, missing: list[str]
) -> None:
    decision = evaluate(prod_drug, votes, changeset_id=CS)
    assert decision.state == state
    assert [s.label for s in decision.missing] == missing


def test_evaluate_vote_for_old_changeset_is_void(prod_drug: Any) -> None:
    votes = [vote("pharma.chef", cs=OLD_CS), vote("chef.projet", cs=OLD_CS), vote("dsi.adjoint")]
    decision = evaluate(prod_drug, votes, changeset_id=CS)
    assert decision.state == "pending"
    assert [v.user for v in decision.voided] == ["pharma.chef", "chef.projet"]
    assert [s.label for s in decision.missing] == ["pharmaciens", "cab"]


def test_evaluate_old_changeset_rejection_does_not_reject(prod_drug: Any) -> None:
    decision = evaluate(prod_drug, [vote("pharma.chef", approve=False, cs=OLD_CS)], changeset_id=CS)
    assert decision.state == "pending"
    assert decision.rejected_by is None


@pytest.mark.parametrize(
    ("votes", "refused_user", "reason"),
    [
        ([vote("parametreur")], "parametreur", "separation of duties"),
        ([vote("rssi")], "rssi", "is not assigned"),
        ([vote("parametreur", approve=False)], "parametreur", "separation of duties"),
    ],
    ids=["self-approval", "non-assigned", "self-rejection"],
)
def test_evaluate_refused_votes_do_not_count(
    prod_drug: Any, votes: list[ApprovalVote], refused_user: str, reason: str
) -> None:
    decision = evaluate(prod_drug, votes, changeset_id=CS)
    assert decision.state == "pending"
    assert [v.user for v, _ in decision.refused] == [refused_user]
    assert reason in decision.refused[0][1]


def test_evaluate_any_rejection_rejects(prod_drug: Any) -> None:
    votes = [
        vote("pharma.chef"),
        vote("chef.projet", approve=False),
        vote("dsi.adjoint"),
        vote("resp.exploitation"),
    ]
    decision = evaluate(prod_drug, votes, changeset_id=CS)
    assert decision.state == "rejected"
    assert decision.rejected_by is not None and decision.rejected_by.user == "chef.projet"


def test_evaluate_approved_maps_seats_to_distinct_approvers(prod_drug: Any) -> None:
    decision = evaluate(
        prod_drug, [vote("dsi.adjoint"), vote("pharma.adjoint"), vote("chef.projet")], changeset_id=CS
    )
    assert decision.approvers[0] == "pharma.adjoint"
    assert sorted(decision.approvers.values()) == ["chef.projet", "dsi.adjoint", "pharma.adjoint"]


@pytest.mark.parametrize(
    ("the_vote", "kwargs", "match"),
    [
        (
            vote("parametreur"),
            {},
            r"parametreur requested this release and cannot approve it \(separation of duties\)",
        ),
        (
            vote("rssi"),
            {},
            r"rssi is not assigned to the prod approval; assigned users: chef\.projet, dsi\.adjoint",
        ),
        (
            vote("chef.projet", cs=OLD_CS),
            {},
            r"bound to changeset cs-old777 but the release now carries cs-3f9a1c",
        ),
        (
            vote("chef.projet"),
            {"seat": 0},
            r"chef\.projet is not assigned to seat 1 \(pharmaciens\); assigned users: pharma\.adjoint",
        ),
        (
            vote("chef.projet"),
            {"already_approved": {"chef.projet"}},
            r"chef\.projet already approved this release",
        ),
    ],
    ids=["requester", "non-assigned", "stale-changeset", "wrong-seat", "twice"],
)
def test_check_vote_refusal_raises_approval_error(
    prod_drug: Any, the_vote: ApprovalVote, kwargs: dict[str, Any], match: str
) -> None:
    if "seat" in kwargs:
        kwargs["seat"] = prod_drug.seats[kwargs["seat"]]
    with pytest.raises(ApprovalError, match=match):
        check_vote(prod_drug, the_vote, changeset_id=CS, **kwargs)


def test_check_vote_valid_vote_passes(prod_drug: Any) -> None:
    check_vote(
        prod_drug,
        vote("pharma.chef"),
        changeset_id=CS,
        seat=prod_drug.seats[0],
        already_approved={"dsi.adjoint"},
    )

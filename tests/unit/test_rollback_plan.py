"""Which environments a failure rolls back: revert modes (stage/all) x multi-target policy, pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gardien import ledger
from gardien.release.paths import parse_release_paths
from gardien.release.stages import rollback_plan

AT = datetime(2026, 12, 1, 19, 30, tzinfo=UTC)
ENVS = ["qualif", "preprod", "p1", "p2", "p3"]


def _path(rollback: str, policy: str):
    raw = {
        "ght": {
            "source": "qualif",
            "rollback": rollback,
            "multi_target_policy": policy,
            "stages": [
                {"name": "preprod", "targets": ["preprod"]},
                {"name": "etab", "targets": ["p1", "p2", "p3"]},
            ],
        }
    }
    return parse_release_paths(raw, environments=ENVS, source="t.yaml")["ght"]


def _history(
    deployments: dict[str, str], refused: tuple[str, ...] = (), *, kind: str = "deployment.conflict"
) -> ledger.ReleaseHistory:
    rel = ledger.Release(
        id="R-1",
        path=("ght",),
        requested_by="p",
        reason="r",
        window_start=None,
        window_end=None,
        status="deploying",
        changeset_id="c" * 64,
        created_at=AT,
    )
    deps = tuple(
        ledger.DeploymentRecord(
            id=i,
            release_id="R-1",
            environment=env,
            changeset_id="c" * 64,
            target_deployment_id=f"dep-{env}",
            fingerprints={},
            status=status,
            actor="a",
            at=AT,
        )
        for i, (env, status) in enumerate(deployments.items())
    )
    events = tuple(
        ledger.Event(
            seq=i,
            at=AT,
            kind=kind,
            actor="a",
            release_id="R-1",
            subject=env,
            payload_text="{}",
            reason="conflict",
            airflow=ledger.AirflowIds(),
            prev_hash="0" * 64,
            hash="1" * 64,
        )
        for i, env in enumerate(refused)
    )
    return ledger.ReleaseHistory(
        release=rel, validations=(), approvals=(), deployments=deps, rollbacks=(), events=events
    )


ALL_OK = {"preprod": "verified", "p1": "verified", "p2": "verified", "p3": "verified"}
P2_FAILS = {"preprod": "verified", "p1": "verified", "p2": "applied", "p3": "verified"}


@pytest.mark.parametrize(
    ("rollback", "policy", "deployments", "refused", "expected"),
    [
        ("stage", "whole_stage", ALL_OK, (), []),
        ("stage", "failed_target", P2_FAILS, (), ["p2"]),
        ("stage", "whole_stage", P2_FAILS, (), ["p3", "p2", "p1"]),
        ("all", "failed_target", P2_FAILS, (), ["p2", "preprod"]),
        ("all", "whole_stage", P2_FAILS, (), ["p3", "p2", "p1", "preprod"]),
        (
            "stage",
            "whole_stage",
            {"preprod": "verified", "p1": "verified", "p3": "verified"},
            ("p2",),
            ["p3", "p1"],
        ),
        ("stage", "failed_target", {"preprod": "verified", "p1": "verified", "p3": "verified"}, ("p2",), []),
        ("all", "failed_target", {"preprod": "applied"}, (), ["preprod"]),
        ("stage", "whole_stage", {}, (), []),
        (
            "all",
            "whole_stage",
            {"preprod": "verified", "p1": "rolled_back", "p2": "applied"},
            (),
            ["p2", "preprod"],
        ),
    ],
    ids=[
        "nothing-failed",
        "failed-target-only",
        "whole-stage",
        "all-stages-failed-target",
        "all-stages-whole",
        "conflict-whole-stage",
        "conflict-failed-target-nothing-applied",
        "first-stage-fails",
        "nothing-deployed",
        "already-rolled-back-skipped",
    ],
)
def test_rollback_plan_policies(rollback, policy, deployments, refused, expected) -> None:
    assert rollback_plan(_path(rollback, policy), _history(deployments, refused)) == expected


@pytest.mark.parametrize(
    ("rollback", "policy", "expected"),
    [
        ("stage", "failed_target", ["p2"]),
        ("stage", "whole_stage", ["p3", "p2", "p1"]),
        ("all", "failed_target", ["p2", "preprod"]),
    ],
)
def test_rollback_plan_bake_failure_counts_as_a_failed_verified_target(rollback, policy, expected) -> None:
    history = _history(ALL_OK, ("p2",), kind="bake.failed")  # verified, then a bake probe failed on p2
    assert rollback_plan(_path(rollback, policy), history) == expected


def test_a_refused_rollback_leaves_the_deployment_counted_deployed_and_the_release_failed() -> None:
    from gardien.release.outcome import derive_outcome
    from gardien.release.stages import deployed_in

    history = _history({"preprod": "verified", "p1": "rollback_refused"}, ("p1",), kind="bake.failed")
    assert deployed_in(history) == ["preprod", "p1"]  # nothing was written: still in effect
    outcome = derive_outcome(history, final_targets=("p1", "p2", "p3"), hint=None)
    assert outcome.outcome == "rollback_refused" and not outcome.ok
    assert "p1" in outcome.detail and "STILL IN EFFECT" in outcome.detail

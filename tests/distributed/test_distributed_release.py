"""Releases to ten production targets on CeleryExecutor (two workers): every target checked, policies honoured."""

from __future__ import annotations

import pytest
from distributed_support import RunResult, Session

from gardien.config import load_config
from gardien.diff import diff

pytestmark = [pytest.mark.distributed, pytest.mark.integration, pytest.mark.timeout(3600)]

FAN_OUT_DEPLOY = "stage_etablissements.deploy"
FAN_OUT_VERIFY = "stage_etablissements.verify"


def _diff_empty(session: Session, source: str, target: str) -> bool:
    catalog = load_config(session.config_file).catalog
    return diff(session.dsns[source], session.dsns[target], catalog_config=catalog).is_empty


def _matches_pristine_prod(session: Session, result: RunResult, target: str) -> bool:
    """The target holds exactly what production held before the release (proof the rollback restored it)."""
    catalog = load_config(session.config_file).catalog
    pristine = session.pristine_prod[result.scenario.path]
    return diff(pristine, session.dsns[target], catalog_config=catalog).is_empty


def test_distributed_release_ten_targets_all_deployed_and_verified_across_workers(
    distributed: Session,
) -> None:
    result = distributed.results["ght"]
    s = result.scenario

    assert result.state == "success", result.states(FAN_OUT_VERIFY)
    assert result.states(FAN_OUT_VERIFY) == dict.fromkeys(range(10), "success")
    latest = result.latest_deployments()
    for target in [s.env("preprod"), *s.production]:
        assert _diff_empty(distributed, s.env("qualif"), target), f"{target} differs from qualif"
        assert latest[target].status == "verified", target
    assert result.history.release.status == "closed"
    hostnames = {ti["hostname"] for ti in result.task_instances if ti.get("hostname")}
    assert len({h.split(".")[0] for h in hostnames}) >= 2, hostnames  # worker1.<host>, worker2.<host>


def test_distributed_release_failed_target_policy_rolls_back_only_that_target(distributed: Session) -> None:
    result = distributed.results["ght_failed_target"]
    s = result.scenario
    failing = s.env(s.fails_on or "")
    index = s.production.index(failing)

    assert result.state == "failed"
    verify = result.states(FAN_OUT_VERIFY)
    assert verify[index] == "failed"
    assert {i: st for i, st in verify.items() if i != index} == {
        i: "success" for i in range(10) if i != index
    }
    assert result.states("rollback") == {-1: "success"}
    latest = result.latest_deployments()
    assert latest[failing].status == "rolled_back"
    assert [r.proven for r in result.history.rollbacks] == [True]  # one rollback, proven
    assert _matches_pristine_prod(distributed, result, failing)
    for target in s.production:
        if target != failing:
            assert latest[target].status == "verified", target
            assert _diff_empty(distributed, s.env("qualif"), target), f"{target} was not left deployed"


def test_distributed_release_whole_stage_policy_rolls_back_every_target(distributed: Session) -> None:
    result = distributed.results["ght_whole_stage"]
    s = result.scenario

    assert result.state == "failed"
    assert result.states(FAN_OUT_VERIFY)[s.production.index(s.env(s.fails_on or ""))] == "failed"
    latest = result.latest_deployments()
    assert {t: latest[t].status for t in s.production} == dict.fromkeys(s.production, "rolled_back")
    assert len(result.history.rollbacks) == s.targets and all(r.proven for r in result.history.rollbacks)
    for target in s.production:
        assert _matches_pristine_prod(distributed, result, target), f"{target} not restored"
    assert result.history.release.status == "rolled_back"


def test_distributed_release_target_down_or_missing_a_table_fails_alone_with_its_reason(
    distributed: Session,
) -> None:
    result = distributed.results["ght_target_down"]
    s = result.scenario
    down = s.env(s.down_target or "")
    broken, table = s.missing_table or ("", "")
    broken = s.env(broken)

    assert result.state == "failed"
    assert result.states(FAN_OUT_DEPLOY) == {0: "success", 1: "success", 2: "failed", 3: "failed"}
    refused = {e.subject: e.reason or "" for e in result.history.events if e.kind == "deployment.failed"}
    assert set(refused) == {down, broken}
    assert "connect" in refused[down].lower()  # the reason names the unreachable server
    assert table in refused[broken]  # ... and the table the target's schema lacks
    latest = result.latest_deployments()
    assert down not in latest and broken not in latest  # nothing recorded as applied there
    assert result.history.rollbacks == ()  # failed_target: nothing was applied on the failed targets
    for target in s.production:
        if target not in (down, broken):
            assert latest[target].status == "verified", target
            assert _diff_empty(distributed, s.env("qualif"), target), target

"""GardienApprovalOperator end to end: dag.test() while approvers answer through the real REST API and CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hitl_support import Approvers, gardien_cli

from gardien.cli.approvals import APPROVE, REJECT, answer_release
from gardien.errors import ApprovalError, AuthenticationError
from gardien.restapi import AirflowAPI, AirflowAPIError

pytestmark = [pytest.mark.dag, pytest.mark.timeout(180)]

DAG_FOLDER = Path(__file__).parent / "dags_approval"
DAG_ID = "gardien_test_approval"
WAIT = 60.0  # seconds a background approver waits for a Required Action to appear


@pytest.fixture(scope="module")
def approval_dag(airflow_db: Path, approval_ledger: str) -> Iterator[Any]:
    """The test DAG, with a DAG bundle pointing at its folder so dag.test() can serialize it."""
    with approval_dags(DAG_FOLDER) as bag:
        yield bag.dags[DAG_ID]


@contextmanager
def approval_dags(folder: Path) -> Iterator[Any]:
    """The DagBag of ``folder``, with a DAG bundle pointing at it so dag.test() can serialize its DAGs."""
    bundles = [
        {
            "name": "gardien-approval-tests",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder), "refresh_interval": 0},
        }
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(folder))
        assert bag.import_errors == {}
        yield bag


def run_release(dag: Any, approvers: Approvers, **conf: Any) -> tuple[Any, dict[str, str]]:
    approvers.start()
    dr = dag.test(
        run_conf={"release": "R-1", "changeset_id": "cs-a1b2c3d4e5f6", "requested_by": "parametreur", **conf}
    )
    approvers.check()
    return dr, {ti.task_id: ti.state for ti in dr.get_task_instances()}


def xcom(
    admin: AirflowAPI, run_id: str, task_id: str, key: str = "return_value", *, dag_id: str = DAG_ID
) -> Any:
    path = (
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}?deserialize=true"
    )
    return admin._request("GET", path)["value"]


def refused(call: Callable[[], Any], match: str) -> str:
    with pytest.raises(ApprovalError, match=match) as info:
        call()
    return str(info.value)


def test_approval_assigned_approvers_approve_and_others_get_403(
    approval_dag: Any, login: Callable[[str], AirflowAPI], api_url: str, passwords: dict[str, str]
) -> None:
    seen: dict[str, Any] = {}

    def script(wait_for: Callable[[str], dict]) -> None:
        seat1 = wait_for("approve_seat_1")
        seen["seat1"] = seat1
        run_id = seat1["task_instance"]["dag_run_id"]

        def answer(user: str, **kw: Any) -> Any:
            return answer_release(login(user), release=run_id, dag_id=DAG_ID, option=APPROVE, **kw)

        seen["requester"] = gardien_cli(api_url, passwords, "parametreur", "approve", run_id, "--dag", DAG_ID)
        seen["non_assigned"] = refused(lambda: answer("chef.projet"), r"chef\.projet may not answer")
        seen["stale_client"] = refused(
            lambda: answer("pharma.chef", changeset="cs-0ld0ld0ld0ld"),
            r"you reviewed changeset cs-0ld0ld0ld but",
        )
        seen["approved1"] = gardien_cli(
            api_url,
            passwords,
            "pharma.chef",
            "approve",
            run_id,
            "--dag",
            DAG_ID,
            "--changeset",
            "cs-a1b2c3d4e",  # the 12-character id shown everywhere
        )
        seen["twice"] = refused(
            lambda: _raise_refusal(login("pharma.adjoint"), run_id, "approve_seat_1"), r"already answered"
        )
        seat2 = wait_for("approve_seat_2")
        seen["seat2"] = seat2
        seen["rssi"] = refused(lambda: answer("rssi"), r"rssi may not answer")
        # By release reference (found in the subject) rather than run id.
        seen["approved2"] = answer_release(login("dsi.adjoint"), release="R-1", dag_id=None, option=APPROVE)

    dr, states = run_release(
        approval_dag, Approvers(login, script, DAG_ID), environment="preprod", tables_touched=["medicament"]
    )

    assert states == {
        "approve_seat_1": "success",
        "approve_seat_2": "success",
        "approve_seat_3": "success",
        "deploy": "success",
    }
    assert dr.state == "success"
    assert {u["id"] for u in seen["seat1"]["assigned_users"]} == {"pharma.chef", "pharma.adjoint"}
    assert {u["id"] for u in seen["seat2"]["assigned_users"]} == {
        "chef.projet",
        "resp.exploitation",
        "dsi.adjoint",
    }
    assert "cs-a1b2c3d4e5f6" in seen["seat1"]["body"] and "R-1" in seen["seat1"]["subject"]
    assert seen["requester"].returncode == 8
    assert "parametreur may not answer" in seen["requester"].stderr
    assert "assigned users may: pharma.adjoint, pharma.chef" in seen["requester"].stderr
    assert seen["approved1"].returncode == 0, seen["approved1"].stderr
    assert seen["approved1"].stdout.startswith(
        f"pharma.chef approved {DAG_ID}/{dr.run_id} task approve_seat_1"
    )
    assert seen["approved2"].user == "dsi.adjoint"
    admin = login("admin")
    first = xcom(admin, dr.run_id, "approve_seat_1")
    assert (first["responded_by_user"]["id"], first["changeset_id"], first["approved"]) == (
        "pharma.chef",
        "cs-a1b2c3d4e5f6",
        True,
    )
    assert xcom(admin, dr.run_id, "approve_seat_3")["required"] is False


def _raise_refusal(api: AirflowAPI, run_id: str, task_id: str) -> None:
    from gardien.cli.approvals import _refusal

    try:
        api.answer(
            dag_id=DAG_ID,
            run_id=run_id,
            task_id=task_id,
            option=APPROVE,
            params_input={"changeset_id": "", "reason": ""},
        )
    except AirflowAPIError as exc:
        raise _refusal(exc, api.username, run_id, None) from exc


def test_approval_earlier_approver_not_assigned_to_later_seat(
    approval_dag: Any, login: Callable[[str], AirflowAPI]
) -> None:
    seen: dict[str, Any] = {}

    def script(wait_for: Callable[[str], dict]) -> None:
        wait_for("approve_seat_1")
        answer_release(login("resp.exploitation"), release="R-1", dag_id=DAG_ID, option=APPROVE)
        seen["seat2"] = wait_for("approve_seat_2")
        answer_release(login("dsi.adjoint"), release="R-1", dag_id=DAG_ID, option=APPROVE)

    dr, states = run_release(
        approval_dag, Approvers(login, script, DAG_ID), environment="prod", requested_by="chef.projet"
    )

    assert dr.state == "success"
    # chef.projet requested, resp.exploitation filled seat 1: only dsi.adjoint may fill seat 2.
    assert [u["id"] for u in seen["seat2"]["assigned_users"]] == ["dsi.adjoint"]


def test_approval_rejection_ends_release_with_reason(
    approval_dag: Any, login: Callable[[str], AirflowAPI]
) -> None:
    def script(wait_for: Callable[[str], dict]) -> None:
        wait_for("approve_seat_1")
        answer_release(
            login("dsi.adjoint"), release="R-1", dag_id=DAG_ID, option=REJECT, reason="dose maximale erronée"
        )

    dr, states = run_release(
        approval_dag, Approvers(login, script, DAG_ID), environment="prod", requested_by="chef.projet"
    )

    assert dr.state == "failed"
    assert states["approve_seat_1"] == "failed" and states["deploy"] == "upstream_failed"
    rejection = xcom(login("admin"), dr.run_id, "approve_seat_1", "rejection")
    assert (rejection["by"], rejection["reason"]) == ("dsi.adjoint", "dose maximale erronée")


def test_approval_for_stale_changeset_is_refused_on_resume(
    approval_dag: Any, login: Callable[[str], AirflowAPI]
) -> None:
    def script(wait_for: Callable[[str], dict]) -> None:
        detail = wait_for("approve_seat_1")
        # The server accepts (the user is assigned); the operator refuses: the hash is not the current one.
        login("chef.projet").answer(
            dag_id=DAG_ID,
            run_id=detail["task_instance"]["dag_run_id"],
            task_id="approve_seat_1",
            option=APPROVE,
            params_input={"changeset_id": "cs-previous", "reason": ""},
        )

    dr, states = run_release(approval_dag, Approvers(login, script, DAG_ID), environment="preprod")

    assert dr.state == "failed" and states["deploy"] == "upstream_failed"
    rejection = xcom(login("admin"), dr.run_id, "approve_seat_1", "rejection")
    assert rejection["by"] == "chef.projet"
    assert rejection["refused"] is True  # chef.projet chose Approve: no "rejected" decision in their name
    assert "bound to changeset cs-previous but the release now carries cs-a1b2c3d4e;" in rejection["reason"]


def test_approval_timeout_counts_as_rejection(approval_dag: Any, login: Callable[[str], AirflowAPI]) -> None:
    def script(wait_for: Callable[[str], dict]) -> None:
        detail = wait_for("approve_seat_1")
        _expire(detail["task_instance"]["dag_run_id"], "approve_seat_1")

    dr, states = run_release(approval_dag, Approvers(login, script, DAG_ID), environment="preprod")

    assert dr.state == "failed" and states["approve_seat_1"] == "failed"
    rejection = xcom(login("admin"), dr.run_id, "approve_seat_1", "rejection")
    assert rejection["by"] is None and rejection["reason"].startswith("timeout")


def _expire(run_id: str, task_id: str) -> None:
    """Move the response deadline into the past and run the scheduler's real timeout sweep."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select, update

    # The Required Action is listed as soon as it is written, a moment before the task has parked: sweep
    # only once it is parked, or the park would set a fresh deadline over ours.
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with create_session() as session:
            state = session.scalar(
                select(TaskInstance.state).where(
                    TaskInstance.dag_id == DAG_ID,
                    TaskInstance.run_id == run_id,
                    TaskInstance.task_id == task_id,
                )
            )
        if state == TaskInstanceState.AWAITING_INPUT:
            break
        time.sleep(0.2)
    with create_session() as session:
        session.execute(
            update(TaskInstance)
            .where(
                TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
            .values(trigger_timeout=timezone.utcnow() - timedelta(seconds=1))
        )
    with create_session() as session:
        SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts(session=session)


# --- adapter helpers (no run needed) -----------------------------------------------------------------


def test_required_action_url_matches_airflow_link(approval_dag: Any) -> None:
    from types import SimpleNamespace

    from gardien.airflow.approval import required_action_url

    ti = SimpleNamespace(
        dag_id=DAG_ID, run_id="manual__2026-12-01T20:00:00+00:00", task_id="approve_seat_1", map_index=-1
    )
    expected = approval_dag.get_task("approve_seat_1").generate_link_to_ui(
        task_instance=ti, base_url="https://airflow.chu.example/"
    )
    got = required_action_url(
        base_url="https://airflow.chu.example/", dag_id=DAG_ID, run_id=ti.run_id, task_id=ti.task_id
    )
    assert got == expected


@pytest.mark.parametrize(
    ("conf", "match"),
    [
        ({}, r"the run conf lacks release, changeset_id, requested_by"),
        ({"release": "R-1", "changeset_id": "cs"}, r"the run conf lacks requested_by"),
    ],
    ids=["empty", "no-requester"],
)
def test_facts_from_conf_missing_keys_raise_approval_error(
    airflow_db: Path, conf: dict[str, Any], match: str
) -> None:
    from types import SimpleNamespace

    from gardien.airflow.approval import facts_from_conf

    with pytest.raises(ApprovalError, match=match):
        facts_from_conf({"dag_run": SimpleNamespace(conf=conf)})  # type: ignore[arg-type]


def test_policy_from_yaml_reads_the_demo_configuration(airflow_db: Path) -> None:
    from gardien.airflow.approval import policy_from_yaml

    policy = policy_from_yaml()()
    assert policy.environments["prod"].quorum == 2
    assert {r.require_group for r in policy.routing} == {"pharmaciens", "securite"}


def test_policy_from_yaml_missing_file_raises_configuration_error(airflow_db: Path, tmp_path: Path) -> None:
    from gardien.airflow.approval import policy_from_yaml
    from gardien.errors import ConfigurationError

    with pytest.raises(
        ConfigurationError, match=r"cannot read the configuration .*absent\.yaml.*set GARDIEN_CONFIG"
    ):
        policy_from_yaml(tmp_path / "absent.yaml")()


def test_operator_negative_seat_raises_value_error(airflow_db: Path) -> None:
    from gardien.airflow.approval import GardienApprovalOperator

    with pytest.raises(ValueError, match=r"seat_index must be >= 0 \(got -1\)"):
        GardienApprovalOperator(task_id="bad", seat_index=-1, environment="prod")


def test_cli_unknown_release_is_refused(login: Callable[[str], AirflowAPI]) -> None:
    with pytest.raises(
        ApprovalError, match=r"no pending approval for 'R-inconnue' in DAG gardien_test_approval"
    ):
        answer_release(login("chef.projet"), release="R-inconnue", dag_id=DAG_ID, option=APPROVE)


def test_cli_wrong_password_is_refused(api_url: str) -> None:
    api = AirflowAPI(base_url=api_url, username="chef.projet", password="not-the-password")
    with pytest.raises(AuthenticationError, match=r"Airflow refused the credentials of user 'chef\.projet'"):
        answer_release(api, release="R-1", dag_id=DAG_ID, option=APPROVE)


def test_cli_wrong_password_exits_12_authentication_failed(api_url: str, passwords: dict[str, str]) -> None:
    done = gardien_cli(
        api_url, {**passwords, "chef.projet": "not-the-password"}, "chef.projet", "approve", "R-1"
    )
    assert done.returncode == 12, done.stderr
    assert "authentication failed" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("prefix", ["cs-a1b2c3d4", "   ", "abc"], ids=["11-chars", "blank", "3-chars"])
def test_cli_changeset_prefix_shorter_than_12_is_a_usage_error(
    api_url: str, passwords: dict[str, str], prefix: str
) -> None:
    done = gardien_cli(api_url, passwords, "chef.projet", "approve", "R-1", "--changeset", prefix)
    assert done.returncode == 2, done.stderr
    assert (
        "is too short: give at least 12 characters" in done.stderr and "Nothing was answered" in done.stderr
    )


def test_cli_changeset_prefix_naming_two_pending_changesets_is_ambiguous() -> None:
    from gardien.cli.approvals import _reviewed
    from gardien.errors import UsageError

    def pending(changeset: str, task: str) -> dict[str, Any]:
        return {"task_instance": {"task_id": task}, "params": {"changeset_id": {"value": changeset}}}

    both = [pending("ab12cd34ef56" + "0" * 52, "approve_a"), pending("ab12cd34ef56" + "1" * 52, "approve_b")]
    with pytest.raises(UsageError, match=r"--changeset ab12cd34ef56 is ambiguous: it starts 2 changeset ids"):
        _reviewed(both, changeset="ab12cd34ef56", release="R-9")
    assert (
        _reviewed(both, changeset="ab12cd34ef561", release="R-9")["task_instance"]["task_id"] == "approve_b"
    )
    with pytest.raises(ApprovalError, match=r"you reviewed changeset ab12cd34ef57 but release R-9 now asks"):
        _reviewed(both, changeset="ab12cd34ef57", release="R-9")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["reject", "R-1", "--reason", "  "], 2, "--reason is empty"),
        (["reject", "R-1"], 2, "Missing option '--reason'"),
    ],
    ids=["blank-reason", "no-reason"],
)
def test_cli_reject_without_reason_is_a_usage_error(
    api_url: str, passwords: dict[str, str], args: list[str], code: int, message: str
) -> None:
    done = gardien_cli(api_url, passwords, "chef.projet", *args)
    assert done.returncode == code
    assert message in done.stderr + done.stdout

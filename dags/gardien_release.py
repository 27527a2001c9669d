"""Release DAGs, one per release path of the Gardien configuration (gardien_release_<path>).

extract → validate (rehearsal) → approvals (Required Actions, one task per role, waiting side by side) → wait
for the window → per stage:
deploy (locked, three-way checked) → verify → optional bake (repeated probes) → on failure: rollback (policy)
→ close (report, outcome).
Wiring only: every task calls gardien.airflow.release; nothing here touches a database at parse time.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Param, TaskGroup, TriggerRule, chain, task, task_group

from gardien.airflow import release as rel
from gardien.airflow.approval import policy_from_yaml
from gardien.airflow.bake import BakeOperator
from gardien.airflow.callbacks import on_task_failure
from gardien.airflow.dagspec import load_dag_specs
from gardien.airflow.notifier import ApprovalRequestedNotifier
from gardien.airflow.seats import RoleApprovalOperator
from gardien.airflow.timetable import ManualReleaseTimetable, ReleaseWindowTimetable
from gardien.airflow.window import WaitForWindowSensor

CONFIG = os.environ.get("GARDIEN_CONFIG", "include/config/gardien.yaml")
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=30), "on_failure_callback": on_task_failure}

POOL = "gardien_targets"  # bounds how many targets of a stage deploy at once


@task_group
def fan_out(path_name: str, release_id: str, environment: str) -> None:
    """Deploy then verify one target of a multi-target stage (each target has its own lock and proof)."""
    deployed = task(task_id="deploy", pool=POOL)(rel.deploy)(path_name, release_id, environment)
    deployed >> task(task_id="verify", pool=POOL)(rel.verify)(path_name, release_id, environment)


for spec in load_dag_specs(CONFIG):
    path = spec.path.name
    with DAG(
        dag_id=f"gardien_release_{path}",
        description=f"Gardien release path {path}: {spec.path.source} → "
        + " → ".join("+".join(s.targets) for s in spec.path.stages),
        # Both timetables make the run id the release id (R-<path>-…); an emergency has no schedule.
        schedule=ManualReleaseTimetable(release_path=path)
        if spec.path.emergency
        else ReleaseWindowTimetable.from_config_file(CONFIG, release_path=path),
        catchup=False,
        max_active_runs=1,
        default_args={**RETRIES, "owner": spec.owner},
        params={
            "requested_by": Param(
                "", type="string", description="Who requests this release (cannot approve it)"
            ),
            "reason": Param(
                "" if not spec.path.emergency else "",
                type="string",
                minLength=10 if spec.path.emergency else 0,
                description="Why (mandatory for an emergency release)",
            ),
            "emergency": Param(spec.path.emergency, type="boolean", const=spec.path.emergency),
            "accept_blast_radius": Param(
                "",
                type="string",
                description="Tables (comma-separated, or *) whose blast-radius limit this release accepts; "
                "the requester and the reason are recorded in the ledger",
            ),
        },
        tags=["gardien", "release", *(["emergency"] if spec.path.emergency else [])],
        doc_md=__doc__,
    ) as dag:
        opened = task(task_id="open_release")(rel.open_release)(path)
        extracted = task.short_circuit(task_id="extract", ignore_downstream_trigger_rules=False)(rel.extract)(
            path, opened
        )
        validated = task(task_id="validate", retries=0)(rel.validate)(path, opened)

        # One approval task per role (approve_pharmaciens, approve_cab_1, ...); a role this release does not need
        # passes at run time. One person fills one seat: each seat checks the others, and seats a same person could
        # fill (the quorum seats) are asked one after the other, each offered only to who has not answered yet.
        seat_ids = [slot.task_id for slot in spec.slots]
        seats = [
            RoleApprovalOperator(
                task_id=slot.task_id,
                slot=slot,
                environment=spec.approval_environment,
                policy=policy_from_yaml(CONFIG),
                release_facts=rel.release_facts(path),
                notifiers=[ApprovalRequestedNotifier(path_name=path)],
                earlier_seats=[other for other in seat_ids if other != slot.task_id],
                # Decisions fail with AirflowFailException (never retried); retries only replay a try Airflow
                # 3.3.2 lost to its pause race (the operator enforces at least MIN_SEAT_RETRIES), and each
                # resumes from the answer already given.
                retries=3,
                retry_delay=timedelta(seconds=5),
            )
            for slot in spec.slots
        ]
        by_id = {seat.task_id: seat for seat in seats}
        for seat in seats:
            for earlier in spec.seat_after.get(seat.task_id, ()):
                by_id[earlier] >> seat
        approved = task(task_id="record_approvals")(rel.record_approvals)(path, opened, seat_ids)
        # As soon as one seat refuses (or fails), the seats still waiting are withdrawn so the run can end.
        withdrawn = task(task_id="withdraw_approvals", trigger_rule=TriggerRule.ONE_FAILED, retries=0)(
            rel.withdraw_approvals
        )(seat_ids)

        if spec.path.emergency:
            gate = []
        else:
            gate = [
                WaitForWindowSensor(
                    task_id="wait_for_window",
                    target_time="{{ dag_run.data_interval_start or dag_run.run_after }}",
                    retries=1,
                ),
                task(task_id="check_window", retries=0)(rel.check_window)(path, opened),
            ]

        stage_groups = []
        for stage in spec.path.stages:
            if len(stage.targets) == 1:
                env = stage.targets[0]
                with TaskGroup(group_id=f"stage_{stage.name}") as stage_group:
                    deployed = task(task_id=f"deploy_{env}")(rel.deploy)(path, opened, env)
                    deployed >> task(task_id=f"verify_{env}")(rel.verify)(path, opened, env)
            else:  # several targets (e.g. one EHR instance per establishment): one mapped group per target
                stage_group = (
                    fan_out.override(group_id=f"stage_{stage.name}")
                    .partial(path_name=path, release_id=opened)
                    .expand(environment=list(stage.targets))
                )
            stage_groups.append(stage_group)
            if stage.bake_minutes > 0:  # keep probing the stage's targets before going further
                stage_groups.append(
                    BakeOperator(
                        task_id=f"bake_{stage.name}",
                        path_name=path,
                        stage=stage.name,
                        release_id=opened,
                        retries=1,
                    )
                )

        # ALL_DONE, not ONE_FAILED: with several targets per stage, rollback must wait until every target has
        # finished, or it would judge still-running targets failed. It skips itself when nothing failed.
        rolled_back = task(task_id="rollback", trigger_rule=TriggerRule.ALL_DONE, retries=1)(
            rel.rollback_failed
        )(path, opened)
        # A failed release fails its close with one line (ReleaseFailed), never retried.
        closed = task(
            task_id="close", trigger_rule=TriggerRule.ALL_DONE, retries=1, retry_policy=rel.CLOSE_RETRY_POLICY
        )(rel.close)(path, opened, seat_ids)

        chain(opened, extracted, validated, seats, approved, *gate, *stage_groups, closed)
        seats >> withdrawn
        stage_groups >> rolled_back >> closed
    globals()[dag.dag_id] = dag

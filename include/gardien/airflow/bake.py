"""BakeOperator: the bake period after a stage, probing its targets without holding a worker slot between probes.

Probe now → defer to the triggerer until the next probe (DateTimeTrigger) → probe → ... until the stage's
``bake_minutes`` have passed. A failed probe fails the task (AirflowFailException: retrying does not unmake a
failure) after the core has recorded it, so the release's rollback treats the target as failed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from gardien.errors import ValidationFailedError


class BakeOperator(BaseOperator):
    """Probe the targets of stage ``stage`` of release path ``path_name`` for the stage's bake period."""

    template_fields = ("release_id",)
    ui_color = "#f6e7c1"

    def __init__(self, *, path_name: str, stage: str, release_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path_name, self.stage, self.release_id = path_name, stage, release_id

    def execute(self, context: Context) -> dict[str, Any]:
        return self._round(context, resumed=False)

    def resume(self, context: Context, event: Any = None, **_: Any) -> dict[str, Any]:
        # The bake's start is read back from the ledger (event bake.started), not from the deferral kwargs:
        # dag.test() replaces those by the trigger's event.
        return self._round(context, resumed=True)

    def _round(self, context: Context, *, resumed: bool) -> dict[str, Any]:
        from gardien import ledger
        from gardien.airflow.release import service, step_context
        from gardien.errors import LedgerError
        from gardien.release import bake, stages

        svc = service(self.path_name)
        stage = svc.path.stage(self.stage)
        ctx = step_context(context)
        with (
            svc.ledger() as conn
        ):  # one read per round: targets, the bake's start and the rehearsal's prediction
            history = ledger.release_history(conn, self.release_id)
        targets = [t for t in stages.deployed_in(history) if t in stage.targets]
        if not targets:
            self.log.info("Stage %s has no deployed target to bake.", self.stage)
            return {"environments": [], "rounds": 0, "minutes": stage.bake_minutes}
        if not resumed:
            begin = bake.start(
                svc,
                self.release_id,
                self.stage,
                targets,
                ctx=ctx,
                minutes=stage.bake_minutes,
                every_seconds=stage.bake_probe_every_seconds,
            )
        elif (found := bake.started_at(history, self.stage)) is not None:
            begin = found
        else:
            raise LedgerError(
                f"release {self.release_id}: the bake of stage {self.stage} resumed but the ledger has no "
                "bake.started event for it; clear the task to restart the bake."
            )
        now = datetime.now(UTC)
        round_no = 1 + int((now - begin).total_seconds() // stage.bake_probe_every_seconds)
        for env in targets:
            try:
                result = bake.probe(svc, history, env, ctx=ctx, round_no=round_no)
            except ValidationFailedError as exc:
                raise AirflowFailException(str(exc)) from exc
            self.log.info("Bake probe %d of %s passed: %s", round_no, env, result)
        deadline = begin + timedelta(minutes=stage.bake_minutes)
        now = datetime.now(UTC)
        if now >= deadline:
            return bake.complete(svc, history, targets, ctx=ctx, rounds=round_no, minutes=stage.bake_minutes)
        moment = min(now + timedelta(seconds=stage.bake_probe_every_seconds), deadline)
        self.log.info(
            "Next bake probe at %s (bake ends %s); deferred, no worker slot held.", moment, deadline
        )
        self.defer(trigger=DateTimeTrigger(moment=moment), method_name="resume")

"""A manual rollback of one release on one environment: check the request against the ledger, then revert it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gardien import journal, ledger, pg
from gardien.changeset import Changeset
from gardien.config import GardienConfig, resolve_environment
from gardien.config import ledger_dsn as config_ledger_dsn
from gardien.errors import ConfigurationError, RollbackError
from gardien.release import stages
from gardien.release.reconcile import reconcile, reconcile_environment
from gardien.release.service import ReleaseService, StepContext


@dataclass(frozen=True, slots=True)
class RollbackRequest:
    """A checked request: the release's deployment in effect on ``environment`` and what reverting it touches."""

    release_id: str
    path_name: str
    environment: str
    changeset_id: str
    target_deployment_id: str
    tables_touched: tuple[str, ...]
    overlapping: tuple[str, ...]  # later deployments still in effect on the same rows (journal names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "release_id": self.release_id,
            "path_name": self.path_name,
            "environment": self.environment,
            "changeset_id": self.changeset_id,
            "target_deployment_id": self.target_deployment_id,
            "tables_touched": list(self.tables_touched),
            "overlapping": list(self.overlapping),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RollbackRequest:
        return cls(
            release_id=data["release_id"],
            path_name=data["path_name"],
            environment=data["environment"],
            changeset_id=data["changeset_id"],
            target_deployment_id=data["target_deployment_id"],
            tables_touched=tuple(data["tables_touched"]),
            overlapping=tuple(data["overlapping"]),
        )


def later_overwrites(dsn: str, target_deployment_id: str) -> tuple[str, ...]:
    """Deployments made after ``target_deployment_id`` on that target, still in effect, on the same rows."""
    conn = pg.connect(dsn, application_name="gardien rollback check")
    try:
        with conn.cursor() as cur:
            dep = journal.find(cur, target_deployment_id)
            if dep is None:
                raise RollbackError(
                    f"the target's journal has no deployment {target_deployment_id!r}, although the ledger "
                    "records it: the target was restored or replaced. Compare the target with the release "
                    "report; nothing was rolled back."
                )
            touched = dep.touched()
            return tuple(
                d.name
                for d in journal.later_active(cur, dep)
                if any(touched.get(t, set()) & keys for t, keys in d.touched().items())
            )
    finally:
        conn.rollback()
        conn.close()


def check_request(
    config: GardienConfig, release_id: str, environment: str, *, force: bool, ctx: StepContext
) -> RollbackRequest:
    """Check that ``release_id`` is in effect on ``environment`` and may be rolled back.

    First the release's targets are reconciled (gardien.release.reconcile, as ``ctx``): a deployment the target
    committed but the ledger never recorded (process killed in between) is recorded now, so it is found and
    rolled back instead of being called "never deployed". Raises ConfigurationError (unknown environment,
    release path gone), LedgerError (unknown release), EnvironmentUnavailableError (the target or the ledger is
    unreachable: retry) or RollbackError (never deployed there, already rolled back, or — unless ``force`` — a
    later release overwrote the same rows, named in the message). No target is changed.
    """
    resolve_environment(config, environment)  # unknown environment: ConfigurationError listing the known ones
    conn = pg.connect(config_ledger_dsn(config), application_name="gardien rollback check")
    try:
        ledger.require_schema(conn)
        path = ledger.get_release(conn, release_id).path  # LedgerError naming an unknown release
        conn.commit()
    finally:
        conn.close()
    # The environment asked for must be reconciled (unreachable: raise, the task is retried); the release's other
    # targets only feed the "deployed on ..." hint, so an unreachable one there is skipped.
    reconcile_environment(config, environment, ctx=ctx)
    others = [e for e in path[1:] if e != environment and e in config.environments]
    reconcile(config, ctx=ctx, environments=others)
    conn = pg.connect(config_ledger_dsn(config), application_name="gardien rollback check")
    try:
        history = ledger.release_history(conn, release_id)
        changeset_id = history.release.changeset_id
        body = ledger.get_changeset(conn, changeset_id) if changeset_id else None
        conn.commit()
    finally:
        conn.close()
    mine = [d for d in history.deployments if d.environment == environment]
    if not mine or mine[-1].target_deployment_id is None:
        where = sorted({d.environment for d in history.deployments if d.target_deployment_id})
        raise RollbackError(
            f"release {release_id} was never deployed on {environment}"
            + (f" (it was deployed on {', '.join(where)})" if where else " (it was never deployed anywhere)")
            + ": nothing to roll back. Pick the environment where it is in effect."
        )
    dep = mine[-1]
    if dep.status == "rolled_back":
        raise RollbackError(
            f"release {release_id} is already rolled back on {environment} (proof in the ledger): nothing to do."
        )
    if dep.status == "rollback_unproven":
        raise RollbackError(
            f"release {release_id} on {environment} has an unproven rollback: MANUAL REPAIR NEEDED first; a new "
            "rollback would restore over an unknown state."
        )
    path_name = history.release.path[0]
    if path_name not in (config.release_paths or {}):
        raise ConfigurationError(
            f"release {release_id} came through release path {path_name!r}, which the configuration no longer "
            "declares; restore that path under release_paths to roll it back."
        )
    overlapping = later_overwrites(resolve_environment(config, environment).dsn, dep.target_deployment_id)
    if overlapping and not force:
        raise RollbackError(
            f"release {release_id} cannot be rolled back on {environment}: later deployment(s) "
            f"{', '.join(overlapping)} overwrote the same rows and are still in effect. Roll those back first, "
            "or trigger again with force=true to restore these rows anyway."
        )
    tables: tuple[str, ...] = ()
    if body is not None:
        counts = Changeset.from_body_json(body, expected_id=changeset_id).counts()
        tables = tuple(sorted(t for t, c in counts.items() if sum(c.values())))
    return RollbackRequest(
        release_id=release_id,
        path_name=path_name,
        environment=environment,
        changeset_id=dep.changeset_id,
        target_deployment_id=dep.target_deployment_id,
        tables_touched=tables,
        overlapping=overlapping,
    )


def perform(
    svc: ReleaseService, request: RollbackRequest, *, reason: str, ctx: StepContext, force: bool
) -> dict[str, Any]:
    """Roll back with the engine's proof and record it (gardien.release.stages.rollback).

    The overwrite check runs again just before: a release deployed while approvals were pending must
    refuse the rollback (naming it) without recording an unproven rollback. Raises RollbackError.
    """
    if not force:
        overlapping = later_overwrites(svc.dsn(request.environment), request.target_deployment_id)
        if overlapping:
            raise RollbackError(
                f"release {request.release_id} cannot be rolled back on {request.environment}: later "
                f"deployment(s) {', '.join(overlapping)} overwrote the same rows meanwhile and are still in "
                "effect. Roll those back first, or trigger again with force=true."
            )
    result = stages.rollback(
        svc, request.release_id, request.environment, reason=reason, ctx=ctx, force=force
    )
    if not stages.deployed_environments(svc, request.release_id):
        svc.set_status(request.release_id, "rolled_back", ctx=ctx, reason=reason)
    return result

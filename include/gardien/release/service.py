"""The release service: each step of a release as one call, recorded in the ledger. No Airflow here.

The release DAG's tasks are thin calls into this class with values (release id, environment name, actor,
"now", Airflow ids); the changeset itself travels through the ledger, never through XCom. Every method is
safe to retry: it first looks at what the ledger (and the target's journal) already holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gardien import ledger, pg
from gardien.changeset import Changeset
from gardien.config import GardienConfig, load_config, resolve_environment
from gardien.config import ledger_dsn as config_ledger_dsn
from gardien.errors import ConfigurationError, LedgerError, RollbackError, ValidationFailedError
from gardien.release.paths import ReleasePath, parse_release_paths


@dataclass(frozen=True, slots=True)
class StepContext:
    """Who acts, when, and from where (Airflow ids are optional: the CLI has none)."""

    actor: str
    now: datetime
    airflow: ledger.AirflowIds | None = None


def state_dir() -> Path:
    """Where release artifacts (changeset copies, reports, Data Docs) are written."""
    return Path(os.environ.get("GARDIEN_STATE_DIR", ".gardien")).resolve()


class ReleaseService:
    """One release path of one configuration. Cheap to build; connections are opened per step."""

    def __init__(self, config: GardienConfig, path_name: str, *, artifacts: Path | None = None) -> None:
        self.config = config
        paths = parse_release_paths(
            config.release_paths,
            environments=config.environments,
            source=config.source_path or "configuration",
        )
        if path_name not in paths:
            known = ", ".join(sorted(paths)) or "(none)"
            raise ConfigurationError(
                f"{config.source_path}: release_paths: no path named {path_name!r}; known: {known}."
            )
        self.path: ReleasePath = paths[path_name]
        self.artifacts = artifacts or state_dir() / "releases"

    @classmethod
    def from_config_file(cls, path_name: str, config_path: str | Path | None = None) -> ReleaseService:
        return cls(load_config(config_path), path_name)

    # --- plumbing -------------------------------------------------------------------------------------
    @contextmanager
    def ledger(self) -> Iterator[Any]:
        """A ledger connection in a transaction: committed on success, rolled back on error."""
        conn = pg.connect(config_ledger_dsn(self.config), application_name="gardien release")
        try:
            ledger.require_schema(conn)
            yield conn
            conn.commit()
        except BaseException:
            if not conn.closed:  # a lost connection has nothing to roll back; keep the real error
                conn.rollback()
            raise
        finally:
            conn.close()

    def release_dir(self, release_id: str) -> Path:
        d = self.artifacts / release_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def dsn(self, environment: str) -> str:
        return resolve_environment(self.config, environment).dsn

    def changeset(self, release_id: str) -> Changeset:
        """The release's current changeset, read from the ledger (hash checked on read)."""
        with self.ledger() as conn:
            rel = ledger.get_release(conn, release_id)
            if rel.changeset_id is None:
                raise LedgerError(f"release {release_id} has no changeset yet: run the extraction first.")
            return Changeset.from_body_json(
                ledger.get_changeset(conn, rel.changeset_id), expected_id=rel.changeset_id
            )

    # --- steps ----------------------------------------------------------------------------------------
    def open(
        self,
        *,
        release_id: str,
        requested_by: str,
        reason: str,
        window_start: datetime | None,
        window_end: datetime | None,
        ctx: StepContext,
    ) -> ledger.Release:
        """Create the release record, or return it when a retried task created it already."""
        with self.ledger() as conn:
            try:
                return ledger.get_release(conn, release_id)
            except LedgerError:
                pass
            return ledger.create_release(
                conn,
                release_id=release_id,
                path=[self.path.name, *self.path.all_targets],
                requested_by=requested_by,
                reason=reason,
                at=ctx.now,
                window_start=window_start,
                window_end=window_end,
                actor=ctx.actor,
                airflow=ctx.airflow,
            )

    def extract(self, release_id: str, *, ctx: StepContext) -> dict[str, Any]:
        """Capture the changeset source → final target, store it (content-addressed) and attach it."""
        from gardien.diff import diff

        target = self.path.final_targets[0]
        changeset = diff(
            self.dsn(self.path.source),
            self.dsn(target),
            catalog_config=self.config.catalog,
            source_label=self.path.source,
            target_label=target,
        )
        (self.release_dir(release_id) / "changeset.json").write_text(changeset.to_json())
        with self.ledger() as conn:
            ledger.put_changeset(conn, changeset_id=changeset.id, body=changeset.body_json())
            rel = ledger.get_release(conn, release_id)
            if rel.changeset_id != changeset.id:
                ledger.attach_changeset(
                    conn,
                    release_id=release_id,
                    changeset_id=changeset.id,
                    actor=ctx.actor,
                    at=ctx.now,
                    reason=f"captured {self.path.source} → {target}",
                    airflow=ctx.airflow,
                )
        return {
            "changeset_id": changeset.id,
            "empty": changeset.is_empty,
            "counts": changeset.counts(),
            "tables": sorted(t for t, c in changeset.counts().items() if sum(c.values())),
        }

    def set_status(
        self, release_id: str, status: str, *, ctx: StepContext, reason: str | None = None
    ) -> None:
        with self.ledger() as conn:
            if ledger.get_release(conn, release_id).status != status:
                ledger.set_release_status(
                    conn,
                    release_id=release_id,
                    status=status,
                    actor=ctx.actor,
                    at=ctx.now,
                    reason=reason,
                    airflow=ctx.airflow,
                )

    def event(
        self,
        release_id: str,
        kind: str,
        *,
        ctx: StepContext,
        payload: dict | None = None,
        reason: str | None = None,
        subject: str | None = None,
    ) -> None:
        with self.ledger() as conn:
            ledger.append_event(
                conn,
                kind=kind,
                actor=ctx.actor,
                at=ctx.now,
                release_id=release_id,
                subject=subject,
                payload=payload,
                reason=reason,
                airflow=ctx.airflow,
            )

    def record_approval(
        self,
        release_id: str,
        *,
        approver: str,
        decision: str,
        changeset_id: str,
        comment: str | None,
        ctx: StepContext,
    ) -> None:
        with self.ledger() as conn:
            ledger.record_approval(
                conn,
                release_id=release_id,
                changeset_id=changeset_id,
                approver=approver,
                decision=decision,
                at=ctx.now,
                comment=comment,
                airflow=ctx.airflow,
            )

    def write_json(self, release_id: str, name: str, data: Any) -> Path:
        path = self.release_dir(release_id) / name
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        return path


def is_rollback_unproven(exc: BaseException) -> bool:
    return isinstance(exc, RollbackError) and "manual repair" in str(exc)


__all__ = ["ReleaseService", "StepContext", "ValidationFailedError", "is_rollback_unproven", "state_dir"]

"""What the board needs from the Gardien configuration, read once: ledger DSN, paths, policy, catalog hints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gardien.calendar import Calendar, parse_calendar
from gardien.config import GardienConfig, ledger_dsn, load_config
from gardien.policy import ApprovalPolicy, parse_policy
from gardien.release.paths import ReleasePath, parse_release_paths
from gardien.report.hints import CatalogHints

ROLLBACK_DAG = "gardien_rollback"


@dataclass(frozen=True, slots=True)
class BoardSettings:
    """The configuration as the board uses it; ``ledger_dsn`` never reaches a page."""

    ledger_dsn: str
    paths: Mapping[str, ReleasePath]
    environments: tuple[str, ...]
    policy: ApprovalPolicy | None
    calendar: Calendar | None
    # table -> soft-delete description ("actif = false"): deletes there are retirements, not removals
    soft_deletes: Mapping[str, str]
    # (table, column) -> separator of a list-valued column (shown as set differences)
    list_fields: Mapping[tuple[str, str], str]

    @classmethod
    def from_config(cls, cfg: GardienConfig) -> BoardSettings:
        source = cfg.source_path or "<config>"
        envs = tuple(cfg.environments)
        paths = parse_release_paths(cfg.release_paths, environments=set(envs), source=source)
        policy = (
            parse_policy(cfg.approvals, source=source, known_tables=[t.name for t in cfg.catalog.tables])
            if cfg.approvals
            else None
        )
        calendar = parse_calendar(cfg.calendar, source=source) if cfg.calendar else None
        hints = CatalogHints.from_catalog(cfg.catalog)  # the report's reading of the catalog
        return cls(
            ledger_dsn=ledger_dsn(cfg),
            paths=MappingProxyType(dict(paths)),
            environments=tuple(e for e, c in cfg.environments.items() if c.role != "source"),
            policy=policy,
            calendar=calendar,
            soft_deletes=MappingProxyType(dict(hints.retired_by)),
            list_fields=MappingProxyType(dict(hints.list_separators)),
        )

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> BoardSettings:
        return cls.from_config(load_config(path))

    @property
    def release_dag_ids(self) -> tuple[str, ...]:
        return tuple(f"gardien_release_{name}" for name in self.paths)

    def path_of_dag(self, dag_id: str | None) -> ReleasePath | None:
        if dag_id and dag_id.startswith("gardien_release_"):
            return self.paths.get(dag_id.removeprefix("gardien_release_"))
        return None

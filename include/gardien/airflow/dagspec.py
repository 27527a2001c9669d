"""What the DAG files need at parse time, read cheaply from the YAML (no database, no env substitution)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gardien.errors import ConfigurationError
from gardien.release.paths import ReleasePath, parse_release_paths


@dataclass(frozen=True, slots=True)
class DagSpec:
    path: ReleasePath
    approval_environment: str
    seats: int  # the most approval seats this path can need; unneeded seats pass at run time


def _read(config_file: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(config_file).read_text())
    except OSError as exc:
        raise ConfigurationError(f"{config_file}: cannot read ({exc.strerror}); set GARDIEN_CONFIG.") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{config_file}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{config_file}: expected a mapping at the top level.")
    return data


def max_seats(approvals: Any, environment: str, *, emergency: bool) -> int:
    """Upper bound of seats for ``environment``: its quorum plus one per content-routing rule."""
    if not isinstance(approvals, dict):
        return 1
    rule = (
        (approvals.get("emergency") if emergency else None)
        or (approvals.get("environments") or {}).get(environment)
        or {}
    )
    quorum = int(rule.get("quorum", 1)) if isinstance(rule, dict) else 1
    extra = len(rule.get("require_groups") or []) if isinstance(rule, dict) else 0
    return quorum + extra + len(approvals.get("routing") or [])


def load_dag_specs(config_file: str | Path) -> list[DagSpec]:
    data = _read(config_file)
    envs = list((data.get("environments") or {}).keys())
    paths = parse_release_paths(data.get("release_paths"), environments=envs, source=str(config_file))
    specs = []
    for path in paths.values():
        env = path.final_targets[0]
        specs.append(
            DagSpec(
                path=path,
                approval_environment=env,
                seats=max_seats(data.get("approvals"), env, emergency=path.emergency),
            )
        )
    return specs

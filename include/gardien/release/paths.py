"""Release paths: which source goes to which targets, in which stages, with which failure policy."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gardien.errors import ConfigurationError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class _StageModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    targets: list[str] = Field(min_length=1)
    # After the stage is verified: keep probing its targets for this long (smoke probes + fingerprint still
    # equal to the rehearsal's) before the next stage or the close; a failed probe rolls back like a failed
    # verification. Fractions allowed (0.5 = 30 s). Waits between probes hold no worker slot.
    bake_minutes: float = Field(default=0, ge=0, le=24 * 60)
    bake_probe_every_seconds: int = Field(default=300, ge=1, le=3600)


class _PathModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    stages: list[_StageModel] = Field(min_length=1)
    # sqitch-like revert mode when a stage fails verification: only that stage, or every stage deployed so far.
    rollback: Literal["stage", "all"] = "stage"
    # within a multi-target stage: roll back only the failed target, or every target of the stage.
    multi_target_policy: Literal["failed_target", "whole_stage"] = "whole_stage"
    min_window_minutes: int = Field(default=15, ge=0)
    approval_timeout_hours: float = Field(default=24, gt=0)
    emergency: bool = False
    # Who answers for this path's DAG (Airflow's owner column), e.g. the EHR configuration team.
    owner: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[_StageModel]) -> list[_StageModel]:
        names = [s.name for s in stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stage names must be unique, repeated: {', '.join(dup)}")
        return stages


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    targets: tuple[str, ...]
    bake_minutes: float = 0
    bake_probe_every_seconds: int = 300


@dataclass(frozen=True, slots=True)
class ReleasePath:
    name: str
    source: str
    stages: tuple[Stage, ...]
    rollback: str
    multi_target_policy: str
    min_window_minutes: int
    approval_timeout_hours: float
    emergency: bool
    owner: str | None = None

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigurationError(
            f"release path {self.name} has no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}."
        )

    @property
    def required_window_minutes(self) -> float:
        """How much of the window must remain when deployment starts: the deployment margin plus every bake
        period (a bake watches production while the people of the window are still on hand)."""
        return self.min_window_minutes + sum(s.bake_minutes for s in self.stages)

    @property
    def final_targets(self) -> tuple[str, ...]:
        return self.stages[-1].targets

    @property
    def all_targets(self) -> tuple[str, ...]:
        return tuple(t for s in self.stages for t in s.targets)


def parse_release_paths(
    raw: Mapping[str, Any] | None, *, environments: Iterable[str], source: str
) -> dict[str, ReleasePath]:
    """Parse the ``release_paths`` section; every error names the path, the entry and the fix."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{source}: release_paths: must be a mapping of path name to definition.")
    known = sorted(environments)
    paths: dict[str, ReleasePath] = {}
    for name, body in raw.items():
        where = f"{source}: release_paths.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigurationError(
                f"{where}: path name must be lower-case letters, digits and underscores (it becomes a DAG id)."
            )
        try:
            model = _PathModel.model_validate(body or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            hint = " A release path needs at least one stage." if loc == "stages" else ""
            raise ConfigurationError(f"{where}.{loc}: {err['msg']}.{hint}") from None
        if model.source not in known:
            raise ConfigurationError(
                f"{where}.source: unknown environment {model.source!r}; known: {', '.join(known)}."
            )
        seen: set[str] = set()
        for i, stage in enumerate(model.stages):
            for target in stage.targets:
                if target not in known:
                    raise ConfigurationError(
                        f"{where}.stages[{i}] ({stage.name}): unknown environment {target!r}; known: {', '.join(known)}."
                    )
                if target == model.source:
                    raise ConfigurationError(
                        f"{where}.stages[{i}] ({stage.name}): target {target!r} is the source."
                    )
                if target in seen:
                    raise ConfigurationError(
                        f"{where}.stages[{i}] ({stage.name}): {target!r} already appears in an earlier stage."
                    )
                seen.add(target)
        paths[name] = ReleasePath(
            name=name,
            source=model.source,
            stages=tuple(
                Stage(s.name, tuple(s.targets), s.bake_minutes, s.bake_probe_every_seconds)
                for s in model.stages
            ),
            rollback=model.rollback,
            multi_target_policy=model.multi_target_policy,
            min_window_minutes=model.min_window_minutes,
            approval_timeout_hours=model.approval_timeout_hours,
            emergency=model.emergency,
            owner=model.owner,
        )
    return paths

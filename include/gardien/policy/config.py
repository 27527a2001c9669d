"""The `approvals:` section of the configuration: pydantic models and the validated ApprovalPolicy."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gardien.errors import ConfigurationError

_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageRuleConfig(_Strict):
    """Approvals needed to deploy to one environment."""

    quorum: int
    groups: list[str]


class RoutingRuleConfig(_Strict):
    """A changeset touching any of `tables` needs one approver from `require_group`."""

    tables: list[str]
    require_group: str


class EmergencyRuleConfig(_Strict):
    """Replaces the environment rule for an emergency release."""

    quorum: int
    groups: list[str]
    require_groups: list[str] = Field(default_factory=list)
    reason_required: bool = True


class ApprovalPolicyConfig(_Strict):
    """The `approvals:` section as written in YAML (validated further by `parse_policy`)."""

    timeout: timedelta = timedelta(hours=24)
    groups: dict[str, list[str]]
    environments: dict[str, StageRuleConfig]
    routing: list[RoutingRuleConfig] = Field(default_factory=list)
    emergency: EmergencyRuleConfig | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        # "24h", "1h30m", "2d" read better in YAML than ISO 8601; a bare number means seconds.
        if isinstance(value, bool):
            raise ValueError("expected a duration such as 24h, 30m or 2d")
        if isinstance(value, int | float):
            return timedelta(seconds=value)
        if isinstance(value, str):
            match = _DURATION.match(value)
            if not match or not any(match.groups()):
                raise ValueError(f"{value!r} is not a duration; write e.g. 24h, 30m, 2d or 1h30m")
            d, h, m, s = (int(g or 0) for g in match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
        return value


@dataclass(frozen=True, slots=True)
class StageRule:
    """`quorum` distinct approvals from members of `groups` (plus any `require_groups` seats)."""

    quorum: int
    groups: tuple[str, ...]
    require_groups: tuple[str, ...] = ()
    reason_required: bool = False


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """Touching any of `tables` requires one approval from a member of `require_group`."""

    tables: frozenset[str]
    require_group: str


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """The approval policy, validated: every group named by a rule exists and can meet its quorum."""

    timeout: timedelta
    groups: Mapping[str, frozenset[str]]
    environments: Mapping[str, StageRule]
    routing: tuple[RoutingRule, ...] = ()
    emergency: StageRule | None = None

    def members(self, *groups: str) -> frozenset[str]:
        """Union of the members of `groups`."""
        return frozenset().union(*(self.groups[g] for g in groups))


def parse_policy(raw: Any, *, source: str, known_tables: Collection[str] | None = None) -> ApprovalPolicy:
    """Validate the raw `approvals` section; `source` names the file in errors.

    `known_tables` (the catalog's tables), when given, catches a routing rule naming a table that does not
    exist: a typo there would silently switch routing off. Raises ConfigurationError naming the entry.
    """
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"{source}: the 'approvals' section must be a mapping with groups and environments "
            f"(got {type(raw).__name__}); see docs/configuration.md"
        )
    try:
        cfg = ApprovalPolicyConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("approvals", *err["loc"]))
        raise ConfigurationError(f"{source}: {where}: {err['msg']}") from exc

    def fail(where: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{source}: approvals.{where}: {problem}")

    groups: dict[str, frozenset[str]] = {}
    for name, members in cfg.groups.items():
        cleaned = [m.strip() for m in members]
        if not cleaned:
            raise fail(f"groups.{name}", "the group is empty; list at least one user id or remove it")
        if any(not m for m in cleaned):
            raise fail(f"groups.{name}", "a member is blank; write the Airflow user id")
        groups[name] = frozenset(cleaned)

    def known_group(where: str, name: str) -> str:
        if name not in groups:
            raise fail(where, f"unknown group {name!r}; known groups: {', '.join(sorted(groups)) or 'none'}")
        return name

    def stage(where: str, rule: StageRuleConfig | EmergencyRuleConfig) -> StageRule:
        if not rule.groups:
            raise fail(f"{where}.groups", "no group given; name at least one group whose members may approve")
        names = tuple(known_group(f"{where}.groups", g) for g in dict.fromkeys(rule.groups))
        required = tuple(
            known_group(f"{where}.require_groups", g)
            for g in dict.fromkeys(getattr(rule, "require_groups", ()))
        )
        if rule.quorum < 1:
            raise fail(f"{where}.quorum", f"must be at least 1 (got {rule.quorum})")
        size = len(frozenset().union(*(groups[g] for g in names)))
        if rule.quorum > size:
            raise fail(
                f"{where}.quorum",
                f"{rule.quorum} distinct approvers needed but groups {', '.join(names)} have only {size} "
                f"member(s); lower the quorum or add members",
            )
        return StageRule(
            quorum=rule.quorum,
            groups=names,
            require_groups=required,
            reason_required=getattr(rule, "reason_required", False),
        )

    if not cfg.environments:
        raise fail("environments", "no environment listed; give at least the production rule")
    environments = {env: stage(f"environments.{env}", rule) for env, rule in cfg.environments.items()}

    routing: list[RoutingRule] = []
    for i, rule in enumerate(cfg.routing):
        where = f"routing[{i}]"
        if not rule.tables:
            raise fail(f"{where}.tables", "no table listed; a routing rule needs the tables it watches")
        if known_tables is not None and (unknown := sorted(set(rule.tables) - set(known_tables))):
            raise fail(
                f"{where}.tables",
                f"unknown table(s) {', '.join(unknown)}; routing must name catalog tables",
            )
        routing.append(
            RoutingRule(frozenset(rule.tables), known_group(f"{where}.require_group", rule.require_group))
        )

    emergency = stage("emergency", cfg.emergency) if cfg.emergency is not None else None
    if cfg.timeout <= timedelta(0):
        raise fail("timeout", "must be positive, e.g. 24h")
    return ApprovalPolicy(
        timeout=cfg.timeout,
        groups=MappingProxyType(groups),
        environments=MappingProxyType(environments),
        routing=tuple(routing),
        emergency=emergency,
    )

"""What the DAG files need at parse time, read cheaply from the YAML (no database, no env substitution)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from gardien.errors import ConfigurationError
from gardien.policy.slots import SeatSlot, slots_after
from gardien.release.paths import ReleasePath, parse_release_paths

DEFAULT_OWNER = "gardien"


@dataclass(frozen=True, slots=True)
class DagSpec:
    path: ReleasePath
    approval_environment: str
    slots: tuple[
        SeatSlot, ...
    ]  # one approval task each; a slot this release does not need passes at run time
    owner: str = DEFAULT_OWNER
    # slot task id -> the slots it is asked after (seats a same person could fill: see slots_after)
    seat_after: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def seats(self) -> int:
        """The most approval seats this path can need."""
        return len(self.slots)


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


def _rule(approvals: Any, environment: str, *, emergency: bool) -> dict[str, Any]:
    if not isinstance(approvals, dict):
        return {}
    rule = (
        (approvals.get("emergency") if emergency else None)
        or (approvals.get("environments") or {}).get(environment)
        or {}
    )
    return rule if isinstance(rule, dict) else {}


def seat_slots(approvals: Any, environment: str, *, emergency: bool) -> tuple[SeatSlot, ...]:
    """The approval tasks of ``environment``, labelled by role: one per group that gets a seat of its own
    (``approve_pharmaciens``: routed by content or required), then the quorum seats (``approve_cab_1``...).

    Mirrors gardien.policy.requirement_for, which decides at run time which slots a release needs.
    """
    rule = _rule(approvals, environment, emergency=emergency)
    quorum_groups = [str(g) for g in rule.get("groups") or []]
    routed = [
        str(r.get("require_group"))
        for r in ((approvals or {}).get("routing") or [] if isinstance(approvals, dict) else [])
        if isinstance(r, dict) and r.get("require_group")
    ]
    own = [g for g in dict.fromkeys([*(rule.get("require_groups") or []), *routed]) if g not in quorum_groups]
    slots = [SeatSlot(task_id=f"approve_{_slug(g)}", group=str(g), ordinal=0) for g in own]
    quorum_label = "_".join(_slug(g) for g in quorum_groups) or "quorum"
    try:
        quorum = int(rule.get("quorum", 1))
    except (TypeError, ValueError):
        quorum = 1
    slots += [
        SeatSlot(task_id=f"approve_{quorum_label}_{k}", group=None, ordinal=k) for k in range(1, quorum + 1)
    ]
    return tuple(_unique(slots))


def seat_after(approvals: Any, environment: str, *, emergency: bool) -> dict[str, tuple[str, ...]]:
    """For each approval task of ``environment``, the approval tasks it waits for (gardien.policy.slots_after):
    the quorum seats one after the other, a seat sharing a member with an earlier one after it."""
    slots = seat_slots(approvals, environment, emergency=emergency)
    groups = approvals.get("groups") if isinstance(approvals, dict) else None
    groups = groups if isinstance(groups, dict) else {}

    def members(*names: str) -> frozenset[str]:
        return frozenset(
            str(m) for g in names if isinstance(groups.get(g), list) for m in groups[g] if m is not None
        )

    quorum_groups = [str(g) for g in _rule(approvals, environment, emergency=emergency).get("groups") or []]
    candidates = {
        s.task_id: members(s.group) if s.group is not None else members(*quorum_groups) for s in slots
    }
    return slots_after(slots, candidates)


def max_seats(approvals: Any, environment: str, *, emergency: bool) -> int:
    """Upper bound of seats for ``environment``: its quorum plus one per group with a seat of its own."""
    return max(1, len(seat_slots(approvals, environment, emergency=emergency)))


def _slug(name: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_") or "group"


def _unique(slots: list[SeatSlot]) -> list[SeatSlot]:
    """Two group names that slug alike (``a-b``, ``a b``) still get distinct task ids."""
    seen: set[str] = set()
    out = []
    for slot in slots:
        task_id, n = slot.task_id, 1
        while task_id in seen:
            n += 1
            task_id = f"{slot.task_id}_{n}"
        seen.add(task_id)
        out.append(SeatSlot(task_id=task_id, group=slot.group, ordinal=slot.ordinal))
    return out


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
                slots=seat_slots(data.get("approvals"), env, emergency=path.emergency),
                owner=path.owner or DEFAULT_OWNER,
                seat_after=MappingProxyType(seat_after(data.get("approvals"), env, emergency=path.emergency)),
            )
        )
    return specs

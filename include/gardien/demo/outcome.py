"""What a demo build produced: per environment, built or found up to date, and the pending changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gardien import pg
from gardien.demo.changes import PendingChange


@dataclass(frozen=True, slots=True)
class EnvironmentBuild:
    """Outcome for one environment: ``status`` is "built" or "up to date"; ``reason`` says why."""

    environment: str
    database: str
    dsn: str
    status: str
    reason: str
    row_counts: Mapping[str, int]
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "database": self.database,
            "dsn": pg.redact(self.dsn),
            "status": self.status,
            "reason": self.reason,
            "rows": dict(self.row_counts),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class DemoBuild:
    """The three demo environments and the changes qualification holds over production."""

    prefix: str
    scale: int
    seed: int
    bench_changes: tuple[int, int, int] | None
    environments: tuple[EnvironmentBuild, ...]
    changes: tuple[PendingChange, ...]

    def environment(self, name: str) -> EnvironmentBuild:
        return next(e for e in self.environments if e.environment == name)

    def dsn(self, name: str) -> str:
        return self.environment(name).dsn

    @property
    def up_to_date(self) -> bool:
        """True when nothing had to be built."""
        return all(e.status == "up to date" for e in self.environments)

    def change_summary(self) -> dict[str, int]:
        """Count of pending changes per ``kind table``, in first-seen order."""
        summary: dict[str, int] = {}
        for change in self.changes:
            label = f"{change.kind} {change.table}"
            summary[label] = summary.get(label, 0) + 1
        return summary

    def to_json(self) -> dict[str, object]:
        return {
            "prefix": self.prefix,
            "scale": self.scale,
            "seed": self.seed,
            "bench_changes": None if self.bench_changes is None else list(self.bench_changes),
            "up_to_date": self.up_to_date,
            "environments": [e.to_json() for e in self.environments],
            "change_summary": self.change_summary(),
            "changes": [c.to_json() for c in self.changes],
        }

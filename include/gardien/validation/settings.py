"""The ``validation:`` section of the configuration: blast-radius limits, examples, timeouts, suites folder."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from gardien.errors import ConfigurationError

_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_KEYS = {"suites_dir", "blast_radius", "examples", "statement_timeout", "scratch_max_age"}
_BLAST_KEYS = {"default", "min_changes", "tables"}


@dataclass(frozen=True, slots=True)
class BlastRadius:
    """Share of a table's rows a release may update or delete; ``min_changes`` rows are always allowed."""

    default: float = 0.10
    min_changes: int = 5
    tables: dict[str, float] = field(default_factory=dict)
    # accepted for one release (tables, or "*"), with who and why: not checked, named in the report's notes
    accepted: frozenset[str] = frozenset()
    accepted_by: str = ""
    accepted_reason: str = ""

    def accept(self, tables: frozenset[str], *, by: str, reason: str) -> BlastRadius:
        """This limit with ``tables`` accepted for one release; a ConfigurationError without a reason."""
        if not reason.strip():
            raise ConfigurationError(
                "accepting a blast radius needs a reason (recorded in the ledger with who accepted it)."
            )
        return dataclasses.replace(self, accepted=tables, accepted_by=by, accepted_reason=reason.strip())

    def is_accepted(self, table: str) -> bool:
        return table in self.accepted or "*" in self.accepted

    def limit_for(self, table: str) -> float:
        return self.tables.get(table, self.default)


@dataclass(frozen=True, slots=True)
class ValidationSettings:
    """Parsed ``validation:`` section; every field has a default so the section is optional."""

    suites_dir: Path | None = None
    blast_radius: BlastRadius = field(default_factory=BlastRadius)
    examples: int = 10
    statement_timeout_ms: int = 300_000
    scratch_max_age: timedelta = timedelta(hours=6)


def parse_duration(value: Any, *, where: str) -> timedelta:
    """``"90s"``, ``"5m"``, ``"6h"``, ``"1d"``, ``"500ms"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{where}: {value!r} is not a duration. Write e.g. 30s, 5m or 6h.")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ConfigurationError(f"{where}: {value!r} is not a duration. Write e.g. 30s, 5m or 6h.")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigurationError(f"{where}: {value!r} must be positive. Write e.g. 30s, 5m or 6h.")
    return timedelta(seconds=seconds)


def _share(value: Any, *, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigurationError(
            f"{where}: {value!r} is not a share of rows. Write a number from 0 to 1 (0.1 = 10%)."
        )
    return float(value)


def _unknown(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ConfigurationError(
            f"{where}: unknown key(s) {', '.join(extra)}. Allowed: {', '.join(sorted(allowed))}."
        )


def parse_validation_settings(raw: Any, *, base_dir: Path | None = None) -> ValidationSettings:
    """Parse the raw ``validation:`` mapping (``None`` gives the defaults).

    ``suites_dir`` is resolved against ``base_dir`` (the configuration file's folder) when relative.
    Raises ConfigurationError naming the key and the fix.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigurationError("validation: expected a mapping (suites_dir, blast_radius, ...).")
    _unknown(raw, _KEYS, "validation")
    suites_dir = None
    if raw.get("suites_dir") is not None:
        suites_dir = Path(str(raw["suites_dir"]))
        if base_dir is not None and not suites_dir.is_absolute():
            suites_dir = base_dir / suites_dir
    blast = raw.get("blast_radius", {})
    if isinstance(blast, int | float) and not isinstance(blast, bool):
        blast = {"default": blast}
    if not isinstance(blast, dict):
        raise ConfigurationError(
            "validation.blast_radius: expected a share (0.1) or a mapping with default/tables."
        )
    _unknown(blast, _BLAST_KEYS, "validation.blast_radius")
    tables = blast.get("tables") or {}
    if not isinstance(tables, dict):
        raise ConfigurationError("validation.blast_radius.tables: expected a mapping table → share.")
    min_changes = blast.get("min_changes", 5)
    if isinstance(min_changes, bool) or not isinstance(min_changes, int) or min_changes < 0:
        raise ConfigurationError(
            f"validation.blast_radius.min_changes: {min_changes!r} is not a row count. Write an integer >= 0."
        )
    radius = BlastRadius(
        default=_share(blast.get("default", 0.10), where="validation.blast_radius.default"),
        min_changes=min_changes,
        tables={str(t): _share(v, where=f"validation.blast_radius.tables.{t}") for t, v in tables.items()},
    )
    examples = raw.get("examples", 10)
    if isinstance(examples, bool) or not isinstance(examples, int) or not 1 <= examples <= 1000:
        raise ConfigurationError(f"validation.examples: {examples!r} must be an integer from 1 to 1000.")
    timeout = parse_duration(raw.get("statement_timeout", "300s"), where="validation.statement_timeout")
    max_age = parse_duration(raw.get("scratch_max_age", "6h"), where="validation.scratch_max_age")
    return ValidationSettings(
        suites_dir=suites_dir,
        blast_radius=radius,
        examples=examples,
        statement_timeout_ms=int(timeout.total_seconds() * 1000),
        scratch_max_age=max_age,
    )

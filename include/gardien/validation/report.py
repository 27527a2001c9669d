"""The typed validation report: one result per expectation, failing rows named by natural key."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

PASSED, FAILED, ERROR = "passed", "failed", "error"


def json_safe(value: Any) -> Any:
    """Values read from PostgreSQL, made JSON-safe and stable (numeric as text, timestamps ISO)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    """The outcome of one expectation (or smoke probe).

    ``error`` is set when the check could not run (a GX or SQL error): that is not a failed expectation,
    and ``passed`` is then False because nothing was proven.
    """

    name: str
    table: str | None
    kind: str
    passed: bool
    unexpected_count: int
    examples: tuple[dict[str, Any], ...]
    message: str
    suite: str = ""
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return ERROR
        return PASSED if self.passed else FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": self.table,
            "kind": self.kind,
            "suite": self.suite,
            "status": self.status,
            "passed": self.passed,
            "unexpected_count": self.unexpected_count,
            "examples": [json_safe(e) for e in self.examples],
            "message": self.message,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Everything validation proved (or failed to prove) about one state of one target."""

    ok: bool
    target: str
    expectations: tuple[ExpectationResult, ...]
    data_docs_path: str | None
    errors: tuple[str, ...]
    notes: tuple[str, ...] = ()
    trivial: bool = False

    @classmethod
    def from_results(
        cls,
        *,
        target: str,
        results: list[ExpectationResult] | tuple[ExpectationResult, ...],
        data_docs_path: str | None = None,
        notes: list[str] | tuple[str, ...] = (),
    ) -> ValidationReport:
        """ok only when every expectation passed and none errored."""
        errors = tuple(f"{r.name}: {r.error}" for r in results if r.error is not None)
        ok = all(r.passed for r in results) and not errors
        return cls(
            ok=ok,
            target=target,
            expectations=tuple(results),
            data_docs_path=data_docs_path,
            errors=errors,
            notes=tuple(notes),
        )

    @classmethod
    def trivially_valid(cls, *, target: str, reason: str) -> ValidationReport:
        """A report for a changeset with nothing in it: nothing to apply, nothing can break."""
        return cls(
            ok=True,
            target=target,
            expectations=(),
            data_docs_path=None,
            errors=(),
            notes=(reason,),
            trivial=True,
        )

    @property
    def failed(self) -> tuple[ExpectationResult, ...]:
        return tuple(r for r in self.expectations if r.status == FAILED)

    @property
    def errored(self) -> tuple[ExpectationResult, ...]:
        return tuple(r for r in self.expectations if r.status == ERROR)

    def result(self, name: str) -> ExpectationResult:
        """The result named ``name``; KeyError listing nothing else, since names come from suites."""
        for r in self.expectations:
            if r.name == name:
                return r
        raise KeyError(name)

    def summary(self) -> str:
        """One line for logs and Slack: counts of passed, failed and errored expectations."""
        if self.trivial:
            return f"{self.target}: validates trivially ({'; '.join(self.notes)})"
        passed = sum(1 for r in self.expectations if r.status == PASSED)
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"{self.target}: {verdict}: {passed} passed, {len(self.failed)} failed, "
            f"{len(self.errored)} could not run, of {len(self.expectations)} expectations"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "target": self.target,
            "trivial": self.trivial,
            "summary": self.summary(),
            "expectations": [r.to_dict() for r in self.expectations],
            "data_docs_path": self.data_docs_path,
            "errors": list(self.errors),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, indent=2)

"""The validation gate: rehearsal, expectation suites run through Great Expectations, typed reports, probes.

Nothing here imports Great Expectations at import time; only ``runner.run_checks`` does, when called.
"""

from __future__ import annotations

from gardien.validation.changes import ChangeSummary, TableChanges
from gardien.validation.gate import validate_state, verify_target
from gardien.validation.probes import SmokeProbe, parse_probes
from gardien.validation.rehearsal import Rehearsal, rehearse
from gardien.validation.report import ExpectationResult, ValidationReport
from gardien.validation.scratch import cleanup_stale_scratch
from gardien.validation.settings import ValidationSettings, parse_validation_settings

__all__ = [
    "ChangeSummary",
    "ExpectationResult",
    "Rehearsal",
    "SmokeProbe",
    "TableChanges",
    "ValidationReport",
    "ValidationSettings",
    "cleanup_stale_scratch",
    "parse_probes",
    "parse_validation_settings",
    "rehearse",
    "validate_state",
    "verify_target",
]

"""Great Expectations stays quiet in task logs: no INFO chatter or deprecation warnings from its import."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, warnings
logging.basicConfig(level=logging.INFO)
logging.captureWarnings(True)
warnings.simplefilter("default")
from gardien.validation.runner import _gx
_gx().get_context(mode="ephemeral")  # what every validation run does
logging.getLogger("gardien").info("still heard")
"""


def test_great_expectations_through_gardien_logs_nothing_of_its_own() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "INFO:gardien:still heard" in lines
    assert not [line for line in lines if "great_expectations" in line], lines[:5]

"""`gardien --version` prints the installed version and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gardien


def test_gardien_version_prints_the_version() -> None:
    exe = Path(sys.executable).with_name("gardien")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, f"gardien {gardien.__version__}")
    assert result.stderr == ""

"""``gardien windows``: text and JSON listings, the .ics export, and configuration errors with their exit code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gardien.cli import windows
from gardien.errors import ConfigurationError, UsageError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "include" / "config" / "gardien.yaml"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """A group, as in the real app where several topics register commands."""

    windows.register(app)
    return app


def run(app: typer.Typer, *args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, ["windows", "-c", str(CONFIG), *args])
    return result.exit_code, result.output, result.exception


def test_windows_text_lists_open_now_cancelled_and_freeze(app: typer.Typer) -> None:
    code, output, _ = run(app, "--now", "2026-12-10T21:00", "--count", "2")
    assert code == 0
    lines = output.splitlines()
    assert lines[1].split() == [
        "OPEN",
        "NOW",
        "Thu",
        "2026-12-10",
        "20:00–23:00",
        "Europe/Paris",
        "(2026-12-10",
        "19:00Z–22:00Z)",
        "soir-mardi-jeudi",
    ]
    assert lines[2].startswith("  CANCELLED  Tue 2026-12-15 20:00–23:00")
    assert (
        "cancelled by freeze passage-version-DPI, 2026-12-14 → 2026-12-20 (montée de version majeure)"
        in output
    )
    assert sum(line.startswith("  open") or line.startswith("  OPEN") for line in lines) == 2


def test_windows_json_with_utc_now_and_ics_file(app: typer.Typer, tmp_path: Path) -> None:
    ics = tmp_path / "windows.ics"
    code, output, _ = run(app, "--now", "2026-07-13T12:00Z", "-n", "1", "--json", "--ics", str(ics))
    assert code == 0
    data = json.loads(output)
    assert [(w["start"], w["local_start"], w["cancelled"]) for w in data["windows"]] == [
        ("2026-07-14T18:00:00+00:00", "2026-07-14T20:00:00+02:00", True),
        ("2026-07-16T18:00:00+00:00", "2026-07-16T20:00:00+02:00", False),
    ]
    assert data["freezes"][0]["kind"] == "public_holiday" and data["freezes"][0]["name"] == "Fête nationale"
    assert ics.read_bytes().startswith(b"BEGIN:VCALENDAR\r\n")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (
            "calendar:\n  timezone: Europe/Atlantis\n  windows: []\n",
            "unknown IANA timezone 'Europe/Atlantis'",
        ),
        (
            "calendar:\n  timezone: Europe/Paris\n  windows:\n"
            "    - {name: a, days: [tue], start: '20:00', end: '23:00'}\n"
            "    - {name: b, days: [tue], start: '22:00', end: '23:30'}\n",
            "windows 'a' .* and 'b' .* overlap",
        ),
        ("version: 1\n", "'calendar' section is missing"),
    ],
    ids=["unknown-timezone", "overlap", "no-section"],
)
def test_windows_bad_config_raises_configuration_error(
    app: typer.Typer, tmp_path: Path, content: str, match: str
) -> None:
    path = tmp_path / "gardien.yaml"
    path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(app, ["windows", "-c", str(path)])
    assert isinstance(result.exception, ConfigurationError)
    assert result.exception.exit_code == 3
    assert re.search(match, str(result.exception))


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (["--now", "demain"], UsageError, "--now 'demain' is not an ISO date-time"),
        (["--ics", "/nonexistent-dir/x.ics", "--now", "2026-12-01T00:00Z"], UsageError, "cannot write"),
        (["--count", "0"], UsageError, "--count 0: list at least 1 window"),
    ],
    ids=["bad-now", "unwritable-ics", "zero-count"],
)
def test_windows_bad_arguments_are_usage_errors(
    app: typer.Typer, args: list[str], error: type[Exception], match: str
) -> None:
    _, _, exception = run(app, *args)
    assert isinstance(exception, error)
    assert re.search(match, str(exception))

"""The ``gardien`` engine commands end to end: files, --json, and distinct exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_engine_support import BASE_STATE, CATALOG, database_pair, execute, load, reset

pytestmark = pytest.mark.integration
# The engine's commands mounted exactly as gardien.cli.main mounts them, with main's error-to-exit-code
# mapping; driving them alone keeps this test independent of the other topics' modules.
DRIVER = """
import sys, typer
from gardien.cli import engine
from gardien.errors import GardienError
app = typer.Typer(pretty_exceptions_enable=False)
engine.register(app)
try:
    app(standalone_mode=False)
except GardienError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
except Exception as exc:  # click usage errors (typer may vendor its own click)
    if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "show"):
        raise
    exc.show()
    sys.exit(2)
"""


@pytest.fixture(scope="module")
def databases(pg_admin_dsn):
    with database_pair(pg_admin_dsn, "cli") as dsns:
        yield dsns


@pytest.fixture
def setup(databases, tmp_path):
    source, target = databases
    for dsn in databases:
        reset(dsn)
    load(source, BASE_STATE)
    config = tmp_path / "gardien.yaml"
    config.write_text(
        yaml.safe_dump({"environments": {"src": {"dsn": source}, "tgt": {"dsn": target}}, "catalog": CATALOG})
    )
    return source, target, config, tmp_path


def run(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GARDIEN_CONFIG": str(config)}
    return subprocess.run(
        [sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_diff_show_apply_rollback_round_trip(setup):
    _, target, config, tmp = setup
    out = tmp / "cs.json"
    diffed = run(config, "diff", "src", "tgt", "-o", str(out), "--json")
    assert diffed.returncode == 0, diffed.stderr
    summary = json.loads(diffed.stdout)
    assert summary["counts"]["unit"] == {"inserts": 3, "updates": 0, "deletes": 0}
    shown = run(config, "show", str(out))
    assert shown.returncode == 0 and "unit: 3 insert(s)" in shown.stdout and '+ ["U1"]' in shown.stdout
    applied = run(config, "apply", str(out), "tgt", "--json", "--label", "mardi")
    assert applied.returncode == 0, applied.stderr
    deployment = json.loads(applied.stdout)["deployment_id"]
    again = run(config, "apply", str(out), "tgt")
    assert again.returncode == 0 and "already applied" in again.stdout
    rolled = run(config, "rollback", "tgt", deployment, "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["proven"] is True


def test_cli_apply_conflict_exits_6(setup):
    source, target, config, tmp = setup
    load(target, BASE_STATE)
    execute(source, "UPDATE unit SET label = 'new' WHERE code = 'U1'")
    out = tmp / "cs.json"
    assert run(config, "diff", "src", "tgt", "-o", str(out)).returncode == 0
    execute(target, "UPDATE unit SET label = 'prod' WHERE code = 'U1'")
    result = run(config, "apply", str(out), "tgt")
    assert result.returncode == 6 and "nothing was applied" in result.stderr


def test_cli_tampered_changeset_exits_5(setup):
    _, _, config, tmp = setup
    out = tmp / "cs.json"
    assert run(config, "diff", "src", "tgt", "-o", str(out)).returncode == 0
    out.write_text(out.read_text().replace("Urgences", "Urgence"))
    result = run(config, "show", str(out))
    assert result.returncode == 5 and "was altered" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["diff", "src", "staging"], 3, "unknown environment 'staging'"),
        (["diff", "src"], 2, "Missing argument"),
        (["show", "no-such-file.json"], 2, "cannot read changeset"),
    ],
    ids=["unknown-environment", "missing-argument", "missing-file"],
)
def test_cli_bad_usage_exit_codes(setup, args, code, message):
    _, _, config, _ = setup
    result = run(config, *args)
    assert result.returncode == code and message in result.stderr

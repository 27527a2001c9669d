"""No traceback, ever: every ``gardien`` command driven through its failure modes (bad arguments, bad files,
bad configuration, unreachable or refusing databases) ends with an exit code from the README's table, a
named cause on stderr and no "Traceback"; with ``--json`` the error is one JSON document
``{"error": {"code", "kind", "message", "details"}}``, the last line on stderr, its code the exit code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2.extensions
import pytest
import yaml
from test_engine_support import BASE_STATE, CATALOG, database_pair, execute, load, reset

from gardien import pg
from gardien.cli.main import main

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql://gardien@127.0.0.1:1/nowhere"


def readme_exit_codes() -> set[int]:
    """The exit codes the README's table lists ("exit codes: 2 usage, 3 configuration, ...")."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = re.search(r"exit codes:(.*?)\.\n", text, re.S)
    assert table, "README.md lost its exit-code table"
    return {int(n) for n in re.findall(r"\b(\d+) [a-z]", table.group(1))}


@pytest.fixture(scope="module")
def world(pg_admin_dsn, tmp_path_factory):
    """Two databases (a diff finds inserts), a role without CREATE on the target's database, config files,
    and files of every bad kind."""
    tmp = tmp_path_factory.mktemp("clifail")
    role = f"gt_nocreate_{uuid.uuid4().hex[:8]}"
    with database_pair(pg_admin_dsn, "clifail") as (source, target):
        reset(source)
        reset(target)
        load(source, BASE_STATE)
        params = psycopg2.extensions.parse_dsn(target)
        execute(target, f"CREATE ROLE {role} LOGIN")
        execute(
            target,
            f"GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "
            f"public TO {role}; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}; "
            f"REVOKE CREATE ON DATABASE {params['dbname']} FROM PUBLIC",
        )
        weak = psycopg2.extensions.make_dsn(**{**params, "user": role})
        config = tmp / "gardien.yaml"
        environments = {"src": {"dsn": source}, "tgt": {"dsn": target}, "weak": {"dsn": weak}}
        config.write_text(yaml.safe_dump({"environments": environments, "catalog": CATALOG}))
        files = {"config": config, "dir": tmp}
        for name, text in {
            "bad_yaml": "environments: [\n",
            "empty_var": yaml.safe_dump(
                {"environments": {"e": {"dsn": "${GT_EMPTY_DSN}"}}, "catalog": CATALOG}
            ),
            "no_table": yaml.safe_dump(
                {
                    "environments": environments,
                    "catalog": {"tables": [{"name": "nope", "natural_key": ["x"]}]},
                }
            ),
        }.items():
            files[name] = tmp / f"{name}.yaml"
            files[name].write_text(text)
        files["latin1"] = tmp / "latin1.json"
        files["latin1"].write_bytes('{"id": "é"}'.encode("latin-1"))
        files["not_json"] = tmp / "not.json"
        files["not_json"].write_text("this is not json")
        files["changeset"] = tmp / "cs.json"
        assert run(["diff", "src", "tgt", "-o", str(files["changeset"]), "-c", str(config)])[0] == 0
        doc = json.loads(files["changeset"].read_text())
        files["tampered"] = tmp / "tampered.json"
        files["tampered"].write_text(json.dumps({**doc, "id": "0" * 64}))
        body = doc["changeset"]
        unit = next(t for t in body["tables"] if t["table"] == "unit")
        unit["inserts"][0]["values"]["colour"] = "red"
        import hashlib

        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        files["forged"] = tmp / "forged.json"
        files["forged"].write_text(
            json.dumps({"id": hashlib.sha256(canonical.encode()).hexdigest(), "changeset": body})
        )
        try:
            yield files
        finally:
            with pg.autocommit(pg_admin_dsn) as conn, conn.cursor() as cur:
                cur.execute(
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
                )
        execute(target, f"DROP OWNED BY {role}")
    execute(pg_admin_dsn, f"DROP ROLE IF EXISTS {role}")


def run(args: list[str]) -> tuple[int, str, str]:
    """``gardien ARGS`` in-process (stdout and stderr captured by the caller's capsys, or returned here)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


# (id, arguments with {placeholders} for the world's files, expected exit code, words stderr must hold)
CASES: list[tuple[str, list[str], int, str]] = [
    ("no-command", [], 2, "Usage"),
    ("unknown-command", ["deploy"], 2, "No such command"),
    ("unknown-option", ["diff", "--colour"], 2, "No such option"),
    ("audit-no-subcommand", ["audit"], 2, "Usage"),
    # diff
    ("diff-missing-argument", ["diff", "src"], 2, "Missing argument"),
    (
        "diff-missing-config",
        ["diff", "src", "tgt", "-c", "{dir}/nope.yaml"],
        3,
        "cannot read the configuration",
    ),
    ("diff-bad-yaml", ["diff", "src", "tgt", "-c", "{bad_yaml}"], 3, "not valid YAML"),
    ("diff-empty-variable", ["diff", "e", "e", "-c", "{empty_var}"], 3, "GT_EMPTY_DSN is set but empty"),
    ("diff-unknown-environment", ["diff", "src", "staging", "-c", "{config}"], 3, "unknown environment"),
    (
        "diff-malformed-uri",
        ["diff", "postgresql://[::1/db", "tgt", "-c", "{config}"],
        3,
        "invalid PostgreSQL DSN",
    ),
    (
        "diff-bad-port-uri",
        ["diff", "postgresql://h:5x/db", "tgt", "-c", "{config}"],
        3,
        "is not a port number",
    ),
    ("diff-unreachable", ["diff", UNREACHABLE, "tgt", "-c", "{config}"], 4, "cannot connect"),
    ("diff-catalog-table-missing", ["diff", "src", "tgt", "-c", "{no_table}"], 3, "has no table 'nope'"),
    (
        "diff-unwritable-output",
        ["diff", "src", "tgt", "-c", "{config}", "-o", "{dir}/no/dir/cs.json"],
        2,
        "cannot write",
    ),
    # show
    ("show-missing-file", ["show", "{dir}/nope.json"], 2, "cannot read changeset"),
    ("show-directory", ["show", "{dir}"], 2, "cannot read changeset"),
    ("show-not-utf8", ["show", "{latin1}"], 5, "is not UTF-8"),
    ("show-not-json", ["show", "{not_json}"], 5, "invalid JSON"),
    ("show-tampered", ["show", "{tampered}"], 5, "was altered"),
    # apply
    (
        "apply-negative-lock-timeout",
        ["apply", "{changeset}", "tgt", "-c", "{config}", "--lock-timeout", "-5"],
        2,
        "--lock-timeout",
    ),
    (
        "apply-lock-timeout-not-a-number",
        ["apply", "{changeset}", "tgt", "-c", "{config}", "--lock-timeout", "soon"],
        2,
        "--lock-timeout",
    ),
    (
        "apply-negative-statement-timeout",
        ["apply", "{changeset}", "tgt", "-c", "{config}", "--statement-timeout", "-1"],
        2,
        "--statement-timeout",
    ),
    ("apply-not-utf8", ["apply", "{latin1}", "tgt", "-c", "{config}"], 5, "is not UTF-8"),
    ("apply-forged-column", ["apply", "{forged}", "tgt", "-c", "{config}"], 5, "names column 'colour'"),
    (
        "apply-malformed-uri",
        ["apply", "{changeset}", "postgresql://%zz@h/db", "-c", "{config}"],
        3,
        "percent-encoded",
    ),
    ("apply-unreachable", ["apply", "{changeset}", UNREACHABLE, "-c", "{config}"], 4, "cannot connect"),
    ("apply-role-without-create", ["apply", "{changeset}", "weak", "-c", "{config}"], 9, "permission denied"),
    # rollback
    ("rollback-unknown-deployment", ["rollback", "tgt", "dep-nope", "-c", "{config}"], 10, "no deployment"),
    ("rollback-unreachable", ["rollback", UNREACHABLE, "dep-nope", "-c", "{config}"], 4, "cannot connect"),
    ("rollback-malformed-uri", ["rollback", "postgres://", "dep-nope", "-c", "{config}"], 3, "names no host"),
    # validate
    (
        "validate-both-modes",
        ["validate", "tgt", "--changeset", "{changeset}", "--verify", "-c", "{config}"],
        2,
        "pick one",
    ),
    (
        "validate-not-utf8",
        ["validate", "tgt", "--changeset", "{latin1}", "-c", "{config}"],
        5,
        "is not UTF-8",
    ),
    ("validate-unreachable", ["validate", UNREACHABLE, "-c", "{config}"], 4, "cannot connect"),
    # windows
    ("windows-zero-count", ["windows", "-n", "0", "-c", "{config}"], 2, "at least 1"),
    ("windows-missing-config", ["windows", "-c", "{dir}/nope.yaml"], 3, "nope.yaml"),
    ("windows-no-calendar", ["windows", "-c", "{config}"], 3, "'calendar' section is missing"),
    ("windows-bad-now", ["windows", "--now", "yesterday", "-c", "{demo_config}"], 2, "yesterday"),
    # approve / reject
    ("reject-empty-reason", ["reject", "R-1", "--reason", " "], 2, "--reason is empty"),
    (
        "approve-unreachable-api",
        ["approve", "R-1", "--api", "http://127.0.0.1:1", "--password-env", "GT_PW"],
        4,
        "127.0.0.1:1",
    ),
    # report / audit
    ("report-unreachable-ledger", ["report", "R-1", "--dsn", UNREACHABLE], 4, "cannot connect"),
    ("report-no-ledger-config", ["report", "R-1", "-c", "{config}"], 3, "ledger.dsn is missing"),
    ("audit-verify-unreachable", ["audit", "verify", "--dsn", UNREACHABLE], 4, "cannot connect"),
    ("audit-verify-not-a-ledger", ["audit", "verify", "--dsn", "{tgt_uri}"], 11, "ledger"),
    ("audit-log-bad-limit", ["audit", "log", "--dsn", UNREACHABLE, "--limit", "0"], 2, "--limit"),
    ("audit-malformed-dsn", ["audit", "verify", "--dsn", "postgresql://[::1/x"], 3, "invalid PostgreSQL DSN"),
    ("audit-reconcile-no-config", ["audit", "reconcile", "-c", "{dir}/nope.yaml"], 3, "cannot read"),
    ("ledger-migrate-unreachable", ["ledger", "migrate", "--dsn", UNREACHABLE], 4, "cannot connect"),
    ("ledger-migrate-no-subcommand", ["ledger"], 2, "Usage"),
    # demo
    ("demo-unreachable", ["demo", "build", "--admin-dsn", UNREACHABLE], 4, "cannot connect"),
    (
        "demo-bad-prefix",
        ["demo", "build", "--prefix", "Bad-Prefix", "--admin-dsn", UNREACHABLE],
        2,
        "not allowed",
    ),
    (
        "demo-bad-bench-changes",
        ["demo", "build", "--bench-changes", "many", "--admin-dsn", UNREACHABLE],
        2,
        "three counts",
    ),
]
_JSON_COMMANDS = {
    "diff",
    "show",
    "apply",
    "rollback",
    "validate",
    "windows",
    "report",
    "audit verify",
    "audit log",
    "audit reconcile",
    "ledger migrate",
    "demo build",
}


def _args(world, args: list[str]) -> list[str]:
    tgt = next(iter(yaml.safe_load(world["config"].read_text())["environments"]["tgt"].values()))
    params = psycopg2.extensions.parse_dsn(tgt)
    values = {k: str(v) for k, v in world.items()}
    values["demo_config"] = str(ROOT / "include" / "config" / "gardien.yaml")
    values["tgt_uri"] = f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
    return [a.format(**values) for a in args]


@pytest.mark.parametrize(("args", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_failure_has_a_table_exit_code_a_named_cause_and_no_traceback(
    world, monkeypatch, args, code, words
):
    monkeypatch.setenv("GT_EMPTY_DSN", "")
    monkeypatch.setenv("GT_PW", "secret")
    monkeypatch.delenv("GARDIEN_CONFIG", raising=False)
    argv = _args(world, args)
    rc, out, err = run(argv)
    assert rc in readme_exit_codes()
    assert "Traceback" not in out + err
    assert (rc, words in err or (words == "Usage" and words in out)) == (code, True), err
    command = argv[0] if argv and argv[0] not in ("audit", "demo", "ledger") else " ".join(argv[:2])
    if command in _JSON_COMMANDS:
        rc_json, _, err_json = run([*argv, "--json"])
        assert rc_json == rc and "Traceback" not in err_json
        error = json.loads(err_json.splitlines()[-1])["error"]  # warnings may precede it
        assert (
            error["code"] == rc
            and error["kind"]
            and words.strip("-") in error["message"] + " ".join(error["details"])
        )


def test_cli_failures_through_the_installed_entry_point(world):
    """The same guarantee through a real process (threads, warnings, interpreter exit included)."""
    for args, code in (
        (["show", str(world["latin1"])], 5),
        (["diff", UNREACHABLE, "tgt", "-c", str(world["config"])], 4),
    ):
        result = subprocess.run(
            [sys.executable, "-c", "from gardien.cli.main import main; main()", *args, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == code and "Traceback" not in result.stderr
        assert json.loads(result.stderr.splitlines()[-1])["error"]["code"] == code

"""``gardien audit init|verify|log`` as a user runs them: real process, real exit codes, real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg2.extensions
import pytest
from psycopg2 import sql

from gardien import pg
from gardien.cli.audit import resolve_ledger_dsn
from gardien.errors import ConfigurationError, LedgerError
from gardien.ledger import append_event, create_release, ensure_schema, list_events

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
LEDGER_TABLES = (
    "events",
    "crosswalks",
    "rollbacks",
    "deployments",
    "approvals",
    "validation_results",
    "releases",
    "changesets",
)


def _gardien(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gardien.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def shared_ledger(pg_admin_dsn: str) -> Iterator[str]:
    """One ledger database per module (creating one per test costs seconds); each test resets it."""
    name = f"gt_ledger_{uuid.uuid4().hex[:10]}"
    dsn = pg.create_database(pg_admin_dsn, name)
    conn = pg.connect(dsn)
    ensure_schema(conn)
    conn.commit()
    conn.close()
    yield dsn
    pg.drop_database(pg_admin_dsn, name)


@pytest.fixture
def empty_ledger(shared_ledger: str) -> str:
    """The shared ledger, emptied as only a superuser can: guards off, truncate, guards back on."""
    tables = sql.SQL(", ").join(sql.Identifier("ledger", t) for t in LEDGER_TABLES)
    conn = pg.connect(shared_ledger)
    try:
        with conn.cursor() as cur:
            for table in LEDGER_TABLES:
                cur.execute(
                    sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier("ledger", table))
                )
            cur.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(tables))
            for table in LEDGER_TABLES:
                cur.execute(
                    sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier("ledger", table))
                )
        conn.commit()
    finally:
        conn.close()
    return shared_ledger


@pytest.fixture
def ledger_dsn(empty_ledger: str) -> str:
    dsn = empty_ledger
    conn = pg.connect(dsn)
    try:
        _fill(conn)
    finally:
        conn.close()
    return dsn


def _fill(conn: psycopg2.extensions.connection) -> None:
    create_release(conn, release_id="R-1", path=["prod"], requested_by="chef.projet", reason="why", at=T0)
    for i in range(4):
        append_event(conn, kind="test.cli", actor="svc", at=T0, payload={"i": i})
    conn.commit()


def test_audit_init_missing_database_creates_usable_ledger(pg_admin_dsn: str) -> None:
    name = f"gt_ledger_{uuid.uuid4().hex[:10]}"
    dsn = pg.dsn_for_database(pg_admin_dsn, name)
    try:
        result = _gardien("audit", "init", "--dsn", dsn)
        assert result.returncode == 0, result.stderr
        assert f"created database {name}" in result.stdout
        assert "ledger schema ready" in result.stdout
        conn = pg.connect(dsn)
        try:
            assert list_events(conn) == ()
        finally:
            conn.close()
    finally:
        pg.drop_database(pg_admin_dsn, name)


def test_audit_verify_intact_ledger_exits_zero(ledger_dsn: str) -> None:
    result = _gardien("audit", "verify", "--dsn", ledger_dsn, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["ok"], report["checked"], report["head_seq"], report["first_broken"]) == (True, 5, 5, None)


def test_audit_verify_forged_row_exits_ledger_code_naming_seq(ledger_dsn: str) -> None:
    conn = pg.connect(ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE ledger.events DISABLE TRIGGER USER")
            cur.execute("UPDATE ledger.events SET actor = 'intrus' WHERE seq = 3")
            cur.execute("ALTER TABLE ledger.events ENABLE TRIGGER USER")
        conn.commit()
    finally:
        conn.close()
    text = _gardien("audit", "verify", "--dsn", ledger_dsn)
    as_json = _gardien("audit", "verify", "--dsn", ledger_dsn, "--json")
    assert text.returncode == as_json.returncode == LedgerError.exit_code
    assert "chain broken at seq 3" in text.stderr
    assert "altered: actor" in text.stderr
    broken = json.loads(as_json.stdout)["first_broken"]
    assert (broken["seq"], broken["altered_fields"]) == (3, ["actor"])


def test_audit_verify_cut_tail_detected_with_published_anchor(ledger_dsn: str) -> None:
    published = _gardien("audit", "verify", "--dsn", ledger_dsn).stdout.splitlines()[-1]
    conn = pg.connect(ledger_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE ledger.events DISABLE TRIGGER USER")
            cur.execute("DELETE FROM ledger.events WHERE seq = 5")
            cur.execute("ALTER TABLE ledger.events ENABLE TRIGGER USER")
        conn.commit()
    finally:
        conn.close()
    result = _gardien("audit", "verify", "--dsn", ledger_dsn, "--anchor", published)
    assert published.startswith("5:")
    assert result.returncode == LedgerError.exit_code
    assert "chain broken at seq 5: the anchored row is missing" in result.stderr


def test_audit_verify_config_ledger_section_resolves_dsn(ledger_dsn: str, tmp_path: Path) -> None:
    params = psycopg2.extensions.parse_dsn(ledger_dsn)
    config = tmp_path / "gardien.yaml"
    config.write_text(
        "version: 1\nledger:\n  dsn: ${LEDGER_SERVER}\n  database: " + params["dbname"] + "\ncatalog: {}\n",
        encoding="utf-8",
    )
    result = _gardien(
        "audit",
        "verify",
        "-c",
        str(config),
        env={"LEDGER_SERVER": pg.dsn_for_database(ledger_dsn, "postgres")},
    )
    assert result.returncode == 0, result.stderr
    assert "ledger intact: 5 events" in result.stdout


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("ledger:\n  dsn: ${GARDIEN_TEST_UNSET_VAR}\n", "GARDIEN_TEST_UNSET_VAR is not set"),
        ("environments: {}\n", "ledger.dsn is missing"),
        ("ledger: [unclosed\n", "not valid YAML"),
    ],
    ids=["unset-variable", "no-ledger-section", "bad-yaml"],
)
def test_resolve_ledger_dsn_bad_config_refused(tmp_path: Path, content: str, match: str) -> None:
    config = tmp_path / "gardien.yaml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=match):
        resolve_ledger_dsn(None, config, environ={})


def test_resolve_ledger_dsn_missing_file_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the configuration"):
        resolve_ledger_dsn(None, tmp_path / "absent.yaml", environ={})


def test_audit_verify_bad_config_exits_configuration_code(tmp_path: Path) -> None:
    config = tmp_path / "gardien.yaml"
    config.write_text("ledger:\n  dsn: ${GARDIEN_TEST_UNSET_VAR}\n", encoding="utf-8")
    result = _gardien("audit", "verify", "-c", str(config))
    assert result.returncode == ConfigurationError.exit_code
    assert "GARDIEN_TEST_UNSET_VAR is not set" in result.stderr


def test_audit_log_release_filter_prints_its_events(ledger_dsn: str) -> None:
    result = _gardien("audit", "log", "--dsn", ledger_dsn, "--release", "R-1", "--json")
    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout)
    assert [(e["seq"], e["kind"], e["actor"]) for e in events] == [(1, "release.created", "chef.projet")]
    text = _gardien("audit", "log", "--dsn", ledger_dsn, "--limit", "2")
    assert [line.split()[0] for line in text.stdout.splitlines()] == ["4", "5"]


def test_audit_log_unknown_release_exits_ledger_code(ledger_dsn: str) -> None:
    result = _gardien("audit", "log", "--dsn", ledger_dsn, "--release", "R-404")
    assert result.returncode == LedgerError.exit_code
    assert "unknown release 'R-404'" in result.stderr

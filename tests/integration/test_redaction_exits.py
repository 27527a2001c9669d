"""No password leaves Gardien: a release deploy to a target whose DSN holds an awkward password, then every
exit point an auditor or operator reads — ledger.events, `gardien audit log`, report.json/html, CLI errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

from gardien import ledger, pg
from gardien.changeset import Changeset, FieldChange, TableChanges, Update
from gardien.config import parse_config
from gardien.errors import GardienError
from gardien.fingerprint import ScopeFingerprint, TableFingerprint
from gardien.release import stages
from gardien.release.service import ReleaseService, StepContext

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
FP = ScopeFingerprint(tables=(TableFingerprint("medicament", 2, 5, 6),))
CHANGESET = Changeset(
    catalog_fingerprint="cf" * 32,
    source_fingerprint=FP,
    target_fingerprint=FP,
    tables=(
        TableChanges(
            table="medicament",
            updates=(
                Update(
                    key=("UCD-1",),
                    baseline={"libelle": "A"},
                    changes={"libelle": FieldChange(before="A", after="B")},
                ),
            ),
        ),
    ),
)
# (target DSN, the password in it): a '%' makes libpq echo the token; a quoted key=value password has spaces.
CASES = {
    "uri-percent": ("postgresql://postgres:Pa%zz word9@127.0.0.1:5432/postgres", "Pa%zz word9"),
    "kv-quoted-space": ("host=127.0.0.1 port=1 user=postgres password='Sec ret9Zq' dbname=x", "Sec ret9Zq"),
}


def gardien(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gardien.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=180,
        check=False,
    )


def leaks(pw: str, text: str) -> list[str]:
    pieces = {pw, *(p for p in pw.split() if len(p) >= 4)}
    return [p for p in pieces if p in text]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_release_deploy_with_a_password_in_the_dsn_leaks_it_nowhere(
    case: str, make_db: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target_dsn, pw = CASES[case]
    ledger_dsn = make_db("ledger")
    conn = pg.connect(ledger_dsn)
    ledger.migrate(conn)
    ledger.create_release(
        conn, release_id="R-leak", path=["standard", "prod"], requested_by="parametreur", reason="t", at=NOW
    )
    ledger.put_changeset(conn, changeset_id=CHANGESET.id, body=CHANGESET.body_json())
    ledger.attach_changeset(conn, release_id="R-leak", changeset_id=CHANGESET.id, actor="airflow", at=NOW)
    conn.commit()
    conn.close()
    monkeypatch.setenv("GARDIEN_STATE_DIR", str(tmp_path / "state"))
    config = parse_config(
        {
            "environments": {"qualif": {"dsn": ledger_dsn, "role": "source"}, "prod": {"dsn": target_dsn}},
            "ledger": {"dsn": ledger_dsn},
            "catalog": {"schema": "public", "tables": [{"name": "medicament", "natural_key": ["code_ucd"]}]},
            "release_paths": {
                "standard": {"source": "qualif", "stages": [{"name": "prod", "targets": ["prod"]}]}
            },
        }
    )
    svc = ReleaseService(config, "standard")

    with pytest.raises(GardienError) as err:
        stages.deploy(svc, "R-leak", "prod", ctx=StepContext(actor="airflow", now=NOW))

    assert not leaks(pw, str(err.value)), str(err.value)
    raw = psycopg2.connect(ledger_dsn)
    try:
        with raw.cursor() as cur:
            cur.execute(
                "SELECT string_agg(canonical || coalesce(reason, '') || payload_text, '') FROM ledger.events"
            )
            stored = cur.fetchone()[0]
    finally:
        raw.close()
    assert not leaks(pw, stored)
    log = gardien("audit", "log", "--dsn", ledger_dsn, "--json")
    assert log.returncode == 0 and not leaks(pw, log.stdout)
    gardien("report", "R-leak", "--dsn", ledger_dsn, "-o", str(tmp_path / "report"))
    for name in ("report.json", "report.html"):
        assert not leaks(pw, (tmp_path / "report" / name).read_text())


def test_an_event_reason_carrying_a_libpq_echo_is_stored_redacted(make_db: Callable[[str], str]) -> None:
    ledger_dsn = make_db("ledger")
    conn = pg.connect(ledger_dsn)
    ledger.migrate(conn)
    try:
        psycopg2.connect("postgresql://u:Ec%hoPass 1@127.0.0.1:1/x")
    except psycopg2.Error as exc:
        echo = str(exc)
    assert "Ec%hoPass 1" in echo  # libpq does echo it
    event = ledger.append_event(
        conn,
        kind="deployment.failed",
        actor="airflow",
        at=NOW,
        payload={"error": echo, "nested": [{"dsn": "host=h password='Ec%hoPass 1'"}]},
        reason=f"target prod refused: {echo}",
    )
    conn.commit()
    conn.close()
    assert not leaks("Ec%hoPass 1", event.canonical())
    assert ledger.verify_chain(pg.connect(ledger_dsn)).ok


def test_cli_error_never_prints_the_password(tmp_path: Path) -> None:
    changeset_file = tmp_path / "cs.json"
    changeset_file.write_text(CHANGESET.to_json())
    for target, pw in CASES.values():
        result = gardien("apply", str(changeset_file), target.replace("127.0.0.1:5432", "127.0.0.1:1"))
        assert result.returncode in (3, 4), result.stderr
        assert not leaks(pw, result.stdout + result.stderr) and "Traceback" not in result.stderr

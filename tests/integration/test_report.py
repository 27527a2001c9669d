"""The release report from a real ledger: a whole release recorded through the ledger API, then
``write_report`` (the DAG's call) and ``gardien report`` (an auditor's call), on the real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gardien import ledger, pg
from gardien.changeset import Changeset, FieldChange, Insert, TableChanges, Update
from gardien.config import load_config
from gardien.fingerprint import ScopeFingerprint, TableFingerprint
from gardien.release.service import ReleaseService
from gardien.report import load_report, write_report
from gardien.validation.report import ExpectationResult, ValidationReport

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
RID = "R-2026-11-24-001"
EVIL = "<script>alert('uf')</script>"
CONFIG = Path(__file__).resolve().parents[2] / "include" / "config" / "gardien.yaml"
FP = ScopeFingerprint(tables=(TableFingerprint("medicament", 2, 5, 6),))


def _changeset(label: str) -> Changeset:
    return Changeset(
        catalog_fingerprint="cf" * 32,
        source_fingerprint=FP,
        target_fingerprint=FP,
        tables=(
            TableChanges(
                table="medicament",
                inserts=(Insert(key=("UCD-3400890",), values={"libelle": label, "actif": "true"}),),
                updates=(
                    Update(
                        key=("UCD-1111111",),
                        baseline={"libelle": "PARACETAMOL 500", "actif": "true"},
                        changes={
                            "libelle": FieldChange(before="PARACETAMOL 500", after="PARACETAMOL 500 mg")
                        },
                    ),
                ),
            ),
            TableChanges(
                table="ligne_protocole",
                inserts=(Insert(key=(("PROTO-CARDIO",), "1"), values={"medicament_id": ("UCD-3400890",)}),),
            ),
        ),
    )


FIRST, CURRENT = _changeset("Brouillon"), _changeset(f"AMIODARONE {EVIL}")


def _validation(ok: bool, target: str) -> dict[str, Any]:
    failing = ExpectationResult(
        name="active_protocol_lines_have_active_dosed_drugs",
        table=None,
        kind="smoke_probe",
        passed=ok,
        unexpected_count=0 if ok else 1,
        examples=() if ok else ({"protocole": "PROTO-CARDIO", "rang": "1", "code_ucd": "UCD-3400890"},),
        message="every line of an active protocol names an active drug that has a dose-alert rule",
    )
    unique = ExpectationResult("medicament_code_ucd_unique", "medicament", "unique", True, 0, (), "unique")
    return ValidationReport.from_results(target=target, results=[unique, failing]).to_dict()


def _record_release(dsn: str) -> None:
    """A standard release: replaced changeset (one approval voided), rehearsal passed, two approvals,
    preprod deployed and verified, prod deployed, verification failed, rollback NOT proven, closed."""
    conn = pg.connect(dsn)
    try:
        ledger.ensure_schema(conn)
        at = iter(T0 + timedelta(minutes=i) for i in range(100))
        airflow = ledger.AirflowIds(dag_id="gardien_release_standard", run_id="scheduled__1", task_id="step")
        ledger.create_release(
            conn,
            release_id=RID,
            path=["standard", "preprod", "prod"],
            requested_by="chef.projet",
            reason="Nouveau protocole de cardiologie",
            at=next(at),
            window_start=T0,
            window_end=T0 + timedelta(hours=3),
            airflow=airflow,
        )
        for cs in (FIRST, CURRENT):
            ledger.put_changeset(conn, changeset_id=cs.id, body=cs.body_json())
            ledger.attach_changeset(conn, release_id=RID, changeset_id=cs.id, actor="airflow", at=next(at))
            if cs is FIRST:
                ledger.record_approval(
                    conn,
                    release_id=RID,
                    changeset_id=cs.id,
                    approver="dsi.adjoint",
                    decision="approved",
                    at=next(at),
                )
        ledger.record_validation(
            conn,
            release_id=RID,
            changeset_id=CURRENT.id,
            environment="rehearsal:prod",
            passed=True,
            report={**_validation(True, "prod"), "expected_fingerprint": "e" * 64},
            actor="airflow",
            at=next(at),
        )
        for approver, comment in (("resp.exploitation", "OK CAB"), ("pharma.chef", f"relu {EVIL}")):
            ledger.record_approval(
                conn,
                release_id=RID,
                changeset_id=CURRENT.id,
                approver=approver,
                decision="approved",
                at=next(at),
                comment=comment,
            )
        deployments = {}
        for env in ("preprod", "prod"):
            deployments[env] = ledger.record_deployment(
                conn,
                release_id=RID,
                environment=env,
                changeset_id=CURRENT.id,
                status="applied",
                actor="airflow",
                at=next(at),
                target_deployment_id=f"dep-{env}-1",
                fingerprints={
                    "before": "b" * 64,
                    "after": "a" * 64,
                    "matches_source": True,
                    "apply_status": "applied",
                },
            )
            passed = env == "preprod"
            ledger.record_validation(
                conn,
                release_id=RID,
                changeset_id=CURRENT.id,
                environment=env,
                passed=passed,
                report={**_validation(passed, env), "fingerprint_ok": passed, "actual_fingerprint": "a" * 64},
                actor="airflow",
                at=next(at),
            )
        ledger.set_deployment_status(
            conn, deployment_id=deployments["preprod"].id, status="verified", actor="airflow", at=next(at)
        )
        ledger.record_rollback(
            conn,
            deployment_id=deployments["prod"].id,
            proven=False,
            fingerprints={"expected": "b" * 64, "restored": "d" * 64},
            reason="verification of prod failed",
            actor="airflow",
            at=next(at),
        )
        ledger.append_event(
            conn,
            kind="release.closed",
            actor="airflow",
            at=next(at),
            release_id=RID,
            subject=CURRENT.id,
            payload={
                "outcome": "manual_repair_needed",
                "ok": False,
                "detail": "MANUAL REPAIR NEEDED on prod",
            },
        )
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ledger_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """One recorded release per module, read by every test (a fresh database costs seconds); a test that
    alters the ledger records its own with ``make_db``."""
    name = f"gt_report_{uuid.uuid4().hex[:10]}"
    dsn = pg.create_database(pg_admin_dsn, name)
    try:
        _record_release(dsn)
        yield dsn
    finally:
        pg.drop_database(pg_admin_dsn, name)


def _service(dsn: str, tmp_path: Path) -> ReleaseService:
    text = CONFIG.read_text(encoding="utf-8")
    config_file = tmp_path / "gardien.yaml"
    config_file.write_text(text.replace("../expectations", str(CONFIG.parent.parent / "expectations")))
    config = load_config(config_file)
    config = config.model_copy(
        update={"ledger": config.ledger.model_copy(update={"dsn": dsn, "database": None})}
    )
    return ReleaseService(config, "standard", artifacts=tmp_path / "releases")


def test_load_report_tells_the_whole_release_story(ledger_dsn: str, tmp_path: Path) -> None:
    conn = pg.connect(ledger_dsn)
    try:
        report = load_report(conn, RID, generated_at=T0, artifacts_dir=None, link_from=tmp_path)
        events = ledger.list_events(conn, release_id=RID)
    finally:
        conn.close()
    data = json.loads(report.to_json())
    assert data["request"]["requested_by"] == "chef.projet"
    assert data["request"]["path"] == ["standard", "preprod", "prod"]
    assert data["changeset"]["id"] == CURRENT.id
    assert data["changeset"]["earlier_ids"] == [FIRST.id]
    assert data["changeset"]["counts"] == {
        "medicament": {"inserts": 1, "updates": 1, "deletes": 0},
        "ligne_protocole": {"inserts": 1, "updates": 0, "deletes": 0},
    }
    update = data["changeset"]["tables"][0]["updates"][0]
    assert (update["label"], update["changes"]["libelle"]) == (
        "UCD-1111111",
        {
            "before": "PARACETAMOL 500",
            "after": "PARACETAMOL 500 mg",
            "added": None,
            "removed": None,
            "separator": None,
        },
    )
    assert [(a["approver"], a["void"]) for a in data["approvals"]] == [
        ("dsi.adjoint", True),
        ("resp.exploitation", False),
        ("pharma.chef", False),
    ]
    assert [(v["phase"], v["environment"], v["passed"]) for v in data["validations"]] == [
        ("rehearsal", "prod", True),
        ("verification", "preprod", True),
        ("verification", "prod", False),
    ]
    assert data["validations"][2]["problems"][0]["examples"] == [
        {"protocole": "PROTO-CARDIO", "rang": "1", "code_ucd": "UCD-3400890"}
    ]
    assert [(d["environment"], d["status"]) for d in data["deployments"]] == [
        ("preprod", "verified"),
        ("prod", "rollback_unproven"),
    ]
    assert data["deployments"][0]["history"][0]["after"] == "verified"
    assert data["rollbacks"][0] | {"at": None} == {
        "deployment_id": data["deployments"][1]["id"],
        "environment": "prod",
        "proven": False,
        "at": None,
        "actor": "airflow",
        "reason": "verification of prod failed",
        "fingerprint_expected": "b" * 64,
        "fingerprint_restored": "d" * 64,
    }
    assert (data["outcome"]["outcome"], data["outcome"]["ok"]) == ("manual_repair_needed", False)
    assert [e["hash"] for e in data["events"]] == [e.hash for e in events]
    assert data["chain"] | {"checked": None} == {
        "ok": True,
        "checked": None,
        "head_seq": events[-1].seq,
        "head_hash": events[-1].hash,
        "broken": None,
        "status_mismatches": [],  # every status agrees with its chained events
    }
    assert data["sources"][1] == "artifact folder not found: built from the ledger alone"


def test_write_report_stores_json_and_html_beside_the_artifacts(ledger_dsn: str, tmp_path: Path) -> None:
    svc = _service(ledger_dsn, tmp_path)
    folder = svc.release_dir(RID)
    (folder / "changeset.json").write_text(CURRENT.to_json())
    (folder / "data_docs").mkdir()
    (folder / "data_docs" / "index.html").write_text("<html></html>")
    drift = {
        "table": "medicament",
        "key": ["UCD-9"],
        "field": "libelle",
        "baseline": "A",
        "now": "B",
        "wanted": "A",
    }
    (folder / "deployment-prod.json").write_text(
        json.dumps({"deployment_id": "dep-prod-1", "drift": [drift]})
    )

    html_path = write_report(svc, RID, now=T0 + timedelta(hours=2))

    assert html_path == folder / "report.html"
    data = json.loads((folder / "report.json").read_text())
    assert [d["stage"] for d in data["deployments"]] == ["preprod", "prod"]
    assert data["deployments"][1]["drift"] == [drift]
    assert data["changeset"]["full_changeset"][1] == "changeset.json"
    page = html_path.read_text()
    for fact in (
        RID,
        "chef.projet",
        "Nouveau protocole de cardiologie",
        CURRENT.id,
        "PARACETAMOL 500 mg",
        "resp.exploitation",
        "VOID: earlier changeset",
        "NOT PROVEN — MANUAL REPAIR NEEDED",
        "MANUAL REPAIR NEEDED on prod",
        "DRIFT on prod",
        "CHAIN INTACT",
        'href="changeset.json"',
    ):
        assert fact in page, fact
    assert EVIL not in page
    assert "AMIODARONE &lt;script&gt;alert(&#39;uf&#39;)&lt;/script&gt;" in page


def _gardien(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: a real process, a real exit code."""
    return subprocess.run(
        [sys.executable, "-c", "from gardien.cli.main import main; main()", "report", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "GARDIEN_STATE_DIR": str(state)},
        timeout=120,
        check=False,
    )


@pytest.fixture
def gardien(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """The same entry point in-process (a process start costs seconds): (exit code, stdout, stderr)."""
    from gardien.cli.main import main

    def run(*args: str, state: Path) -> tuple[int, str, str]:
        monkeypatch.setenv("GARDIEN_STATE_DIR", str(state))
        monkeypatch.setattr(sys, "argv", ["gardien", "report", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_report_unknown_release_exits_11(ledger_dsn: str, tmp_path: Path) -> None:
    result = _gardien("R-1999-01-01-404", "--dsn", ledger_dsn, state=tmp_path)
    assert result.returncode == 11, result.stderr
    assert "unknown release 'R-1999-01-01-404'" in result.stderr
    assert not (tmp_path / "releases").exists()


@pytest.mark.parametrize(
    ("config", "stages"),
    [("missing.yaml", [None, None]), (str(CONFIG), ["preprod", "prod"])],
    ids=["ledger-alone", "with-config"],
)
def test_cli_report_writes_from_the_ledger_alone(
    ledger_dsn: str, tmp_path: Path, config: str, stages: list[str | None]
) -> None:
    out = tmp_path / "cab"
    result = _gardien(
        RID, "--dsn", ledger_dsn, "-c", config, "-o", str(out), "--json", state=tmp_path / "state"
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads((out / "report.json").read_text())
    assert [d["stage"] for d in printed["deployments"]] == stages
    assert "built from the ledger alone" in printed["sources"][1]
    assert "NOT PROVEN — MANUAL REPAIR NEEDED" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("path", "message"),
    [("emergency", "the ledger records this release on path 'standard'"), ("nope", "no such release path")],
    ids=["other-path", "unknown-path"],
)
def test_cli_report_wrong_path_exits_2(
    ledger_dsn: str, tmp_path: Path, gardien: Callable[..., tuple[int, str, str]], path: str, message: str
) -> None:
    code, _, err = gardien(RID, "--dsn", ledger_dsn, "-c", str(CONFIG), "--path", path, state=tmp_path)
    assert code == 2, err
    assert message in err
    assert not (tmp_path / "releases").exists()


# Hand edits only a superuser can make: guards off, row changed, guards back on.
FORGED_EVENT = (
    "ALTER TABLE ledger.events DISABLE TRIGGER USER",
    "UPDATE ledger.events SET actor = 'someone.else' WHERE seq = 2",
    "ALTER TABLE ledger.events ENABLE TRIGGER USER",
)
ALTERED_CHANGESET = (
    "ALTER TABLE ledger.changesets DISABLE TRIGGER USER",
    "ALTER TABLE ledger.changesets DROP CONSTRAINT changesets_content_address",
    f"UPDATE ledger.changesets SET body = replace(body, 'PARACETAMOL 500 mg', 'PARACETAMOL 5000 mg') "
    f"WHERE id = '{CURRENT.id}'",
    "ALTER TABLE ledger.changesets ENABLE TRIGGER USER",
)


@pytest.mark.parametrize(
    ("statements", "message", "shown", "chain_ok"),
    [
        (FORGED_EVENT, "chain broken at seq 2", "AUDIT CHAIN BROKEN: chain broken at seq 2", False),
        (ALTERED_CHANGESET, "no longer matches its hash", "CHANGESET UNREADABLE", True),
    ],
    ids=["forged-event", "altered-changeset"],
)
def test_cli_report_hand_edited_ledger_is_reported_then_exits_11(
    make_db: Callable[[str], str],
    tmp_path: Path,
    gardien: Callable[..., tuple[int, str, str]],
    statements: tuple[str, ...],
    message: str,
    shown: str,
    chain_ok: bool,
) -> None:
    dsn = make_db("report_forged")
    _record_release(dsn)
    conn = pg.connect(dsn)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.commit()
    finally:
        conn.close()
    out = tmp_path / "out"
    code, _, err = gardien(RID, "--dsn", dsn, "-o", str(out), state=tmp_path)
    assert code == 11, err
    assert message in err
    assert shown in (out / "report.html").read_text()
    data = json.loads((out / "report.json").read_text())
    assert data["chain"]["ok"] is chain_ok
    assert "5000 mg" not in json.dumps(
        data
    )  # an altered changeset is never shown as if it were the approved one

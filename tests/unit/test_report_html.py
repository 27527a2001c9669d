"""The release report built from in-memory ledger records and rendered to HTML: no database, no Airflow."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gardien.changeset import Changeset, Delete, FieldChange, Insert, TableChanges, Update
from gardien.fingerprint import ScopeFingerprint, TableFingerprint
from gardien.ledger import (
    GENESIS_HASH,
    AirflowIds,
    ApprovalRecord,
    BrokenLink,
    ChainReport,
    DeploymentRecord,
    Event,
    Release,
    ReleaseHistory,
    RollbackRecord,
    ValidationRecord,
)
from gardien.report import Artifacts, build_report, render_html
from gardien.report.diffs import key_label

T0 = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
RID = "R-2026-11-28-001"
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
FP = ScopeFingerprint(tables=(TableFingerprint("unite_fonctionnelle", 3, 11, 22),))
OLD_CS = "ab" * 32


def _changeset(*, label: str = "Cardiologie", inserts: int = 1) -> Changeset:
    return Changeset(
        catalog_fingerprint="cf" * 32,
        source_fingerprint=FP,
        target_fingerprint=FP,
        tables=(
            TableChanges(
                table="unite_fonctionnelle",
                inserts=tuple(
                    Insert(
                        key=(f"UF-{i:03d}",),
                        values={"libelle": label, "etablissement_id": ("750000001",), "parent_id": None},
                    )
                    for i in range(inserts)
                ),
                updates=(
                    Update(
                        key=("UF-900",),
                        baseline={"libelle": "Ancien libellé", "actif": "true"},
                        changes={"libelle": FieldChange(before="Ancien libellé", after="Nouveau libellé")},
                    ),
                ),
                deletes=(Delete(key=("UF-999",), baseline={"libelle": "Unité fermée", "actif": "true"}),),
            ),
            TableChanges(table="droit"),
        ),
    )


def _event(seq: int, kind: str, *, payload: dict[str, Any] | None = None, **fields: Any) -> Event:
    base = {
        "seq": seq,
        "at": T0 + timedelta(minutes=seq),
        "kind": kind,
        "actor": "airflow-scheduler",
        "release_id": RID,
        "subject": None,
        "payload_text": json.dumps(payload or {}, sort_keys=True, separators=(",", ":")),
        "reason": None,
        "airflow": AirflowIds(dag_id="gardien_release_standard", run_id="manual__1", task_id="close"),
        "prev_hash": GENESIS_HASH,
        "hash": f"{seq:064x}",
    }
    return Event(**{**base, **fields})


def _history(cs: Changeset, **overrides: Any) -> ReleaseHistory:
    release = Release(
        id=RID,
        path=("standard", "preprod", "prod"),
        requested_by="chef.projet",
        reason="Nouvelle unité de cardiologie",
        window_start=T0,
        window_end=T0 + timedelta(hours=3),
        status="closed",
        changeset_id=cs.id,
        created_at=T0,
    )
    report = {
        "ok": False,
        "summary": "prod: FAILED: 1 passed, 1 failed, 0 could not run, of 2 expectations",
        "expectations": [
            {"name": "uf_code_unique", "table": "unite_fonctionnelle", "kind": "unique", "status": "passed"},
            {
                "name": "uf_parent_exists",
                "table": "unite_fonctionnelle",
                "kind": "foreign_key",
                "status": "failed",
                "unexpected_count": 7,
                "examples": [{"code": f"UF-{i}"} for i in range(9)],
                "message": "parent missing",
            },
        ],
        "data_docs_path": f"/srv/state/releases/{RID}/data_docs/index.html",
        "errors": [],
        "notes": [],
    }
    base = {
        "release": release,
        "validations": (ValidationRecord(1, RID, cs.id, "rehearsal:prod", False, report, "airflow", T0),),
        "approvals": (
            ApprovalRecord(1, RID, OLD_CS, "resp.exploitation", "approved", None, T0),
            ApprovalRecord(2, RID, cs.id, "pharma.chef", "approved", "vu", T0),
        ),
        "deployments": (
            DeploymentRecord(
                1,
                RID,
                "prod",
                cs.id,
                "dep-prod-1",
                {"before": "b" * 64, "after": "c" * 64},
                "verified",
                "a",
                T0,
            ),
        ),
        "rollbacks": (),
        "events": (
            _event(1, "release.created", actor="chef.projet"),
            _event(2, "changeset.attached", subject=OLD_CS),
            _event(3, "changeset.attached", subject=cs.id, payload={"replaces": OLD_CS}),
            _event(
                4,
                "release.closed",
                payload={"outcome": "released", "ok": True, "detail": "deployed and verified on prod"},
            ),
        ),
    }
    return ReleaseHistory(**{**base, **overrides})


def _build(
    cs: Changeset | None = None,
    *,
    chain: ChainReport | None = None,
    artifacts: Artifacts | None = None,
    **kw: Any,
) -> Any:
    cs = cs or _changeset()
    row_limit = kw.pop("row_limit", 50)
    hints = kw.pop("hints", None)
    return build_report(
        _history(cs, **kw),
        changeset=cs,
        changeset_problem=None,
        chain=chain or ChainReport(ok=True, checked=4, head_seq=4, head_hash="f" * 64),
        artifacts=artifacts or Artifacts(),
        generated_at=T0 + timedelta(hours=4),
        path_name="standard",
        stages={"preprod": "preprod", "prod": "prod"},
        row_limit=row_limit,
        hints=hints,
    )


def _rejection_event(reason: str) -> Event:
    return _event(5, "approval.rejected", payload={"by": "rssi", "reason": reason, "seat": 1})


@pytest.mark.parametrize(
    "where",
    ["changeset value", "reason", "approval comment", "approver", "rejection", "rollback reason", "example"],
)
def test_render_html_injected_markup_is_escaped(where: str) -> None:
    cs = _changeset(label=EVIL if where == "changeset value" else "Cardiologie")
    kw: dict[str, Any] = {}
    if where == "reason":
        kw["release"] = replace(_history(cs).release, reason=EVIL)
    elif where in ("approval comment", "approver"):
        approver, comment = (EVIL, "ok") if where == "approver" else ("pharma.chef", EVIL)
        kw["approvals"] = (ApprovalRecord(2, RID, cs.id, approver, "approved", comment, T0),)
    elif where == "rejection":
        kw["events"] = (_rejection_event(EVIL),)
    elif where == "rollback reason":
        kw["rollbacks"] = (RollbackRecord(1, 1, True, {}, EVIL, "ops", T0),)
    elif where == "example":
        v = _history(cs).validations[0]
        bad = {"expectations": [{"name": "n", "status": "failed", "examples": [{"code": EVIL}]}]}
        kw["validations"] = (replace(v, report=bad),)
    page = render_html(_build(cs, **kw))
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_render_html_is_self_contained_without_script_or_external_resources() -> None:
    page = render_html(_build())
    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page
    for forbidden in ("<script", "<link", "@import", "http://", "https://", "url("):
        assert forbidden not in page


@pytest.mark.parametrize(
    ("proven", "shown", "absent"),
    [
        (False, "NOT PROVEN — MANUAL REPAIR NEEDED", "restoration proven"),
        (True, "restoration proven", "NOT PROVEN"),
    ],
    ids=["unproven", "proven"],
)
def test_render_html_rollback_states_proof(proven: bool, shown: str, absent: str) -> None:
    rollback = RollbackRecord(
        1, 1, proven, {"expected": "e" * 64, "restored": "d" * 64}, "verify failed", "ops", T0
    )
    report = _build(rollbacks=(rollback,))
    page = render_html(report)
    assert shown in page
    assert absent not in page
    assert any("ROLLBACK NOT PROVEN on prod" in a.text for a in report.alerts) is not proven


def test_build_report_long_list_is_capped_and_says_where_the_rest_is() -> None:
    cs = _changeset(inserts=60)
    report = _build(cs, row_limit=50)
    table = report.changeset.tables[0]
    assert (table.counts["inserts"], len(table.inserts), table.omitted["inserts"]) == (60, 50, 10)
    page = render_html(report)
    assert "... and 10 more (first 50 shown)" in page
    assert f"ledger.changesets, id {cs.id}" in page


def test_build_report_changeset_shows_natural_keys_and_field_diffs() -> None:
    report = _build()
    table = report.changeset.tables[0]
    assert [t.table for t in report.changeset.tables] == ["unite_fonctionnelle"]  # empty tables left out
    assert table.updates[0].changes["libelle"].before == "Ancien libellé"
    assert report.changeset.earlier_ids == (OLD_CS,)
    page = render_html(report)
    assert "→ 750000001" in page  # a foreign key shown by the referenced row's natural key
    assert "Ancien libellé" in page and "Nouveau libellé" in page and "Unité fermée" in page


def test_build_report_approval_on_earlier_changeset_is_void() -> None:
    report = _build()
    assert [a.void for a in report.approvals] == [True, False]
    assert any("1 approval(s) void" in a.text for a in report.alerts)
    assert "VOID: earlier changeset" in render_html(report)


def test_build_report_rejection_event_is_an_alert_and_a_banner() -> None:
    report = _build(events=(_rejection_event("protocole non relu par la pharmacie"),))
    assert [(r.by, r.source) for r in report.rejections] == [("rssi", "approval step")]
    assert report.alerts[0].text.startswith("REJECTED by rssi")
    assert 'class="unproven">REJECTED by rssi' in render_html(report)


def test_build_report_failed_validation_keeps_capped_failing_examples() -> None:
    report = _build()
    run = report.rehearsals[0]
    assert (run.counts["passed"], run.counts["failed"]) == (1, 1)
    assert [p.name for p in run.problems] == ["uf_parent_exists"]
    assert len(run.problems[0].examples) == 5
    assert any(a.text.startswith("VALIDATION FAILED (rehearsal) on prod") for a in report.alerts)


def test_build_report_broken_chain_is_the_first_alert() -> None:
    broken = BrokenLink(
        seq=3, problem="the stored hash is not the SHA-256", expected_hash="1" * 64, stored_hash="2" * 64
    )
    chain = ChainReport(ok=False, checked=2, first_broken=broken, head_seq=2, head_hash="9" * 64)
    report = _build(chain=chain)
    assert report.alerts[0].text.startswith("AUDIT CHAIN BROKEN — chain broken at seq 3")
    assert "AUDIT CHAIN BROKEN: chain broken at seq 3" in render_html(report)


def test_build_report_without_changeset_says_nothing_was_extracted() -> None:
    history = _history(_changeset())
    history = replace(history, release=replace(history.release, changeset_id=None))
    report = build_report(
        history,
        changeset=None,
        changeset_problem=None,
        chain=ChainReport(ok=True, checked=0),
        artifacts=Artifacts(),
        generated_at=T0,
    )
    assert report.changeset.problem == "the release has no changeset yet (nothing was extracted)"
    assert not any(a.text.startswith("CHANGESET UNREADABLE") for a in report.alerts)
    assert "nothing was extracted" in render_html(report)


@pytest.mark.parametrize(
    ("artifact_id", "expected"),
    [("dep-prod-1", 1), ("dep-prod-OTHER", None)],
    ids=["same-deployment", "later-attempt"],
)
def test_build_report_drift_comes_only_from_the_matching_artifact(
    artifact_id: str, expected: int | None
) -> None:
    note = {"table": "profil", "key": ["MED"], "field": "libelle", "baseline": "a", "now": "b", "wanted": "a"}
    artifacts = Artifacts(folder="/x", deployments={"prod": {"deployment_id": artifact_id, "drift": [note]}})
    report = _build(artifacts=artifacts)
    drift = report.deployments[0].drift
    assert (len(drift) if drift is not None else None) == expected
    assert report.deployments[0].stage == "prod"


@pytest.mark.parametrize(
    ("recorded", "href"),
    [
        (f"/other/machine/releases/{RID}/data_docs/index.html", "data_docs/index.html"),
        ("data_docs/index.html", "data_docs/index.html"),
        ("/other/machine/elsewhere/index.html", None),
        (None, None),
    ],
    ids=["other-machine", "relative", "outside-release", "none"],
)
def test_artifacts_link_resolves_only_files_present_here(recorded: str | None, href: str | None) -> None:
    artifacts = Artifacts(folder="/here", links={"data_docs/index.html": "data_docs/index.html"})
    assert artifacts.link(recorded, release_id=RID) == href


@pytest.mark.parametrize(
    ("key", "label"),
    [
        (("UF-1",), "UF-1"),
        ((("PROF-A",), ("DROIT-X",)), "PROF-A / DROIT-X"),
        ((("750000001", "X"), "3"), "(750000001 / X) / 3"),
        ((None,), "NULL"),
    ],
    ids=["simple", "foreign-keys", "composite-foreign-key", "null"],
)
def test_key_label_shows_natural_keys(key: tuple[Any, ...], label: str) -> None:
    assert key_label(key) == label


def test_report_json_is_stable_and_sorted() -> None:
    report = _build()
    text = report.to_json()
    assert text == _build().to_json()
    data = json.loads(text)
    assert data["format"] == "gardien.report/1"
    assert list(data) == sorted(data)
    assert data["outcome"] == {
        "closed": True,
        "outcome": "released",
        "ok": True,
        "detail": "deployed and verified on prod",
        "at": "2026-11-28T18:04:00+00:00",
    }
    assert data["changeset"]["tables"][0]["inserts"][0]["values"]["etablissement_id"] == ["750000001"]


@pytest.mark.parametrize(("row_limit", "example_limit"), [(0, 5), (10, -1)], ids=["rows", "examples"])
def test_build_report_bad_limits_raise(row_limit: int, example_limit: int) -> None:
    cs = _changeset()
    with pytest.raises(ValueError, match="row_limit must be positive"):
        build_report(
            _history(cs),
            changeset=cs,
            changeset_problem=None,
            chain=ChainReport(ok=True, checked=0),
            artifacts=Artifacts(),
            generated_at=T0,
            row_limit=row_limit,
            example_limit=example_limit,
        )


def test_report_package_imports_no_airflow() -> None:
    code = "import sys, gardien.report, gardien.cli.report; print('airflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_build_report_an_approve_the_seat_refused_is_not_called_a_rejection_by_that_person() -> None:
    refused = _event(
        5,
        "approval.rejected",
        payload={"by": "rssi", "reason": "approval refused: stale changeset", "seat": 1, "refused": True},
    )
    report = _build(events=(refused,))
    assert report.alerts[0].text.startswith("APPROVAL REFUSED (given by rssi)")
    page = render_html(report)
    assert "APPROVAL REFUSED (given by rssi)" in page and "REJECTED by rssi" not in page

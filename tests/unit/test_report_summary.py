"""The report's summary, rollback section, list fields as set differences and retired rows (no database)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_report_html import RID, T0, _build, _changeset

from gardien.changeset import Changeset, FieldChange, TableChanges, Update
from gardien.ledger import DeploymentRecord
from gardien.report import CatalogHints, render_html
from gardien.report.hints import set_difference

ROOT = Path(__file__).resolve().parents[2]
UNITS_BEFORE = ";".join(f"UF{1100 + i}" for i in range(120)) + ";UF2005"
UNITS_AFTER = ";".join(f"UF{1100 + i}" for i in range(120)) + ";UF1035"


@dataclass(frozen=True, slots=True)
class SeatedApproval:
    """An approval record as the ledger keeps it once the approval step records seat and role (``at`` is
    then the person's answer time); ``answered_at`` stands for a ledger that would keep both times."""

    id: int
    release_id: str
    changeset_id: str
    approver: str
    decision: str
    comment: str | None
    at: datetime
    seat: int | None = None
    role: str | None = None
    answered_at: datetime | None = None


def _list_changeset() -> Changeset:
    cs = _changeset()
    profil = TableChanges(
        table="profil",
        updates=(
            Update(
                key=("MED-URG",),
                baseline={"uf_autorisees": UNITS_BEFORE},
                changes={"uf_autorisees": FieldChange(before=UNITS_BEFORE, after=UNITS_AFTER)},
            ),
        ),
    )
    return replace(cs, tables=(*cs.tables, profil))


HINTS = CatalogHints(
    list_separators={("profil", "uf_autorisees"): ";"}, retired_by={"unite_fonctionnelle": "actif = false"}
)


def test_summary_comes_first_and_answers_what_where_when_who_and_outcome() -> None:
    cs = _changeset()
    approvals = (
        SeatedApproval(
            2,
            RID,
            cs.id,
            "pharma.chef",
            "approved",
            "dose vérifiée",
            T0,
            0,
            "pharmaciens",
            T0 - timedelta(minutes=7),
        ),
        SeatedApproval(
            3, RID, cs.id, "chef.projet", "approved", None, T0, 2, "cab", T0 - timedelta(minutes=3)
        ),
    )
    report = _build(cs, approvals=approvals)
    s = report.summary
    assert s.what == f"3 row change(s) in 1 table(s), changeset {cs.id[:12]}"
    assert s.where == "preprod → prod"
    assert s.requested_by == "chef.projet" and s.outcome == "released"
    assert [(a.approver, a.seat, a.role, a.answered_at) for a in s.approvers] == [
        ("pharma.chef", 0, "pharmaciens", (T0 - timedelta(minutes=7)).isoformat()),
        ("chef.projet", 2, "cab", (T0 - timedelta(minutes=3)).isoformat()),
    ]
    assert [(d.environment, d.deployment_id, d.status) for d in s.deployments] == [
        ("prod", "dep-prod-1", "verified")
    ]
    page = render_html(report)
    headings = [h.split("</h2>")[0] for h in page.split("<h2>")[1:]]
    assert headings[:3] == ["Summary", "How to roll back", "Request"]
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    for shown in (
        "pharma.chef",
        "(seat 1, pharmaciens)",
        "answered 2026-11-28T17:53:00+00:00",
        "dose vérifiée",
        "dep-prod-1",
        "RELEASED",
        "preprod → prod",
        "window 2026-11-28T18:00:00+00:00",
    ):
        assert shown in summary, shown


def test_summary_reads_old_approval_records_without_seat_and_never_calls_a_record_time_an_answer() -> None:
    report = _build()  # ApprovalRecord without seat/role/answered_at
    approved = report.summary.approvers
    assert [(a.approver, a.seat, a.role, a.answered_at) for a in approved] == [
        ("pharma.chef", None, None, None)
    ]
    summary = render_html(report).split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert f"recorded {T0.isoformat()}" in summary and "answered" not in summary


def test_rollback_section_names_the_dag_params_and_the_cli_line() -> None:
    report = _build()
    (handle,) = report.rollback_handles
    assert (handle.environment, handle.dag_id, handle.cli) == (
        "prod",
        "gardien_rollback",
        "gardien rollback prod dep-prod-1",
    )
    assert dict(handle.params) == {"release": RID, "environment": "prod", "reason": ""}
    section = render_html(report).split("<h2>How to roll back</h2>")[1].split("<h2>")[0]
    assert "gardien rollback prod dep-prod-1" in section and "gardien_rollback" in section
    assert json.loads(report.to_json())["rollback_handles"][0]["cli"] == "gardien rollback prod dep-prod-1"


def test_rollback_section_is_empty_once_rolled_back() -> None:
    cs = _changeset()
    rolled = DeploymentRecord(1, RID, "prod", cs.id, "dep-prod-1", {}, "rolled_back", "a", T0)
    report = _build(cs, deployments=(rolled,))
    assert report.rollback_handles == ()
    assert "Nothing to roll back" in render_html(report)


def test_list_field_is_shown_as_a_set_difference_never_as_two_long_lists() -> None:
    cs = _list_changeset()
    report = _build(cs, hints=HINTS)
    change = (
        next(t for t in report.changeset.tables if t.table == "profil").updates[0].changes["uf_autorisees"]
    )
    assert (change.added, change.removed) == (("UF1035",), ("UF2005",))
    page = render_html(report)
    assert '<li class="added">+UF1035</li>' in page and '<li class="removed">−UF2005</li>' in page
    assert UNITS_BEFORE not in page and UNITS_AFTER not in page
    # the JSON keeps both whole values (an auditor may want them)
    assert (
        json.loads(report.to_json())["changeset"]["tables"][1]["updates"][0]["changes"]["uf_autorisees"][
            "before"
        ]
        == UNITS_BEFORE
    )


def test_without_hints_a_long_value_is_shown_whole_but_breakable() -> None:
    page = render_html(_build(_list_changeset()))
    assert UNITS_BEFORE in page
    assert "overflow-wrap: anywhere" in page


def test_retired_rows_are_labelled_retired_not_deleted() -> None:
    page = render_html(_build(hints=HINTS))
    assert "<strong>Retired (1)</strong>" in page and "actif = false" in page
    assert "Deleted (1)" not in page
    plain = render_html(_build())
    assert "Deleted (1)" in plain and "Retired" not in plain


def test_retire_mode_rows_are_labelled_retired_with_their_reason() -> None:
    from gardien.config import Retire

    cs = Changeset(
        catalog_fingerprint="cf" * 32,
        source_fingerprint=_changeset().source_fingerprint,
        target_fingerprint=_changeset().target_fingerprint,
        tables=(
            TableChanges(
                table="encounter_type",
                updates=(
                    Update(
                        key=("e-2",),
                        baseline={"retired": "false", "retire_reason": None},
                        changes={
                            "retired": FieldChange(before="false", after="true"),
                            "retire_reason": FieldChange(before=None, after="merged <into> Admission"),
                        },
                    ),
                    Update(
                        key=("e-3",),
                        baseline={"retired": "true", "retire_reason": "old"},
                        changes={"retired": FieldChange(before="true", after="false")},
                    ),
                ),
            ),
        ),
    )
    hints = CatalogHints(retire={"encounter_type": Retire(column="retired", reason="retire_reason")})
    page = render_html(_build(cs, hints=hints))
    assert "e-2 — <strong>retired</strong> (reason: merged &lt;into&gt; Admission)" in page
    assert "e-3 — <strong>unretired</strong><" in page
    plain = render_html(_build(cs))
    assert "retired</strong>" not in plain


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("A;B;C", "A;C;D", (("D",), ("B",))),
        (None, "A;B", (("A", "B"), ())),
        ("A;B", "", ((), ("A", "B"))),
        ("B;A", "A;B", ((), ())),
        (" A ; B ", "A;B;B", ((), ())),
        (["x"], "A", None),
    ],
    ids=["both", "from-null", "to-empty", "reordered", "spaces-duplicates", "not-text"],
)
def test_set_difference(before: Any, after: Any, expected: Any) -> None:
    assert set_difference(before, after, ";") == expected


def test_catalog_hints_from_the_demo_catalog() -> None:
    from gardien.config import load_config

    hints = CatalogHints.from_catalog(load_config(ROOT / "include" / "config" / "gardien.yaml").catalog)
    assert hints.list_separators[("profil", "uf_autorisees")] == ";"
    assert hints.retired_by["unite_fonctionnelle"] == "actif = false"
    assert "droit" not in hints.retired_by


def test_a_seated_record_without_answered_at_was_written_at_the_answer_time() -> None:
    cs = _changeset()
    seated = SeatedApproval(2, RID, cs.id, "rssi", "approved", None, T0, 1, "securite")
    (line,) = _build(cs, approvals=(seated,)).summary.approvers
    assert (line.seat, line.role, line.answered_at) == (1, "securite", T0.isoformat())

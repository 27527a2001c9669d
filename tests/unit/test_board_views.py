"""The board's pure parts: set differences, retired rows, the month grid, the rollback line; no Airflow import."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from gardien.board.changes import table_changes
from gardien.board.month import month_view
from gardien.board.views import rollback_cli
from gardien.calendar import parse_calendar
from gardien.report.hints import set_difference
from gardien.report.model import FieldDiff, RowUpdate, RowValues, TableDiff

LISTS = {("profil", "uf_autorisees"): ";"}


@pytest.mark.parametrize(
    ("before", "after", "added", "removed"),
    [
        ("UF1;UF2;UF3", "UF1;UF3;UF4", ("UF4",), ("UF2",)),
        ("UF1;UF2", "UF2;UF1", (), ()),  # reordered: nothing added or removed
        (None, "UF1; UF2", ("UF1", "UF2"), ()),
        ("UF1;;UF1", "", (), ("UF1",)),  # blanks and duplicates ignored
    ],
    ids=["swap-one", "reordered", "from-null", "to-empty"],
)
def test_set_difference_of_a_list_field(before, after, added, removed) -> None:
    assert set_difference(before, after, ";") == (added, removed)


def _diff(table: str) -> TableDiff:
    return TableDiff(
        table=table,
        counts={"inserts": 0, "updates": 1, "deletes": 1},
        inserts=(),
        updates=(
            RowUpdate(
                key=("P1",),
                label="P1",
                changes={
                    "uf_autorisees": FieldDiff("UF1035;UF1", "UF1;UF2005"),
                    "libelle": FieldDiff("a", "b"),
                },
            ),
        ),
        deletes=(RowValues(key=("UF9",), label="UF9", values={}),),
        omitted={"inserts": 0, "updates": 0, "deletes": 0},
    )


def test_table_changes_label_list_fields_and_retired_rows() -> None:
    t = table_changes(_diff("profil"), soft_deletes={"profil": "actif = false"}, lists=LISTS)
    changed, retired = t.rows
    by_column = {f.column: f for f in changed.fields}
    assert by_column["uf_autorisees"].is_set
    assert (by_column["uf_autorisees"].added, by_column["uf_autorisees"].removed) == (
        ("UF2005",),
        ("UF1035",),
    )
    assert not by_column["libelle"].is_set
    assert retired.kind == "retired" and "actif = false" in retired.note


def test_table_changes_hard_delete_is_deleted() -> None:
    t = table_changes(_diff("droit"), soft_deletes={}, lists=LISTS)
    assert t.rows[-1].kind == "deleted"


CALENDAR = parse_calendar(
    {
        "timezone": "Europe/Paris",
        "windows": [{"name": "soir", "days": ["tue", "thu"], "start": "20:00", "end": "23:00"}],
        "freezes": [
            {"name": "gel", "start": "2026-12-14", "end": "2026-12-20", "reason": "montée de version"}
        ],
        "public_holidays": {"country": "FR", "enabled": True},
    },
    source="test",
)


def test_month_view_has_windows_cancelled_windows_freezes_and_holidays() -> None:
    view = month_view(CALENDAR, year=2026, month=12, releases=(), now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
    days = {d.date: d for week in view.weeks for d in week}
    assert [e.kind for e in days[dt.date(2026, 12, 1)].entries] == ["window"]  # a Tuesday
    assert "20:00–23:00" in days[dt.date(2026, 12, 1)].entries[0].text  # local time, winter
    kinds = {e.kind for e in days[dt.date(2026, 12, 15)].entries}
    assert kinds == {"freeze", "cancelled"}  # a Tuesday inside the freeze
    assert any(e.kind == "public_holiday" for e in days[dt.date(2026, 12, 25)].entries)
    assert days[dt.date(2026, 12, 2)].today and view.previous == "2026-11" and view.following == "2027-01"


def test_rollback_cli_names_release_and_environment() -> None:
    line = rollback_cli("R-standard-1", "prod")
    assert line.startswith("airflow dags trigger gardien_rollback --conf ")
    assert '"release": "R-standard-1"' in line and '"environment": "prod"' in line


def test_board_package_does_not_import_airflow() -> None:
    code = "import sys, gardien.board.pages, gardien.board.views; print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pending_seats_only_while_the_run_is_alive() -> None:
    from gardien.board.views import AirflowFacts, SeatAnswer, _pending

    waiting = SeatAnswer("approve_cab_1", "seat 3 (cab)", None, None, (), None)
    answered = SeatAnswer(
        "approve_pharmaciens",
        "seat 1",
        "pharma.chef",
        dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        ("Approve",),
        None,
    )
    assert _pending(AirflowFacts(run_state="running", answers=(waiting, answered))) == (waiting,)
    assert (
        _pending(AirflowFacts(run_state="failed", answers=(waiting, answered))) == ()
    )  # timed out, not waiting


def test_a_withdrawn_seat_is_never_shown_waiting_and_is_said_to_need_no_answer() -> None:
    from gardien.board.views import AirflowFacts, SeatAnswer, _pending, _withdrawn

    waiting = SeatAnswer("approve_securite", "seat 2", None, None, (), None, task_state="awaiting_input")
    withdrawn = SeatAnswer("approve_cab_1", "seat 3 (cab)", None, None, (), None, task_state="skipped")
    never_asked = SeatAnswer(
        "approve_cab_2", "seat 4 (cab)", None, None, (), None, task_state="upstream_failed"
    )
    facts = AirflowFacts(run_state="running", answers=(waiting, withdrawn, never_asked))

    assert _pending(facts) == (waiting,)  # the run is still closing: only the seat really waiting
    assert _withdrawn(facts) == (withdrawn, never_asked)
    assert _withdrawn(AirflowFacts(run_state="failed", answers=(waiting, withdrawn))) == (withdrawn,)

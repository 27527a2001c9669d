"""The board's pages from a real ledger (no Airflow): what a CAB member reads, escaped, without secrets."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gardien import ledger, pg
from gardien.board import BoardSettings, pages
from gardien.board.views import AirflowFacts, SeatAnswer, Viewer
from gardien.config import load_config
from gardien.demo.ledger_sample import record_sample_release

pytestmark = pytest.mark.integration
CONFIG = Path(__file__).resolve().parents[2] / "include" / "config" / "gardien.yaml"
EVIL = "<script>alert('dose')</script>"
T0 = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
READER = Viewer(
    user_id="pharma.chef",
    name="pharma.chef",
    can_rollback=True,
    readable_dags=frozenset({"gardien_release_standard"}),
)


@pytest.fixture(scope="module")
def board(pg_admin_dsn: str) -> Iterator[tuple[str, BoardSettings]]:
    name = f"gt_board_{uuid.uuid4().hex[:10]}"
    dsn = pg.create_database(pg_admin_dsn, name)
    conn = pg.connect(dsn)
    try:
        ledger.ensure_schema(conn)
        record_sample_release(
            conn, release_id="R-standard-1", at=T0, drug_label=f"AMIODARONE {EVIL}", comment=f"ok {EVIL}"
        )
        record_sample_release(conn, release_id="R-standard-2", at=T0 + timedelta(days=2), n=2, deploy=False)
        conn.commit()
    finally:
        conn.close()
    settings = BoardSettings.from_config(load_config(CONFIG))
    try:
        yield dsn, settings
    finally:
        pg.drop_database(pg_admin_dsn, name)


def _row(dsn: str, rid: str):
    conn = pg.connect(dsn)
    try:
        return pages.release_row(conn, rid)
    finally:
        conn.close()


def _page(dsn: str, settings: BoardSettings, fn, **kw) -> str:
    conn = pg.connect(dsn)
    try:
        return fn(conn, settings=settings, viewer=kw.pop("viewer", READER), root="/gardien", **kw)
    finally:
        conn.close()


def test_release_page_summary_set_differences_retired_and_rollback(board) -> None:
    dsn, settings = board
    facts = AirflowFacts(
        run_state="success",
        answers=(
            SeatAnswer(
                "approve_pharmaciens",
                "seat 1 (pharmaciens)",
                "pharma.chef",
                T0 + timedelta(minutes=7),
                ("Approve",),
                None,
            ),
        ),
    )
    html = _page(dsn, settings, pages.release_html, row=_row(dsn, "R-standard-1"), facts=facts, now=NOW)
    assert "R-standard-1" in html
    assert "+UF1035" in html and "−UF2005" in html  # a list field as a set difference
    assert re.search(r"retired.*UF2005|UF2005.*retired", html, re.S)
    assert "dep-prod-0" in html and "dep-preprod-0" in html  # deployment id per target
    assert "2026-12-01 19:07:00Z" in html  # the real answer time from Airflow, not the recording time
    assert "approve_pharmaciens · pharmaciens" in html
    assert "RELEASED" in html
    assert "airflow dags trigger gardien_rollback" in html and "Roll back R-standard-1 on prod" in html
    assert "Ledger hash chain (whole ledger, checked" in html and "): verified (" in html


def test_every_page_escapes_user_text_and_shows_no_dsn(board) -> None:
    dsn, settings = board
    row = _row(dsn, "R-standard-1")
    html = "".join(
        [
            _page(dsn, settings, pages.release_html, row=row, facts=AirflowFacts(), now=NOW),
            _page(
                dsn, settings, pages.review_html, row=row, facts=AirflowFacts(), now=NOW, seat="pharmaciens"
            ),
            _page(dsn, settings, pages.releases_html),
            _page(dsn, settings, pages.calendar_html, now=NOW, month="2026-12"),
        ]
    )
    assert "<script>" not in html
    assert "&lt;script&gt;alert(" in html
    assert "postgresql://" not in html and settings.ledger_dsn not in html
    assert "password" not in html.lower()


def test_review_shows_the_pharmacist_their_changes_first(board) -> None:
    dsn, settings = board
    row = _row(dsn, "R-standard-2")
    html = _page(dsn, settings, pages.review_html, row=row, facts=AirflowFacts(), now=NOW, seat="pharmaciens")
    mine = html.split('id="mine"')[1].split('id="others"')[0]
    assert "regle_alerte_dose" in mine and "4000" in mine and "3000" in mine and "medicament" in mine
    assert "profil" not in mine  # the security officer's table comes after
    assert "profil" in html.split('id="others"')[1]


def test_review_is_refused_before_validation_passed(pg_admin_dsn: str, make_db) -> None:
    dsn = make_db("board")
    conn = pg.connect(dsn)
    ledger.ensure_schema(conn)
    ledger.create_release(
        conn, release_id="R-x", path=["preprod"], requested_by="parametreur", reason="test", at=T0
    )
    conn.commit()
    settings = BoardSettings.from_config(load_config(CONFIG))
    row = pages.release_row(conn, "R-x")
    assert (
        pages.review_html(
            conn, row=row, settings=settings, viewer=READER, facts=AirflowFacts(), root="", now=NOW, seat=None
        )
        is None
    )
    conn.close()


def test_releases_list_filters_by_status_and_environment(board) -> None:
    dsn, settings = board
    closed = _page(dsn, settings, pages.releases_html, status="closed")
    assert "R-standard-1" in closed and "R-standard-2" not in closed
    validated = _page(dsn, settings, pages.releases_html, status="validated", environment="prod")
    assert "R-standard-2" in validated and "R-standard-1" not in validated
    assert 'href="/dags/gardien_release_standard/runs/R-standard-1"' in closed


def test_calendar_month_shows_windows_freezes_holidays_and_releases(board) -> None:
    dsn, settings = board
    html = _page(dsn, settings, pages.calendar_html, now=NOW, month="2026-12")
    assert "December 2026" in html
    assert "passage-version-DPI" in html  # the configured freeze
    assert "public holiday" in html  # Christmas
    assert "cancelled" in html  # a Tuesday/Thursday window inside the freeze
    assert "R-standard-1" in html and "calendar.ics" in html


def test_chain_cache_reuses_a_fresh_verification_and_refreshes_a_stale_one_in_the_background(board) -> None:
    from gardien.board.audit import ChainCache

    dsn, _ = board
    cache = ChainCache()
    conn = pg.connect(dsn)
    connect = lambda: pg.connect(dsn)  # noqa: E731
    try:
        first, at = cache.get(conn, now=NOW, connect=connect)
        assert first.ok and at == NOW
        ledger.append_event(conn, kind="test.note", actor="auditeur", at=NOW, release_id="R-standard-2")
        conn.commit()
        # within the minute: the same verification, shown with the same time
        assert cache.get(conn, now=NOW + timedelta(seconds=30), connect=connect) == (first, at)
        # stale: this view still shows the old verification (with its old time) and starts a fresh one
        assert cache.get(conn, now=NOW + timedelta(seconds=61), connect=connect) == (first, at)
        cache.wait(60)
        later, later_at = cache.get(conn, now=NOW + timedelta(seconds=62), connect=connect)
        assert later.ok and later.checked == first.checked + 1 and later_at == NOW + timedelta(seconds=61)
    finally:
        conn.close()

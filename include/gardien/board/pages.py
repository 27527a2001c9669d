"""The board's pages as functions of a ledger connection, the settings and the viewer: HTML out (no Airflow)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg2.extensions

from gardien import pg
from gardien.board.audit import ChainCache
from gardien.board.month import month_bounds, month_view
from gardien.board.queries import ReleaseRow, list_releases
from gardien.board.render import render
from gardien.board.settings import BoardSettings
from gardien.board.views import (
    AirflowFacts,
    Viewer,
    release_page,
    review_available,
    review_page,
    visible,
)
from gardien.calendar import to_ics
from gardien.errors import LedgerError
from gardien.ledger.releases import RELEASE_STATUSES
from gardien.report import ReleaseReport, load_report

PAGE_SIZE = 100
CHAIN = ChainCache()  # one per process: the API server's worker threads share it


class NotFound(LedgerError):
    """The ledger does not know the release (the page answers 404)."""


def releases_html(
    conn: psycopg2.extensions.connection,
    *,
    settings: BoardSettings,
    viewer: Viewer,
    root: str,
    status: str | None = None,
    environment: str | None = None,
    q: str | None = None,
    page: int = 1,
) -> str:
    page = max(1, page)
    status = status if status in RELEASE_STATUSES else None
    environment = environment if environment in settings.environments else None
    # One row more than a page tells whether an older page exists.
    rows = list_releases(
        conn,
        status=status,
        environment=environment,
        release_id=(q or "").strip() or None,
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )
    return render(
        "releases.html",
        page="releases",
        root=root,
        viewer=viewer,
        rows=visible(rows[:PAGE_SIZE], viewer),
        page_number=page,
        older=len(rows) > PAGE_SIZE,
        statuses=RELEASE_STATUSES,
        environments=settings.environments,
        status=status or "",
        environment=environment or "",
        q=q or "",
    )


def parse_month(text: str | None, now: dt.datetime) -> tuple[int, int]:
    """``YYYY-MM`` (the current month when absent or malformed)."""
    try:
        year, month = (int(x) for x in (text or "").split("-", 1))
        if 1 <= month <= 12 and 2000 <= year <= 2200:
            return year, month
    except ValueError:
        pass
    return now.year, now.month


def calendar_html(
    conn: psycopg2.extensions.connection,
    *,
    settings: BoardSettings,
    viewer: Viewer,
    root: str,
    now: dt.datetime,
    month: str | None = None,
) -> str:
    if settings.calendar is None:
        return render(
            "refused.html",
            title="No calendar",
            message="The configuration has no calendar section.",
            login=None,
        )
    year, mon = parse_month(month, now.astimezone(settings.calendar.tz))
    start, end = month_bounds(settings.calendar, year, mon)
    rows = visible(list_releases(conn, start=start, end=end, limit=100_000), viewer)
    return render(
        "calendar.html",
        page="calendar",
        root=root,
        viewer=viewer,
        month=month_view(settings.calendar, year=year, month=mon, releases=rows, now=now),
        upcoming=settings.calendar.upcoming(now, 5),
    )


def calendar_ics(settings: BoardSettings, *, now: dt.datetime) -> str:
    if settings.calendar is None:
        raise NotFound("the configuration has no calendar section")
    return to_ics(settings.calendar, now=now)


def release_row(conn: psycopg2.extensions.connection, release_id: str) -> ReleaseRow:
    """The release's list row (its Airflow run); NotFound when the ledger does not know it."""
    rows = list_releases(conn, release_id=release_id, limit=1)
    if not rows:
        raise NotFound(f"unknown release {release_id!r}: no such release in the ledger")
    return rows[0]


def _report(
    conn: psycopg2.extensions.connection, row: ReleaseRow, settings: BoardSettings, now: dt.datetime
) -> tuple[ReleaseReport, dt.datetime]:
    chain, verified_at = CHAIN.get(conn, now=now, connect=lambda: pg.connect(settings.ledger_dsn))
    path = settings.path_of_dag(row.dag_id)
    stages = {env: s.name for s in path.stages for env in s.targets} if path else None
    report = load_report(
        conn,
        row.id,
        generated_at=now,
        artifacts_dir=None,
        link_from=Path("."),  # no artifact folder: every href comes from the ledger
        path_name=path.name if path else None,
        stages=stages,
        chain=chain,
    )
    return report, verified_at


def release_html(
    conn: psycopg2.extensions.connection,
    *,
    row: ReleaseRow,
    settings: BoardSettings,
    viewer: Viewer,
    facts: AirflowFacts,
    root: str,
    now: dt.datetime,
) -> str:
    report, verified_at = _report(conn, row, settings, now)
    page = release_page(report, row=row, settings=settings, facts=facts, viewer=viewer)
    return render("release.html", page="release", root=root, viewer=viewer, p=page, chain_at=verified_at)


def review_html(
    conn: psycopg2.extensions.connection,
    *,
    row: ReleaseRow,
    settings: BoardSettings,
    viewer: Viewer,
    facts: AirflowFacts,
    root: str,
    now: dt.datetime,
    seat: str | None,
) -> str | None:
    """The review page, or None while the current changeset has not passed validation."""
    report, _ = _report(conn, row, settings, now)
    if not review_available(report):
        return None
    view = review_page(report, row=row, settings=settings, facts=facts, viewer=viewer, seat=seat)
    return render("review.html", page="review", root=root, viewer=viewer, v=view)

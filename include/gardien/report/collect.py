"""The report's shell: read the release from the ledger (and its artifact folder), write report.json and .html."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import psycopg2.extensions

from gardien import ledger
from gardien.changeset import Changeset
from gardien.errors import ChangesetError, LedgerError
from gardien.report.artifacts import read_artifacts
from gardien.report.build import ROW_LIMIT, build_report
from gardien.report.hints import CatalogHints
from gardien.report.html import render_html
from gardien.report.model import ReleaseReport


def load_report(
    conn: psycopg2.extensions.connection,
    release_id: str,
    *,
    generated_at: datetime,
    artifacts_dir: Path | None,
    link_from: Path,
    path_name: str | None = None,
    stages: Mapping[str, str] | None = None,
    row_limit: int = ROW_LIMIT,
    hints: CatalogHints | None = None,
) -> ReleaseReport:
    """Read everything about ``release_id`` in the caller's transaction (reads only) and build its report.

    Raises LedgerError when the ledger does not know the release. A changeset altered in the ledger or
    a broken chain does not raise: the report says so loudly, since that is what an auditor needs to see.
    Hrefs to artifacts are relative to ``link_from``, where the report will be written.
    """
    history = ledger.release_history(conn, release_id)
    changeset, problem = _changeset(conn, history.release.changeset_id)
    chain = ledger.verify_chain(conn)
    return build_report(
        history,
        status_mismatches=ledger.status_mismatches(conn, release_id=release_id),
        changeset=changeset,
        changeset_problem=problem,
        chain=chain,
        artifacts=read_artifacts(artifacts_dir, link_from=link_from),
        generated_at=generated_at,
        path_name=path_name,
        stages=stages,
        row_limit=row_limit,
        hints=hints,
    )


def _changeset(
    conn: psycopg2.extensions.connection, changeset_id: str | None
) -> tuple[Changeset | None, str | None]:
    if changeset_id is None:
        return None, None
    # A savepoint keeps the transaction usable for the rest of the report if this read fails.
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT gardien_report_changeset")
    try:
        body = ledger.get_changeset(conn, changeset_id)
        return Changeset.from_body_json(body, expected_id=changeset_id), None
    except (LedgerError, ChangesetError) as exc:
        with conn.cursor() as cur:
            cur.execute("ROLLBACK TO SAVEPOINT gardien_report_changeset")
        return None, str(exc)
    finally:
        with conn.cursor() as cur:
            cur.execute("RELEASE SAVEPOINT gardien_report_changeset")


def write_files(report: ReleaseReport, out_dir: Path) -> Path:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (created), each atomically; the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "report.json", report.to_json() + "\n")
    html_path = out_dir / "report.html"
    _atomic_write(html_path, render_html(report))
    return html_path


def _atomic_write(path: Path, text: str) -> None:
    # A reader (a browser, the CAB's archiver) never sees half a report, even if a retried task rewrites it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

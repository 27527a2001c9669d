"""The release report a change advisory board files, as JSON and self-contained HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gardien.report.artifacts import Artifacts, read_artifacts
from gardien.report.build import build_report
from gardien.report.collect import load_report, write_files
from gardien.report.hints import CatalogHints
from gardien.report.html import render_html
from gardien.report.model import FORMAT, ReleaseReport

if TYPE_CHECKING:
    from gardien.release.service import ReleaseService


def write_report(
    svc: ReleaseService, release_id: str, *, now: datetime | None = None, out_dir: Path | None = None
) -> Path:
    """Write ``report.json`` and ``report.html`` for ``release_id`` into its artifact folder (or ``out_dir``).

    Returns the HTML path. ``now`` (the report's "generated at") defaults to the wall clock: this is the
    shell, called by the release DAG's close task. Raises LedgerError for a release the ledger does not know.
    """
    folder = svc.release_dir(release_id)
    target = out_dir or folder
    stages = {env: stage.name for stage in svc.path.stages for env in stage.targets}
    with svc.ledger() as conn:
        report = load_report(
            conn,
            release_id,
            generated_at=now or datetime.now(UTC),
            artifacts_dir=folder,
            link_from=target,
            path_name=svc.path.name,
            stages=stages,
            hints=CatalogHints.from_catalog(svc.config.catalog),
        )
    return write_files(report, target)


__all__ = [
    "FORMAT",
    "Artifacts",
    "CatalogHints",
    "ReleaseReport",
    "build_report",
    "load_report",
    "read_artifacts",
    "render_html",
    "write_files",
    "write_report",
]

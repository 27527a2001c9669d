"""``gardien report RELEASE``: write the release report (JSON + HTML) from the ledger, artifacts if present."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from gardien import ledger, pg
from gardien.cli.audit import DEFAULT_CONFIG, resolve_ledger_dsn
from gardien.config import load_config
from gardien.errors import ConfigurationError, LedgerError, UsageError
from gardien.release.paths import ReleasePath, parse_release_paths
from gardien.release.service import state_dir
from gardien.report import CatalogHints, ReleaseReport, load_report, write_files


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the ``gardien`` app."""
    app.command("report")(report)


def report(
    release: Annotated[str, typer.Argument(help="Release id, e.g. R-2026-11-28-001.")],
    config: Annotated[
        Path, typer.Option("-c", "--config", envvar="GARDIEN_CONFIG", help="Gardien YAML configuration.")
    ] = Path(DEFAULT_CONFIG),
    dsn: Annotated[
        str | None, typer.Option("--dsn", help="Ledger database URI (overrides the config's ledger section).")
    ] = None,
    path: Annotated[
        str | None,
        typer.Option("--path", help="Release path of the release (default: the one the ledger recorded)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Directory for report.json and report.html (default: the release's artifact folder).",
        ),
    ] = None,
    rows: Annotated[
        int, typer.Option("--rows", min=1, help="Rows shown per table and kind before '... and N more'.")
    ] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report's JSON instead of a summary.")
    ] = False,
) -> None:
    """Write RELEASE's report. Works from the ledger alone (an auditor's machine); the artifact folder, when
    present, adds drift notes and Data Docs links. Exit 11 if the release is unknown, or, after writing the
    report, if the audit chain is broken or the changeset was altered in the ledger."""
    conn = pg.connect(resolve_ledger_dsn(dsn, config), application_name="gardien-report")
    try:
        # The report only reads: a read-only transaction guarantees it, even with a writer's credentials.
        conn.set_session(readonly=True)
        recorded = ledger.get_release(conn, release)
        release_path = _release_path(config, explicit=path, recorded=recorded.path)
        folder = state_dir() / "releases" / release
        out_dir = (output or folder).resolve()
        built = load_report(
            conn,
            release,
            generated_at=datetime.now(UTC),
            artifacts_dir=folder,
            link_from=out_dir,
            path_name=release_path.name if release_path else path,
            stages={e: s.name for s in release_path.stages for e in s.targets} if release_path else None,
            row_limit=rows,
            hints=_hints(config),
        )
    finally:
        conn.rollback()
        conn.close()
    html_path = write_files(built, out_dir)
    if as_json:
        typer.echo(built.to_json())
    else:
        _summary(built, html_path)
    _fail_if_untrustworthy(built, html_path)


def _release_path(config: Path, *, explicit: str | None, recorded: tuple[str, ...]) -> ReleasePath | None:
    """The release path from the configuration, if it can be read; an auditor may have only the ledger."""
    name = explicit or (recorded[0] if recorded else None)
    try:
        cfg = load_config(config)
        paths = parse_release_paths(
            cfg.release_paths, environments=cfg.environments, source=cfg.source_path or str(config)
        )
    except ConfigurationError:
        if explicit:
            raise
        return None
    if explicit and explicit not in paths:
        known = ", ".join(sorted(paths)) or "(none)"
        raise UsageError(f"--path {explicit}: no such release path in {config}; known: {known}.")
    if explicit and recorded and recorded[0] in paths and recorded[0] != explicit:
        raise UsageError(
            f"--path {explicit}: the ledger records this release on path {recorded[0]!r}; "
            f"omit --path or pass --path {recorded[0]}."
        )
    return paths.get(name) if name else None


def _hints(config: Path) -> CatalogHints | None:
    """List fields, soft-delete and retire tables from the catalog, if the configuration can be read."""
    try:
        return CatalogHints.from_catalog(load_config(config).catalog)
    except ConfigurationError:
        return None


def _summary(built: ReleaseReport, html_path: Path) -> None:
    o = built.outcome
    typer.echo(f"report: {html_path}")
    typer.echo(f"json:   {html_path.with_name('report.json')}")
    typer.echo(f"outcome: {o.outcome}{'' if o.closed else ' (not closed)'} — {o.detail}")
    typer.echo(f"sources: {'; '.join(built.sources)}")
    chain = "intact" if built.chain.ok else "BROKEN"
    typer.echo(
        f"audit chain: {chain} ({built.chain.checked} events checked); head {built.chain.head_seq}:"
        f"{built.chain.head_hash}"
    )
    for alert in built.alerts:
        typer.secho(
            f"{alert.level.upper()}: {alert.text}",
            fg=typer.colors.RED if alert.level == "danger" else typer.colors.YELLOW,
        )


def _fail_if_untrustworthy(built: ReleaseReport, html_path: Path) -> None:
    # Raised after writing: the report itself is the evidence the auditor needs.
    if not built.chain.ok:
        raise LedgerError(f"{built.chain.broken}. The report was written to {html_path} and says so.")
    if built.chain.status_mismatches:
        raise LedgerError(
            f"{built.chain.status_mismatches[0]}. The report was written to {html_path} and says so."
        )
    if built.changeset.problem and built.changeset.id:
        raise LedgerError(f"{built.changeset.problem} The report was written to {html_path} and says so.")

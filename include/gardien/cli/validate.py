"""``gardien validate``: run the validation gate on a target's state, a rehearsed changeset, or after deploy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
from pathlib import Path
from typing import Annotated

import typer

from gardien.config import DEFAULT_CONFIG_PATH, load_config, resolve_environment
from gardien.errors import UsageError, ValidationFailedError

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "-c", "--config", envvar="GARDIEN_CONFIG", help=f"Gardien YAML configuration [{DEFAULT_CONFIG_PATH}]."
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``validate`` to the ``gardien`` app."""
    app.command("validate")(validate_cmd)


def validate_cmd(
    target: Annotated[str, typer.Argument(help="Target environment name or libpq URI.")],
    changeset: Annotated[
        Path | None, typer.Option("--changeset", help="Rehearse this changeset on a scratch copy of TARGET.")
    ] = None,
    data_docs: Annotated[
        Path | None,
        typer.Option(
            "--data-docs", help="Write the validation page (index.html, self-contained, offline) here."
        ),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Post-deploy verification: also run the smoke probes.")
    ] = False,
    list_only: Annotated[
        bool,
        typer.Option("--list", help="List the expectations that would run (generated + suites); run none."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOpt = None,
    accept_blast_radius: Annotated[
        str | None,
        typer.Option(
            "--accept-blast-radius",
            help="With --changeset: tables (comma-separated, or *) whose blast radius is accepted for this check.",
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why the blast radius is accepted.")] = None,
) -> None:
    """Validate TARGET's managed scope (or, with --changeset, the state TARGET would have). Exit 7 on failure."""
    from gardien import pg
    from gardien.validation import (
        parse_probes,
        parse_validation_settings,
        rehearse,
        validate_state,
        verify_target,
    )

    if changeset is not None and verify:
        raise UsageError(
            "--changeset rehearses a release before deployment and --verify checks after it: pick one."
        )
    cfg = load_config(config)
    env = resolve_environment(cfg, target)
    base_dir = Path(cfg.source_path).parent if cfg.source_path else Path.cwd()
    settings = parse_validation_settings(cfg.validation, base_dir=base_dir)
    if accept_blast_radius:
        tables = frozenset(t.strip() for t in accept_blast_radius.split(",") if t.strip())
        blast = settings.blast_radius.accept(tables, by=getpass.getuser(), reason=reason or "")
        settings = dataclasses.replace(settings, blast_radius=blast)
    if list_only:
        _list(env.dsn, catalog=cfg.catalog, settings=settings, as_json=as_json)
        return
    if changeset is not None:
        from gardien.changeset import read_changeset
        from gardien.validation.bridge import engine_apply, summary_from_changeset

        cs = read_changeset(changeset)
        now = dt.datetime.now(dt.UTC)
        report = rehearse(
            env.dsn,
            admin_dsn=pg.dsn_for_database(env.dsn, "postgres"),
            catalog=cfg.catalog,
            apply_fn=engine_apply(cs, catalog=cfg.catalog, applied_at=now),
            label=env.name,
            now=now,
            settings=settings,
            summary=summary_from_changeset(cs, catalog=cfg.catalog),
            target_name=env.name,
            data_docs_dir=data_docs,
        ).report
    elif verify:
        report = verify_target(
            env.dsn,
            catalog=cfg.catalog,
            settings=settings,
            probes=parse_probes(cfg.smoke_probes),
            target=env.name,
            data_docs_dir=data_docs,
        )
    else:
        report = validate_state(
            env.dsn, catalog=cfg.catalog, settings=settings, target=env.name, data_docs_dir=data_docs
        )
    if as_json:
        typer.echo(report.to_json())
    else:
        _print(report)
    if not report.ok:
        what = "could not run" if report.errors and not report.failed else "failed"
        raise ValidationFailedError(f"validation {what}: {report.summary()}")


def _list(dsn: str, *, catalog, settings, as_json: bool) -> None:  # noqa: ANN001 - lazily imported types
    import json

    from gardien import pg
    from gardien.validation.gate import collect_specs

    conn = pg.connect(dsn, application_name="gardien-validate")
    try:
        _, specs, _ = collect_specs(conn, catalog=catalog, settings=settings)
    finally:
        conn.close()
    rows = [
        {
            "name": s.name,
            "table": s.table,
            "kind": s.kind,
            "suite": s.suite,
            "columns": list(s.columns),
            **s.params,
        }
        for s in specs
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['suite']:<24} {row['kind']:<18} {row['name']}")


def _print(report) -> None:  # noqa: ANN001 - ValidationReport, imported lazily
    typer.echo(report.summary())
    for note in report.notes:
        typer.echo(f"  note: {note}")
    for result in report.expectations:
        if result.status == "passed":
            continue
        typer.echo(f"  {result.status.upper()}: {result.name}: {result.message}")
        for example in result.examples:
            typer.echo("      " + ", ".join(f"{k}={v!r}" for k, v in example.items()))
    if report.data_docs_path:
        typer.echo(f"  Validation page: {report.data_docs_path}")

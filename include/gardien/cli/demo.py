"""``gardien demo``: build (or find up to date) the demo hospital's qualif, preprod and prod databases."""

from __future__ import annotations

import json
import sys

import typer

from gardien import pg
from gardien.errors import GardienError, UsageError

demo_app = typer.Typer(
    help="The demo hospital configuration: three environments as databases on one PostgreSQL server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_ADMIN_HELP = "DSN of a maintenance database on the server (default: GARDIEN_PG_DSN, else 127.0.0.1:5432)."


def parse_bench_changes(text: str | None) -> tuple[int, int, int] | None:
    """``"10000,5000,1000"`` → (updates, inserts, deletes); None stays None."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace(":", ",").split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise UsageError(
            f"--bench-changes {text!r} is not three counts: write UPDATES,INSERTS,DELETES, e.g. 10000,5000,1000."
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


def _short(value: str | None, width: int = 48) -> str:
    text = repr(value)
    return text if len(text) <= width else f"{text[: width // 2 - 2]}...{text[-(width // 2 - 1) :]}"


@demo_app.command("build")
def build(
    prefix: str = typer.Option(
        "gardien_", help="Database name prefix: PREFIXqualif, PREFIXpreprod, PREFIXprod."
    ),
    scale: int = typer.Option(1, help="Size factor: 500 x SCALE protocol lines (2000 gives 1,000,000)."),
    seed: int = typer.Option(42, help="Seed of the generated content (same seed, same content)."),
    bench_changes: str | None = typer.Option(
        None,
        "--bench-changes",
        metavar="U,I,D",
        help="Plant exactly U updates, I inserts, D deletes of protocol lines in qualif instead of the "
        "realistic change set (benchmarks).",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the databases are up to date."),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Also rebuild a database whose content changed since it was built (e.g. a release was "
        "applied to it); costs about 2 s per million rows.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the outcome as JSON (progress goes to stderr)."
    ),
    admin_dsn: str | None = typer.Option(None, "--admin-dsn", help=_ADMIN_HELP),
    example: str = typer.Option(
        "hospital",
        "--example",
        help="hospital (the demo hospital) or openmrs (an OpenMRS-shaped qualif and prod: PREFIXopenmrs_qualif, "
        "PREFIXopenmrs_prod; configuration include/config/openmrs.yaml).",
    ),
) -> None:
    """Create the three demo databases; a re-run with the same parameters is a quick no-op."""
    from gardien.demo.generator import build_environments

    if example == "openmrs":
        _build_openmrs(admin_dsn or pg.admin_dsn(), prefix=prefix, scale=scale, as_json=as_json)
        return
    if example != "hospital":
        raise UsageError(f"--example {example!r} is not an example: use hospital or openmrs.")

    def progress(line: str) -> None:
        typer.echo(line, err=as_json)

    result = build_environments(
        admin_dsn or pg.admin_dsn(),
        prefix=prefix,
        scale=scale,
        seed=seed,
        bench_changes=parse_bench_changes(bench_changes),
        force=force,
        verify=verify,
        progress=progress,
    )
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return
    typer.echo("")
    for env in result.environments:
        typer.echo(
            f"{env.environment:8} {env.database:24} {env.status:11} {sum(env.row_counts.values()):>10,} rows"
        )
    typer.echo(f"\nqualif holds {len(result.changes):,} pending changes over prod:")
    if result.bench_changes is None:
        for change in result.changes:
            where = "/".join(change.key)
            field = (
                f".{change.field}: {_short(change.before)} -> {_short(change.after)}" if change.field else ""
            )
            typer.echo(f"  {change.kind:11} {change.table}[{where}]{field}  ({change.description})")
    else:
        for label, count in result.change_summary().items():
            typer.echo(f"  {count:>8,}  {label}")


def _build_openmrs(admin: str, *, prefix: str, scale: int, as_json: bool) -> None:
    from gardien.demo.openmrs.generator import build as build_openmrs

    built = build_openmrs(
        admin, prefix=f"{prefix}openmrs_", scale=scale, progress=lambda line: typer.echo(line, err=as_json)
    )
    if as_json:
        typer.echo(json.dumps({"qualif": pg.redact(built.qualif), "prod": pg.redact(built.prod)}))
        return
    typer.echo(
        "\nqualif holds the pending changes; try:\n"
        "  gardien diff qualif prod -c include/config/openmrs.yaml -o cs.json && gardien show cs.json"
    )


@demo_app.command("drop")
def drop(
    prefix: str = typer.Option("gardien_", help="Database name prefix of the environments to drop."),
    admin_dsn: str | None = typer.Option(None, "--admin-dsn", help=_ADMIN_HELP),
) -> None:
    """Drop the three demo databases (and any half-built leftover)."""
    from gardien.demo.generator import drop_environments

    dropped = drop_environments(admin_dsn or pg.admin_dsn(), prefix=prefix)
    typer.echo(
        "dropped: " + (", ".join(dropped) if dropped else "nothing (no demo database with this prefix)")
    )


def register(app: typer.Typer) -> None:
    """Add ``gardien demo ...`` to the main command."""
    app.add_typer(demo_app, name="demo")


def main(argv: list[str] | None = None) -> None:
    """``python -m gardien.demo build ...``: the demo commands alone, with Gardien's error handling."""
    try:
        # Standalone mode lets Typer report usage errors itself (exit 2); only our own errors reach here.
        demo_app(args=argv, prog_name="python -m gardien.demo", standalone_mode=True)
    except GardienError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)

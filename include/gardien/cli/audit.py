"""``gardien audit``: create the ledger schema, verify its hash chain, print its events."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import psycopg2.extensions
import typer
import yaml

from gardien import pg
from gardien.errors import ConfigurationError, LedgerError
from gardien.ledger import Anchor, Event, ensure_schema, get_release, list_events, verify_chain

DEFAULT_CONFIG = "include/config/gardien.yaml"

audit_app = typer.Typer(
    name="audit",
    help="The tamper-evident audit ledger: init, verify, log.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path, typer.Option("-c", "--config", envvar="GARDIEN_CONFIG", help="Gardien YAML configuration.")
]
DsnOption = Annotated[
    str | None, typer.Option("--dsn", help="Ledger database URI (overrides the config's ledger section).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group to the ``gardien`` app."""
    app.add_typer(audit_app, name="audit")


def resolve_ledger_dsn(
    dsn: str | None, config: Path | None, *, environ: Mapping[str, str] | None = None
) -> str:
    """``--dsn`` if given, else the config's ``ledger: {dsn, database?}`` with ``${VAR}`` substituted.

    Only the ledger section is read, so an auditor can verify even when other sections are broken.
    """
    if dsn:
        return dsn
    if config is None:
        raise ConfigurationError("no ledger DSN: pass --dsn URI or -c CONFIG with a ledger section.")
    from gardien.config import substitute

    env = os.environ if environ is None else environ
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"{config}: cannot read the configuration ({exc.strerror}). Pass -c PATH or --dsn URI."
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{config}: not valid YAML: {exc}. Fix the syntax at that line.") from exc
    section = data.get("ledger") if isinstance(data, dict) else None
    if not isinstance(section, dict) or not section.get("dsn"):
        raise ConfigurationError(
            f"{config}: ledger.dsn is missing. Add `ledger: {{dsn: ..., database: gardien_ledger}}` "
            "or pass --dsn URI."
        )
    section = substitute(section, environ=env, source=str(config), where="ledger")
    database = section.get("database")
    return pg.dsn_for_database(section["dsn"], database) if database else section["dsn"]


@audit_app.command("init")
def init(config: ConfigOption = Path(DEFAULT_CONFIG), dsn: DsnOption = None) -> None:
    """Create the ledger database if missing, its schema, triggers and writer role (idempotent)."""
    target = resolve_ledger_dsn(dsn, config)
    name = psycopg2.extensions.parse_dsn(target).get("dbname")
    maintenance = pg.dsn_for_database(target, "postgres")
    if name and not pg.database_exists(maintenance, name):
        pg.create_database(maintenance, name)
        typer.echo(f"created database {name}")
    conn = pg.connect(target, application_name="gardien-audit")
    try:
        ensure_schema(conn)
        conn.commit()
    finally:
        conn.close()
    typer.echo(f"ledger schema ready in {pg.redact(target)}")


@audit_app.command("verify")
def verify(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    dsn: DsnOption = None,
    anchor: Annotated[
        str | None,
        typer.Option("--anchor", help="SEQ:HASH published earlier; it must still hold (detects a cut tail)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute the hash chain; exit 0 when intact, 11 naming the first broken link otherwise."""
    expected = Anchor.parse(anchor) if anchor else None
    conn = pg.connect(resolve_ledger_dsn(dsn, config), application_name="gardien-audit")
    try:
        report = verify_chain(conn, anchor=expected)
    finally:
        conn.close()
    broken = report.first_broken
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "head_seq": report.head_seq,
                    "head_hash": report.head_hash,
                    "first_broken": None
                    if broken is None
                    else {
                        "seq": broken.seq,
                        "problem": broken.problem,
                        "expected_hash": broken.expected_hash,
                        "stored_hash": broken.stored_hash,
                        "altered_fields": list(broken.altered_fields),
                    },
                },
                indent=2,
            )
        )
    elif broken is not None:
        typer.echo(f"{report.checked} events verified before the break")
    if broken is not None:
        # Raised, not typer.Exit: main() maps GardienError to its exit code in every mode.
        raise LedgerError(f"{broken.describe()}. Restore the ledger from a trusted backup and investigate.")
    if not as_json:
        typer.echo(f"ledger intact: {report.checked} events; head (publish it, verify later with --anchor):")
        typer.echo(f"{report.head_seq}:{report.head_hash}")


@audit_app.command("log")
def log(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    dsn: DsnOption = None,
    release: Annotated[
        str | None, typer.Option("--release", "-r", help="Only this release's events.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Only the last N events.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the event log (oldest first)."""
    conn = pg.connect(resolve_ledger_dsn(dsn, config), application_name="gardien-audit")
    try:
        if release is not None:
            get_release(conn, release)  # an unknown release is an error, not an empty log
        events = list_events(conn, release_id=release, limit=limit)
    finally:
        conn.close()
    if as_json:
        typer.echo(json.dumps([_event_json(e) for e in events], ensure_ascii=False, indent=2))
        return
    for event in events:
        typer.echo(_event_line(event))


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "kind": event.kind,
        "actor": event.actor,
        "release_id": event.release_id,
        "subject": event.subject,
        "payload": event.payload,
        "reason": event.reason,
        "dag_id": event.airflow.dag_id,
        "run_id": event.airflow.run_id,
        "task_id": event.airflow.task_id,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _event_line(event: Event) -> str:
    parts = [f"{event.seq:>6}", event.at.isoformat(timespec="seconds"), event.kind, event.actor]
    if event.release_id:
        parts.append(event.release_id)
    if event.subject:
        parts.append(event.subject[:12])
    if event.reason:
        parts.append(f"— {event.reason.splitlines()[0]}")
    return "  ".join(parts)

"""``gardien audit``: create the ledger schema, verify its hash chain, print its events."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg2.extensions
import typer
import yaml

from gardien import pg
from gardien.errors import ConfigurationError, LedgerError
from gardien.ledger import (
    Anchor,
    Event,
    approval_mismatches,
    get_release,
    list_events,
    status_mismatches,
    verify_chain,
)

DEFAULT_CONFIG = "include/config/gardien.yaml"

audit_app = typer.Typer(
    name="audit",
    help="The tamper-evident audit ledger: verify, reconcile, log (init: see `gardien ledger migrate`).",
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
    """Same as `gardien ledger migrate` (kept for existing scripts): create or upgrade the ledger schema."""
    from gardien.cli.ledger import migrate_ledger

    state, target, created = migrate_ledger(dsn, config, create_database=True, grant_writer=[])
    if created:
        typer.echo(f"created database {psycopg2.extensions.parse_dsn(target).get('dbname')}")
    typer.echo(f"ledger schema ready (version {state.version}) in {pg.redact(target)}")


@audit_app.command("verify")
def verify(
    config: Annotated[
        Path | None,
        typer.Option(
            "-c",
            "--config",
            envvar="GARDIEN_CONFIG",
            help=f"Gardien YAML configuration [{DEFAULT_CONFIG}; with --dsn alone, target journals are not read].",
        ),
    ] = None,
    dsn: DsnOption = None,
    anchor: Annotated[
        str | None,
        typer.Option("--anchor", help="SEQ:HASH published earlier; it must still hold (detects a cut tail)."),
    ] = None,
    journals: Annotated[
        bool,
        typer.Option(
            "--journals/--no-journals",
            help="Also read each configured target's journal for rows the ledger does not record.",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Recompute the hash chain, check every status against its events and (with the configuration) every
    target journal against the ledger; exit 0 when all hold, 11 naming what does not."""
    expected = Anchor.parse(anchor) if anchor else None
    journals_note = "not checked (--no-journals)"
    if config is None and dsn:
        journals_note = "not checked (no configuration given: pass -c to read the targets' journals)"
        journals = False
    config = config or Path(DEFAULT_CONFIG)
    conn = pg.connect(resolve_ledger_dsn(dsn, config), application_name="gardien-audit")
    try:
        report = verify_chain(conn, anchor=expected)
        mismatches = status_mismatches(conn)
        approval_findings = approval_mismatches(conn)
    finally:
        conn.rollback()
        conn.close()
    unrecorded, journal_note = _journal_findings(config, dsn) if journals else ([], journals_note)
    broken = report.first_broken
    disagreeing = [m for m in approval_findings if m.counts_as_problem]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok and not mismatches and not unrecorded and not disagreeing,
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
                    "status_mismatches": [m.to_dict() for m in mismatches],
                    "approval_mismatches": [m.to_dict() for m in approval_findings],
                    "unrecorded_journal_rows": [f.to_dict() for f in unrecorded],
                    "journals": journal_note,
                },
                indent=2,
            )
        )
    else:
        if broken is not None:
            typer.echo(f"{report.checked} events verified before the break")
        for m in mismatches:
            typer.echo(f"STATUS MISMATCH: {m.describe()}")
        for a in approval_findings:
            label = "APPROVAL MISMATCH" if a.counts_as_problem else "ANSWER NOT COUNTED"
            typer.echo(f"{label}: {a.describe()}")
        for f in unrecorded:
            typer.echo(f"NOT IN THE LEDGER: {f.describe()}")
        typer.echo(f"target journals: {journal_note}")
    problems = []
    if broken is not None:
        problems.append(f"{broken.describe()}. Restore the ledger from a trusted backup and investigate")
    if mismatches:
        problems.append(
            f"{len(mismatches)} record(s) whose status does not match their chained events (first: "
            f"{mismatches[0].describe()})"
        )
    if disagreeing:
        problems.append(
            f"{len(disagreeing)} approval(s) or answer(s) where the recorded approvals and the answers people gave "
            f"disagree (first: {disagreeing[0].describe()})"
        )
    if unrecorded:
        problems.append(
            f"{len(unrecorded)} target journal row(s) without a ledger record (first: {unrecorded[0].describe()}); "
            "run `gardien audit reconcile` to record them"
        )
    if problems:
        # Raised, not typer.Exit: main() maps GardienError to its exit code in every mode.
        raise LedgerError("; ".join(problems) + ".")
    if not as_json:
        typer.echo(
            f"ledger intact: {report.checked} events; statuses match their events; approvals match the answers given"
        )
        typer.echo("head (publish it, verify later with --anchor):")
        typer.echo(f"{report.head_seq}:{report.head_hash}")


def _journal_findings(config: Path, dsn: str | None) -> tuple[list[Any], str]:
    """Journal rows the ledger does not record, over the configuration's environments (read only)."""
    from gardien.config import load_config
    from gardien.release.reconcile import reconcile
    from gardien.release.service import StepContext

    try:
        cfg = load_config(config)
    except ConfigurationError as exc:
        return [], f"not checked: the configuration cannot be read ({exc})"
    if dsn:
        from gardien.config import LedgerConfig

        cfg = cfg.model_copy(update={"ledger": LedgerConfig(dsn=dsn)})
    findings = reconcile(cfg, ctx=StepContext(actor="gardien-audit", now=datetime.now(UTC)), record=False)
    unreachable = [f.environment for f in findings if f.action == "unreachable"]
    missing = [f for f in findings if f.action != "unreachable"]
    note = f"{len(cfg.environments) - len(unreachable)} of {len(cfg.environments)} checked"
    if unreachable:
        note += f" ({', '.join(unreachable)} unreachable)"
    return missing, note


@audit_app.command("reconcile")
def reconcile_cmd(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    environment: Annotated[
        list[str] | None, typer.Option("--environment", "-e", help="Only this environment (repeatable).")
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option("--actor", envvar="GARDIEN_ACTOR", help="Who reconciles (default: the login name)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Record in the ledger every target journal row it does not record (from its intent, or as an alert when
    nothing explains it). Exit 0 when everything is now recorded, 11 when a row had no known origin, 4 when a
    target or the ledger was unreachable."""
    from gardien.config import load_config
    from gardien.errors import EnvironmentUnavailableError
    from gardien.release.reconcile import reconcile
    from gardien.release.service import StepContext

    cfg = load_config(config)
    from gardien.release.manual import login_name

    who = actor or login_name()
    findings = reconcile(cfg, ctx=StepContext(actor=who, now=datetime.now(UTC)), environments=environment)
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in findings], ensure_ascii=False, indent=2))
    else:
        for f in findings:
            typer.echo(f"{f.action.upper()}: {f.describe()}")
        if not findings:
            typer.echo("every target journal row has its ledger record")
    unreachable = [f for f in findings if f.action == "unreachable"]
    if unreachable:
        raise EnvironmentUnavailableError(
            f"{len(unreachable)} environment(s) not reconciled: {unreachable[0].detail}"
        )
    alerted = [f for f in findings if f.action == "alerted"]
    if alerted:
        raise LedgerError(
            f"{len(alerted)} journal row(s) had no known origin and were recorded as alerts "
            f"(first: {alerted[0].describe()})."
        )


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

"""``gardien ledger migrate``: create or upgrade the ledger schema, as its owner, once per schema version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import psycopg2.extensions
import typer
from psycopg2 import sql

from gardien import pg
from gardien.errors import EnvironmentUnavailableError, LedgerError
from gardien.ledger import WRITER_ROLE, SchemaState, migrate

ledger_app = typer.Typer(
    name="ledger",
    help="Administer the audit ledger's schema (owner credentials; release steps only need the writer role).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``ledger`` command group to the ``gardien`` app."""
    app.add_typer(ledger_app, name="ledger")


@ledger_app.command("migrate")
def migrate_cmd(
    config: Annotated[
        Path | None,
        typer.Option(
            "-c", "--config", envvar="GARDIEN_CONFIG", help="Gardien YAML configuration (ledger section)."
        ),
    ] = None,
    dsn: Annotated[
        str | None,
        typer.Option(
            "--dsn",
            envvar="GARDIEN_LEDGER_OWNER_DSN",
            help="Ledger database URI with the OWNER's role (overrides the config's ledger section, whose DSN "
            "should name the writer).",
        ),
    ] = None,
    grant_writer: Annotated[
        list[str] | None,
        typer.Option(
            "--grant-writer",
            help=f"Existing LOGIN role to make a member of {WRITER_ROLE} (repeatable).",
        ),
    ] = None,
    create_database: Annotated[
        bool,
        typer.Option("--create-database/--no-create-database", help="Create the ledger database if missing."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Create or upgrade the ledger schema, its triggers and the writer role's grants. Idempotent: a ledger
    already at this version is left untouched. Exit 11 if the role may not run DDL, 4 if unreachable."""
    state, target, created = migrate_ledger(
        dsn, config, create_database=create_database, grant_writer=grant_writer or []
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "version": state.version,
                    "digest": state.digest,
                    "applied": state.applied,
                    "database_created": created,
                    "previous_version": state.previous_version,
                    "ledger": pg.redact(target),
                    "writers_granted": list(grant_writer or []),
                }
            )
        )
        return
    if created:
        typer.echo(f"created database {psycopg2.extensions.parse_dsn(target).get('dbname')}")
    if state.applied:
        before = f"version {state.previous_version}" if state.previous_version else "no schema"
        typer.echo(f"ledger schema migrated from {before} to version {state.version} in {pg.redact(target)}")
    else:
        typer.echo(f"ledger schema already at version {state.version} in {pg.redact(target)}: nothing to do")
    for role in grant_writer or []:
        typer.echo(f"{role} is a member of {WRITER_ROLE}")


def migrate_ledger(
    dsn: str | None, config: Path | None, *, create_database: bool, grant_writer: list[str]
) -> tuple[SchemaState, str, bool]:
    """Resolve the owner's DSN, create the database if asked, migrate and grant, in one transaction.

    Returns the schema state, the DSN used and whether the database was created."""
    from gardien.cli.audit import DEFAULT_CONFIG, resolve_ledger_dsn

    target = resolve_ledger_dsn(dsn, config or Path(DEFAULT_CONFIG))
    name = psycopg2.extensions.parse_dsn(target).get("dbname")
    created = False
    if create_database and name:
        maintenance = pg.dsn_for_database(target, "postgres")
        try:
            exists = pg.database_exists(maintenance, name)
        except EnvironmentUnavailableError:
            exists = True  # no maintenance database for this role: connect to the ledger itself below
        if not exists:
            pg.create_database(maintenance, name)
            created = True
    conn = pg.connect(target, application_name="gardien ledger migrate")
    try:
        state = migrate(conn)
        with conn.cursor() as cur:
            for role in grant_writer:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cur.fetchone() is None:
                    raise LedgerError(
                        f"--grant-writer {role}: no such role. Create it first (CREATE ROLE {role} LOGIN "
                        "PASSWORD '...'); nothing was changed."
                    )
                cur.execute(
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(WRITER_ROLE), sql.Identifier(role))
                )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return state, target, created

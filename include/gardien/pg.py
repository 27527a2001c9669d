"""PostgreSQL connection helpers: DSN handling, connecting with clear errors, creating databases."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from gardien.errors import ConfigurationError, EnvironmentUnavailableError, GardienError
from gardien.redact import redact_text, register_dsn

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_DBNAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def admin_dsn(environ: dict[str, str] | None = None) -> str:
    """The DSN of a maintenance database on the server Gardien's demo and tests use.

    ``GARDIEN_PG_DSN`` wins; otherwise the local default (127.0.0.1:5432, trust auth).
    """
    env = os.environ if environ is None else environ
    return env.get("GARDIEN_PG_DSN") or DEFAULT_ADMIN_DSN


def dsn_for_database(dsn: str, dbname: str) -> str:
    """Return ``dsn`` pointing at database ``dbname`` (URI or key=value form accepted)."""
    register_dsn(dsn)
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        raise ConfigurationError(
            f"invalid PostgreSQL DSN {redact(dsn)!r}: {redact(str(exc).strip())}. "
            "Use a libpq URI such as postgresql://user@host:5432/dbname."
        ) from exc
    params["dbname"] = dbname
    return psycopg2.extensions.make_dsn(**params)


def check_dsn(
    dsn: str, *, where: str, error: type[GardienError] = ConfigurationError, parse: bool = True
) -> str:
    """Return ``dsn`` if libpq can use it as written; else raise ``error`` naming ``where`` and the fix.

    Refused: a DSN libpq cannot parse (bad URI syntax, unknown parameter, bad percent-encoding), a port
    that is not a number from 1 to 65535, and a DSN that names nothing (empty, blank, or a bare
    ``postgresql://``): libpq would fill it in from its defaults and connect to whatever answers there.
    With ``parse`` False, a DSN libpq cannot parse passes (``connect`` refuses it, naming it, when used).
    """
    shown = redact(dsn)
    fix = "Use a libpq URI such as postgresql://user@host:5432/dbname."
    if not dsn.strip():
        raise error(f"{where}: the PostgreSQL DSN is empty; libpq would connect to its defaults. {fix}")
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        if not parse:
            return dsn
        reason = redact_text(str(exc).strip().splitlines()[0].removeprefix("invalid dsn: "))
        raise error(f"{where}: invalid PostgreSQL DSN {shown!r}: {reason}. {fix}") from None
    if not params:
        raise error(f"{where}: the PostgreSQL DSN {shown!r} names no host, database or user. {fix}")
    for port in (params.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise error(
                f"{where}: invalid PostgreSQL DSN {shown!r}: port {port!r} is not a port number. {fix}"
            )
    return dsn


def redact(dsn: str) -> str:
    """Hide a password in a DSN before it is printed or logged (gardien.redact: one redaction for all)."""
    return redact_text(dsn)


def connect(dsn: str, *, application_name: str = "gardien", connect_timeout: int = 10):
    """Open a psycopg2 connection, turning connection failures into a clear, actionable error."""
    register_dsn(dsn)
    try:
        return psycopg2.connect(dsn, application_name=application_name, connect_timeout=connect_timeout)
    except psycopg2.ProgrammingError as exc:  # libpq could not parse the DSN (its message may echo a part)
        raise ConfigurationError(
            f"invalid PostgreSQL DSN {redact(dsn)!r}: {redact(str(exc).strip())}. Percent-encode special "
            "characters of a URI password (% as %25, @ as %40, space as %20) or use the key=value form."
        ) from None
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        first = redact_text(first)
        if first.startswith(("invalid port", "invalid integer value")) or (
            first.startswith("invalid ") and first.split(":")[0].endswith(" value")
        ):
            # libpq refused a parameter's value before reaching any server ("invalid sslmode value")
            raise ConfigurationError(
                f"invalid PostgreSQL DSN {redact(dsn)!r}: {first}. Fix that parameter of the DSN."
            ) from exc
        raise EnvironmentUnavailableError(
            f"cannot connect to PostgreSQL at {redact(dsn)}: {first}. "
            "Check that the server is running and the DSN (host, port, user, database) is right."
        ) from exc


@contextmanager
def autocommit(dsn: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection in autocommit mode (for CREATE/DROP DATABASE), closed on exit."""
    conn = connect(dsn)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def check_dbname(name: str) -> str:
    if not _DBNAME_RE.match(name):
        raise ConfigurationError(
            f"database name {name!r} is not allowed: use lower-case letters, digits and underscores "
            "(at most 63 characters, not starting with a digit)."
        )
    return name


def database_exists(admin: str, name: str) -> bool:
    with autocommit(admin) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cur.fetchone() is not None


def create_database(admin: str, name: str, *, replace: bool = False) -> str:
    """Create database ``name`` on the server of ``admin``; return its DSN."""
    check_dbname(name)
    with autocommit(admin) as conn, conn.cursor() as cur:
        if replace:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cur.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
        )
    return dsn_for_database(admin, name)


def drop_database(admin: str, name: str) -> None:
    check_dbname(name)
    with autocommit(admin) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

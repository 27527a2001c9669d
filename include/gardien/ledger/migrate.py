"""The ledger's schema, versioned: ``migrate`` (the owner, once per version) and ``require_schema`` (every step).

Release steps connect as the writer role, which may not run DDL: they only check that the schema in place is
the one this Gardien was built for, and name the command to run when it is not. The schema text is
``schema.sql`` (every statement idempotent); its SHA-256 identifies exactly what was applied, so a block added to
the file (e.g. a new table at its end) is applied by the next ``gardien ledger migrate`` even if the version
number was not bumped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from gardien.errors import ConfigurationError, LedgerError

# Bump when schema.sql changes in a way older Gardien code cannot work with. 1: the first schema (no
# versions table); 2: statuses derived from chained events, writer role without UPDATE, versions table.
SCHEMA_VERSION = 2
# First 8 bytes of SHA-256 of "gardien.ledger.schema": one migration at a time, cluster-wide.
SCHEMA_LOCK_KEY = 3873811793866040800
MIGRATE_COMMAND = "`gardien ledger migrate` (as the ledger's owner)"


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What a migration found and did. ``applied`` False: the schema was already this version (no-op)."""

    version: int
    digest: str
    applied: bool
    previous_version: int | None = None


def schema_sql() -> str:
    return resources.files("gardien.ledger").joinpath("schema.sql").read_text(encoding="utf-8")


def schema_digest() -> str:
    """SHA-256 (hex) of the schema text this Gardien ships."""
    return hashlib.sha256(schema_sql().encode("utf-8")).hexdigest()


def migrate(conn: psycopg2.extensions.connection) -> SchemaState:
    """Bring the ledger schema, its triggers, the writer role and its grants to this Gardien's version.

    Idempotent and safe to run concurrently (an advisory lock serialises migrations; a second one finds the
    version in place and does nothing). Needs the owner (CREATE on the database, CREATEROLE); the caller
    commits. Raises ConfigurationError if the database is not UTF8, LedgerError if the role may not run DDL.
    """
    digest = schema_digest()
    with conn.cursor() as cur:
        cur.execute("SHOW server_encoding")
        encoding = cur.fetchone()[0]
        if encoding.upper() not in ("UTF8", "UTF-8"):
            raise ConfigurationError(
                f"the ledger database uses encoding {encoding}: create it with ENCODING 'UTF8' "
                "(hashes are computed over UTF-8 text)."
            )
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        current = _current(cur)
        if current is not None and current == (SCHEMA_VERSION, digest):
            return SchemaState(
                version=SCHEMA_VERSION, digest=digest, applied=False, previous_version=current[0]
            )
        cur.execute("SAVEPOINT gardien_migrate")
        try:
            cur.execute(schema_sql())
        except psycopg2.errors.InsufficientPrivilege as exc:
            cur.execute("ROLLBACK TO SAVEPOINT gardien_migrate")
            raise LedgerError(
                f"cannot migrate the ledger schema: {_first_line(exc)}. Run {MIGRATE_COMMAND}: a role with "
                "CREATE on the database and CREATEROLE, not the writer. Nothing was changed."
            ) from exc
        cur.execute(
            "INSERT INTO ledger.schema_versions (version, digest) VALUES (%s, %s)", (SCHEMA_VERSION, digest)
        )
    return SchemaState(
        version=SCHEMA_VERSION, digest=digest, applied=True, previous_version=current[0] if current else None
    )


def require_schema(conn: psycopg2.extensions.connection) -> None:
    """Refuse to work on a ledger whose schema is missing or older than this Gardien's (no DDL here).

    One cheap read, run by every step as the writer role. Raises LedgerError naming the command to run.
    """
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT gardien_schema_check")
        try:
            current = _current(cur)
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT gardien_schema_check")
            raise LedgerError(f"cannot read the ledger's schema version: {_first_line(exc)}.") from exc
        cur.execute("RELEASE SAVEPOINT gardien_schema_check")
    if current is None:
        raise LedgerError(
            f"the ledger schema is missing or predates versioning: run {MIGRATE_COMMAND} once, then retry. "
            "Nothing was recorded."
        )
    version, digest = current
    if version < SCHEMA_VERSION or (version == SCHEMA_VERSION and digest != schema_digest()):
        raise LedgerError(
            f"the ledger schema is version {version} (digest {digest[:12]}) but this Gardien needs version "
            f"{SCHEMA_VERSION} (digest {schema_digest()[:12]}): run {MIGRATE_COMMAND}, then retry. "
            "Nothing was recorded."
        )


def _current(cur: psycopg2.extensions.cursor) -> tuple[int, str] | None:
    cur.execute("SELECT to_regclass('ledger.schema_versions') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute(
        "SELECT version, digest FROM ledger.schema_versions ORDER BY applied_at DESC, version DESC LIMIT 1"
    )
    row = cur.fetchone()
    return (int(row[0]), str(row[1])) if row else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__

"""Build the demo hospital's three environments (qualif, preprod, prod) as databases, idempotently."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections.abc import Callable, Mapping
from importlib import resources

import psycopg2
from psycopg2 import errors as pg_errors
from psycopg2 import sql

from gardien import pg
from gardien.demo import changes as changes_mod
from gardien.demo.changes import PendingChange
from gardien.demo.content import TABLES, Dataset, generate_dataset, line_count
from gardien.demo.loader import id_stride, load_dataset, schema_sql
from gardien.demo.marker import (
    Marker,
    content_checksum,
    create_bookkeeping,
    read_manifest,
    read_marker,
    write_manifest,
    write_marker,
)
from gardien.demo.outcome import DemoBuild, EnvironmentBuild
from gardien.errors import EnvironmentUnavailableError, GardienError, UsageError

# Each database is built under a temporary name, in one transaction whose last write is the completion
# marker, then renamed: a database carrying the final name is complete, and a re-run with the same
# parameters finds three markers and does nothing. Bump the version to invalidate every existing build.
GENERATOR_VERSION = "1"
ENVIRONMENTS = ("qualif", "preprod", "prod")  # index = id slot: environments never share id ranges
BUILDING_SUFFIX = "_building"
MAX_SCALE = 20_000  # 10M protocol lines: ids of 3 environments (slot x 10^8) still fit an integer column
_PREFIX_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_MAX_PREFIX = 63 - len("preprod") - len(BUILDING_SUFFIX)
_SOURCES = ("data.py", "formulary.py", "content.py", "changes.py", "loader.py", "marker.py")

Progress = Callable[[str], None]


def fingerprint() -> str:
    """Hash of the schema and the generator sources: a change to either invalidates existing builds."""
    digest = hashlib.sha256(f"gardien-demo/{GENERATOR_VERSION}\n".encode())
    package = resources.files("gardien.demo")
    for name in ("schema.sql", *_SOURCES):
        digest.update(name.encode() + b"\0" + package.joinpath(name).read_bytes() + b"\0")
    return digest.hexdigest()


def database_names(prefix: str) -> dict[str, str]:
    """Environment → database name for ``prefix`` (``gardien_`` gives gardien_qualif, ...)."""
    return {env: f"{prefix}{env}" for env in ENVIRONMENTS}


def check_parameters(
    *, prefix: str, scale: int, bench_changes: tuple[int, int, int] | None, seed: int = 0
) -> None:
    """Raise UsageError naming the bad parameter and the fix."""
    if not _PREFIX_RE.match(prefix) or len(prefix) > _MAX_PREFIX:
        raise UsageError(
            f"database prefix {prefix!r} is not allowed: use at most {_MAX_PREFIX} lower-case letters, digits "
            "and underscores, not starting with a digit (e.g. gardien_)."
        )
    if not 1 <= scale <= MAX_SCALE:
        raise UsageError(
            f"scale must be between 1 and {MAX_SCALE:,} (got {scale}); scale N gives {line_count(1)} x N "
            "protocol lines, and 3 environments of a larger scale would overflow the integer ids."
        )
    if not 0 <= seed < 2**63:
        raise UsageError(f"seed must be between 0 and 2**63 - 1 (got {seed}).")
    if bench_changes is not None and (len(bench_changes) != 3 or min(bench_changes) < 0):
        raise UsageError(
            f"bench changes must be three counts >= 0 (updates, inserts, deletes), got {bench_changes!r}."
        )


def _connect_admin(admin_dsn: str) -> None:
    pg.dsn_for_database(admin_dsn, "postgres")  # a malformed DSN is a ConfigurationError, not a crash
    try:
        pg.connect(admin_dsn).close()
    except EnvironmentUnavailableError as exc:
        raise EnvironmentUnavailableError(
            f"{exc} The demo uses GARDIEN_PG_DSN, else postgresql://postgres@127.0.0.1:5432/postgres; "
            "`make pg` finds or starts a server and writes its DSN to .gardien/pg.env."
        ) from exc


def _stale_reason(
    admin_dsn: str, database: str, expected: Marker, *, verify: bool
) -> tuple[str | None, Marker | None]:
    """(None, marker) when ``database`` is complete and built with the expected parameters, else (reason, None)."""
    if not pg.database_exists(admin_dsn, database):
        return "does not exist yet", None
    conn = pg.connect(pg.dsn_for_database(admin_dsn, database))
    try:
        with conn.cursor() as cur:
            marker = read_marker(cur)
            changed = verify and marker is not None and content_checksum(cur) != marker.content_checksum
    finally:
        conn.close()
    if marker is None:
        return "exists without a completion marker (an interrupted build?); dropping and rebuilding it", None
    if not marker.same_build(expected):
        return (
            f"was built with {marker.describe()}, not {expected.describe()}; dropping and rebuilding it",
            None,
        )
    if changed:
        return (
            "content changed since it was built (a release or a manual edit); dropping and rebuilding it",
            None,
        )
    return None, marker


def _sql_error(exc: psycopg2.Error) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _build_one(
    admin_dsn: str,
    *,
    database: str,
    dataset: Dataset,
    slot: int,
    strides: Mapping[str, int],
    marker: Marker,
    manifest: tuple[PendingChange, ...],
) -> None:
    """Build ``database`` under a temporary name, then swap it in; on failure nothing replaces the old one."""
    temporary = database + BUILDING_SUFFIX
    try:
        pg.create_database(admin_dsn, temporary, replace=True)
    except pg_errors.InsufficientPrivilege as exc:
        raise EnvironmentUnavailableError(
            f"cannot create database {temporary} on {pg.redact(admin_dsn)}: {_sql_error(exc)}. "
            "Use a role with CREATEDB (ALTER ROLE ... CREATEDB) or a superuser in GARDIEN_PG_DSN."
        ) from exc
    try:
        conn = pg.connect(pg.dsn_for_database(admin_dsn, temporary), application_name="gardien-demo")
        try:
            conn.set_client_encoding("UTF8")
            with conn.cursor() as cur:
                cur.execute(schema_sql())
                create_bookkeeping(cur)
            load_dataset(
                conn, dataset, slot=slot, strides=strides, shuffle_seed=f"{marker.seed}:{marker.environment}"
            )
            with conn.cursor() as cur:
                write_manifest(cur, manifest)
                cur.execute("ANALYZE")
                checksum = content_checksum(cur)
                # Last write: its presence means the build finished.
                write_marker(cur, dataclasses.replace(marker, content_checksum=checksum))
            conn.commit()
        finally:
            conn.close()
        with pg.autocommit(admin_dsn) as admin, admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            cur.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(temporary), sql.Identifier(database)
                )
            )
    except psycopg2.Error as exc:
        pg.drop_database(admin_dsn, temporary)
        raise EnvironmentUnavailableError(
            f"building demo database {database} failed: {_sql_error(exc)}. The partial copy was removed; "
            "fix the cause (disk space, permissions, server log) and re-run."
        ) from exc
    except GardienError:
        pg.drop_database(admin_dsn, temporary)
        raise


def build_environments(
    admin_dsn: str,
    *,
    prefix: str = "gardien_",
    scale: int = 1,
    seed: int = 42,
    bench_changes: tuple[int, int, int] | None = None,
    force: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
) -> DemoBuild:
    """Create (or find up to date) ``{prefix}qualif``, ``{prefix}preprod`` and ``{prefix}prod``.

    preprod and prod hold the same content with different ids; qualif holds prod plus the realistic set
    of pending changes, or, with ``bench_changes=(updates, inserts, deletes)``, exactly that many
    protocol-line changes. ``scale`` N gives 500 x N protocol lines (2000 → 1,000,000). A database is
    up to date when its completion marker records the same parameters and generator; with ``verify``,
    its content must also still match the checksum taken at build time (a release applied to the demo
    environments is a change: verify rebuilds them; about 2 s per million rows).

    Raises:
        UsageError: a bad prefix, scale or bench_changes.
        ConfigurationError: a malformed admin DSN.
        EnvironmentUnavailableError: the server cannot be reached, refuses to create databases, or a
            build fails (the partial database is removed; the previous one, if any, is left).
    """
    say = progress or (lambda _line: None)
    check_parameters(prefix=prefix, scale=scale, bench_changes=bench_changes, seed=seed)
    bench = (
        None
        if bench_changes is None
        else (int(bench_changes[0]), int(bench_changes[1]), int(bench_changes[2]))
    )
    _connect_admin(admin_dsn)
    names = database_names(prefix)
    generator_hash = fingerprint()
    wanted = {
        env: Marker(
            environment=env,
            scale=scale,
            seed=seed,
            bench_changes=bench,
            fingerprint=generator_hash,
            row_counts={},
        )
        for env in ENVIRONMENTS
    }
    stale, found = _survey(admin_dsn, names=names, wanted=wanted, force=force, verify=verify, say=say)
    built: dict[str, EnvironmentBuild] = {}
    if stale:
        prod, qualif, manifest = _generate(scale=scale, seed=seed, bench=bench, say=say)
        strides = id_stride(prod, qualif)
        for env in ("prod", "preprod", "qualif"):
            if env not in stale:
                continue
            started = time.monotonic()
            dataset = qualif if env == "qualif" else prod
            counts = dataset.counts()
            _build_one(
                admin_dsn,
                database=names[env],
                dataset=dataset,
                slot=ENVIRONMENTS.index(env),
                strides=strides,
                marker=dataclasses.replace(wanted[env], row_counts=counts),
                manifest=manifest if env == "qualif" else (),
            )
            seconds = time.monotonic() - started
            say(f"{names[env]}: built, {sum(counts.values()):,} rows in {seconds:.1f} s")
            built[env] = EnvironmentBuild(
                env,
                names[env],
                pg.dsn_for_database(admin_dsn, names[env]),
                "built",
                stale[env],
                counts,
                seconds,
            )
    else:
        manifest = _stored_manifest(admin_dsn, names["qualif"])
    environments = tuple(
        built.get(env)
        or EnvironmentBuild(
            env,
            names[env],
            pg.dsn_for_database(admin_dsn, names[env]),
            "up to date",
            "completion marker matches",
            {t.name: found[env].row_counts.get(t.name, 0) for t in TABLES},
            0.0,
        )
        for env in ENVIRONMENTS
    )
    return DemoBuild(prefix, scale, seed, bench, environments, manifest)


def _survey(
    admin_dsn: str,
    *,
    names: Mapping[str, str],
    wanted: Mapping[str, Marker],
    force: bool,
    verify: bool,
    say: Progress,
) -> tuple[dict[str, str], dict[str, Marker]]:
    """(environment → reason to rebuild, environment → marker of a complete, matching build)."""
    stale: dict[str, str] = {}
    found: dict[str, Marker] = {}
    for env in ENVIRONMENTS:
        leftover = names[env] + BUILDING_SUFFIX
        if pg.database_exists(admin_dsn, leftover):
            say(f"{leftover}: left by an interrupted build; dropping it")
            pg.drop_database(admin_dsn, leftover)
        reason, marker = (
            ("rebuild forced", None)
            if force
            else _stale_reason(admin_dsn, names[env], wanted[env], verify=verify)
        )
        if reason is None and marker is not None:
            found[env] = marker
            say(f"{names[env]}: up to date ({marker.describe()})")
        else:
            stale[env] = reason or "rebuild forced"
            say(f"{names[env]}: {stale[env]}")
    return stale, found


def _generate(
    *, scale: int, seed: int, bench: tuple[int, int, int] | None, say: Progress
) -> tuple[Dataset, Dataset, tuple[PendingChange, ...]]:
    """(prod content, qualif content, what qualif holds over prod)."""
    started = time.monotonic()
    prod = generate_dataset(scale=scale, seed=seed)
    if bench is None:
        qualif, manifest = changes_mod.realistic_changes(prod)
    else:
        qualif, manifest = changes_mod.bench_changes(
            prod, updates=bench[0], inserts=bench[1], deletes=bench[2], seed=seed
        )
    say(
        f"generated content: {sum(prod.counts().values()):,} rows in prod, {len(manifest):,} pending changes "
        f"in qualif ({time.monotonic() - started:.1f} s)"
    )
    return prod, qualif, manifest


def _stored_manifest(admin_dsn: str, qualif: str) -> tuple[PendingChange, ...]:
    conn = pg.connect(pg.dsn_for_database(admin_dsn, qualif))
    try:
        with conn.cursor() as cur:
            return read_manifest(cur)
    finally:
        conn.close()


def drop_environments(admin_dsn: str, *, prefix: str = "gardien_") -> list[str]:
    """Drop the three demo databases of ``prefix`` and any half-built leftovers; return what existed."""
    check_parameters(prefix=prefix, scale=1, bench_changes=None)
    dropped = []
    for name in database_names(prefix).values():
        for candidate in (name, name + BUILDING_SUFFIX):
            if pg.database_exists(admin_dsn, candidate):
                pg.drop_database(admin_dsn, candidate)
                dropped.append(candidate)
    return dropped

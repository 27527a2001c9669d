"""Rehearsal: copy the target's managed tables into a scratch database, apply the changeset there, validate."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from gardien import pg
from gardien.config import CatalogConfig
from gardien.errors import DeploymentError
from gardien.validation.changes import ChangeSummary
from gardien.validation.ddl import (
    TableDef,
    after_copy_sql,
    create_table_sql,
    identity_columns,
    read_table_defs,
)
from gardien.validation.gate import validate_state
from gardien.validation.report import ExpectationResult, ValidationReport
from gardien.validation.scratch import cleanup_stale_scratch, create_scratch, scratch_name
from gardien.validation.settings import ValidationSettings

log = logging.getLogger(__name__)

ApplyFn = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Rehearsal:
    """The outcome of a rehearsal: the report on the post-state, and what happened to the scratch database."""

    report: ValidationReport
    scratch_database: str | None
    apply_result: Any = None
    stale_dropped: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)  # copy, apply, validate: measured, for benchmarks


def rehearse(
    target_dsn: str,
    *,
    admin_dsn: str,
    catalog: CatalogConfig,
    apply_fn: ApplyFn,
    label: str,
    now: datetime,
    settings: ValidationSettings,
    summary: ChangeSummary | None = None,
    target_name: str | None = None,
    data_docs_dir: Path | None = None,
    suffix: str | None = None,
) -> Rehearsal:
    """Build the state the target will have and validate it.

    Copies the target's managed tables into ``gardien_scratch_<label>_<suffix>`` on the server of
    ``admin_dsn`` (the target's server), calls ``apply_fn(scratch_dsn)`` (the engine's apply), validates the
    result with the suites and, given ``summary``, the changeset rules. The scratch database is dropped
    afterwards, also on failure or interruption; leftovers older than ``settings.scratch_max_age`` are
    dropped first. An empty ``summary`` validates trivially: nothing is copied or applied.

    A database refusal raised by ``apply_fn`` (psycopg2.Error or DeploymentError: the changeset does not
    apply to the target's state) is reported as a failed expectation; any other GardienError from it
    (conflict, bad changeset) propagates unchanged.
    """
    target = target_name or pg.redact(target_dsn)
    if summary is not None and summary.is_empty:
        return Rehearsal(
            report=ValidationReport.trivially_valid(
                target=target, reason="empty changeset: nothing to apply, the target's state is unchanged"
            ),
            scratch_database=None,
        )
    stale = cleanup_stale_scratch(admin_dsn, older_than=settings.scratch_max_age, now=now)
    name = scratch_name(label, suffix or secrets.token_hex(4))
    scratch_dsn = pg.dsn_for_database(target_dsn, name)
    completed = False
    seconds: dict[str, float] = {}
    try:
        # Inside the try: a failure between CREATE DATABASE and its marker still drops it (IF EXISTS).
        create_scratch(admin_dsn, name=name, now=now)
        started = time.monotonic()
        notes = copy_managed_scope(target_dsn, scratch_dsn, catalog=catalog)
        seconds["copy"] = time.monotonic() - started
        try:
            started = time.monotonic()
            apply_result = apply_fn(scratch_dsn)
        except (psycopg2.Error, DeploymentError) as exc:
            # The database refused the changes: the release would fail in the target too. That is evidence
            # for approvers, reported as a failed expectation; other GardienErrors (conflict, bad
            # changeset) are clear errors of their own and propagate.
            report = _apply_failed(target, exc, notes)
            apply_result = None
        else:
            seconds["apply"] = time.monotonic() - started
            started = time.monotonic()
            report = validate_state(
                scratch_dsn,
                catalog=catalog,
                settings=settings,
                target=target,
                summary=summary,
                data_docs_dir=data_docs_dir,
                run_name=f"rehearsal-{label}",
            )
            report = _with_notes(report, notes)
            seconds["validate"] = time.monotonic() - started
        completed = True
    finally:
        try:
            pg.drop_database(admin_dsn, name)
        except Exception:
            if completed:
                raise
            # Already failing: keep the original error; the next rehearsal's cleanup drops the leftover.
            log.warning("could not drop scratch database %s; a later rehearsal will clean it up", name)
    return Rehearsal(
        report=report,
        scratch_database=name,
        apply_result=apply_result,
        stale_dropped=stale,
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )


def _with_notes(report: ValidationReport, notes: list[str]) -> ValidationReport:
    return dataclasses.replace(report, notes=(*notes, *report.notes)) if notes else report


def _apply_failed(target: str, exc: Exception, notes: list[str]) -> ValidationReport:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    result = ExpectationResult(
        name="the changeset applies to the target's current state",
        table=None,
        kind="apply",
        suite="rehearsal",
        passed=False,
        unexpected_count=1,
        examples=(),
        message=f"the database refused the changeset in rehearsal: {first}",
    )
    return ValidationReport.from_results(target=target, results=[result], notes=notes)


def copy_managed_scope(source_dsn: str, scratch_dsn: str, *, catalog: CatalogConfig) -> list[str]:
    """Recreate the managed tables of ``source_dsn`` in ``scratch_dsn`` and copy every row, streamed.

    The source is read in one REPEATABLE READ, READ ONLY transaction: all tables come from one snapshot.
    Whole tables are copied (not only catalog scopes): the post-state must be consistent as a whole.
    Returns notes on what was left out.
    """
    places = {t.name: (catalog.schema_of(t), t.relname) for t in catalog.tables}
    # Unmanaged tables that logical references look values up in: copied too (read only), so the rehearsed
    # state's checks see them as the target's do.
    for table in catalog.tables:
        for ref in table.logical_references:
            ext = ref.external.table if ref.external else None
            if ext is not None and (ext.schema_, ext.name) not in places.values():
                places[f"external {ext.schema_}.{ext.name}"] = (ext.schema_, ext.name)
    src = pg.connect(source_dsn, application_name="gardien-rehearsal-read")
    dst = pg.connect(scratch_dsn, application_name="gardien-rehearsal-write")
    try:
        src.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        defs, notes = read_table_defs(src, places=places)
        with dst.cursor() as cur:
            for schema in dict.fromkeys(s for s, _ in places.values()):
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            for table in defs:
                cur.execute(create_table_sql(table))
        for table in defs:
            _stream_table(src, dst, table=table)
        with dst.cursor() as cur:
            for statement in after_copy_sql(defs):
                cur.execute(statement)
            for table in defs:
                _set_identities(cur, table=table)
                # Freshly loaded tables have no statistics: without them the validation queries get
                # nested-loop plans that cost more than the ANALYZE itself at benchmark scale.
                cur.execute(sql.SQL("ANALYZE {}").format(table.ident))
        dst.commit()
        src.rollback()
        return notes
    finally:
        src.close()
        dst.close()


def _set_identities(cur: Any, *, table: TableDef) -> None:
    ident = table.ident
    for column in identity_columns(table):
        # Past max(id), so rows the changeset inserts get fresh ids as they would in the target.
        cur.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(max({}), 0) + 1, false) FROM {}"
            ).format(sql.Identifier(column), ident),
            (ident.as_string(cur), column),
        )


def _stream_table(src: Any, dst: Any, *, table: TableDef) -> None:
    """COPY TO STDOUT on the source piped into COPY FROM STDIN on the scratch: rows never pile up in memory."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.copied_columns)
    ident = table.ident
    out_sql = sql.SQL("COPY {} ({}) TO STDOUT (FORMAT binary)").format(ident, columns).as_string(src)
    in_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(ident, columns).as_string(dst)
    read_fd, write_fd = os.pipe()
    reader, writer = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with src.cursor() as cur:
                cur.copy_expert(out_sql, writer)
        except BaseException as exc:  # reported in the main thread
            failure.append(exc)
        finally:
            writer.close()

    producer = threading.Thread(target=produce, name=f"copy-{table.name}", daemon=True)
    producer.start()
    try:
        with dst.cursor() as cur:
            cur.copy_expert(in_sql, reader)
    finally:
        reader.close()  # a consumer failure unblocks the producer (broken pipe)
        producer.join()
    if failure:
        raise failure[0]

"""Validate a database state: suites and changeset rules through GX, failing rows fetched by natural key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from gardien import pg
from gardien.config import CatalogConfig
from gardien.errors import ConfigurationError
from gardien.validation.changerules import changeset_rule_sql, changeset_specs
from gardien.validation.changes import ChangeSummary
from gardien.validation.external import allow_list_notes
from gardien.validation.introspect import SchemaFacts, read_schema_facts
from gardien.validation.page import write_page
from gardien.validation.probes import SmokeProbe, run_probes
from gardien.validation.report import ExpectationResult, ValidationReport, json_safe
from gardien.validation.runner import GxCheck, GxOutcome, run_checks
from gardien.validation.settings import ValidationSettings
from gardien.validation.sqlbuild import BATCH_MARKER, failing_rows_sql, render_for_gx
from gardien.validation.suites import ExpectationSpec, check_specs, generate_specs, load_suite_files

BLAST_RADIUS_HINT = (
    "To accept it for this release only: trigger the release with the parameter accept_blast_radius={table} "
    "(or *) and a reason; who and why are recorded in the ledger (gardien validate --accept-blast-radius "
    "{table} --reason ... for a manual check). To change the limit for good: "
    "validation.blast_radius.tables.{table}"
)
NATIVE_KINDS = {"not_null", "unique", "in_set", "between", "match_regex", "a_greater_than_b"}
CHANGESET_KINDS = {"frozen_table", "blast_radius", "referenced_deletion"}


def collect_specs(
    conn: Any, *, catalog: CatalogConfig, settings: ValidationSettings, summary: ChangeSummary | None = None
) -> tuple[SchemaFacts, list[ExpectationSpec], list[str]]:
    """Generated + hand-written (+ changeset) specs, checked against the live schema before anything runs.

    Raises ConfigurationError naming the suite and the missing table or column.
    """
    places = {t.name: (catalog.schema_of(t), t.relname) for t in catalog.tables}
    facts = read_schema_facts(conn, schema=catalog.schema_, places=places)
    specs = generate_specs(catalog, facts)
    if settings.suites_dir is not None:
        specs += load_suite_files(settings.suites_dir)
    check_specs(specs, catalog=catalog, facts=facts)
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        # Results are matched back to expectations by name: a suite must not reuse a generated name.
        raise ConfigurationError(
            f"expectation name(s) used twice across suites: {twice}. Rename them in the suite files."
        )
    notes: list[str] = []
    if summary is not None:
        rules, notes = changeset_specs(summary, catalog=catalog, facts=facts, blast=settings.blast_radius)
        specs += rules
    return facts, specs, notes


def _rows_sql(
    spec: ExpectationSpec, *, catalog: CatalogConfig, facts: SchemaFacts, source: sql.Composable
) -> sql.Composed:
    if spec.kind in CHANGESET_KINDS:
        return changeset_rule_sql(spec, catalog=catalog, facts=facts, source=source)
    return failing_rows_sql(spec, catalog=catalog, facts=facts, source=source)


def validate_state(
    dsn: str,
    *,
    catalog: CatalogConfig,
    settings: ValidationSettings,
    target: str,
    summary: ChangeSummary | None = None,
    probes: tuple[SmokeProbe, ...] = (),
    data_docs_dir: Path | None = None,
    run_name: str = "gardien",
) -> ValidationReport:
    """Validate the managed scope of the database at ``dsn`` as it is now.

    With ``summary``, the changeset rules are checked as well (the state is then a rehearsal's post-state).
    ``probes`` are run read-only after the suites. Returns the report; raises ConfigurationError for a
    suite naming a missing table/column (before GX runs) and EnvironmentUnavailableError when the
    database cannot be reached.
    """
    conn = pg.connect(dsn, application_name="gardien-validate")
    try:
        facts, specs, notes = collect_specs(conn, catalog=catalog, settings=settings, summary=summary)
        conn.rollback()
        marker = sql.SQL(BATCH_MARKER)
        checks = [
            GxCheck(spec=s)
            if s.kind in NATIVE_KINDS
            else GxCheck(
                spec=s, query=render_for_gx(_rows_sql(s, catalog=catalog, facts=facts, source=marker), conn)
            )
            for s in specs
        ]
        outcomes = run_checks(
            checks,
            dsn=dsn,
            schema=catalog.schema_,
            places=facts.places,
            run_name=run_name,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        results = [
            _result(s, outcomes.get(s.name), conn=conn, catalog=catalog, facts=facts, settings=settings)
            for s in specs
        ]
        results += run_probes(
            conn, probes, examples=settings.examples, statement_timeout_ms=settings.statement_timeout_ms
        )
        try:
            notes = [*notes, *allow_list_notes(conn, catalog=catalog, facts=facts)]
        except psycopg2.Error as exc:
            conn.rollback()
            notes = [*notes, f"allow-list references could not be listed: {str(exc).strip().splitlines()[0]}"]
    finally:
        conn.close()
    docs = str(data_docs_dir / "index.html") if data_docs_dir is not None else None
    report = ValidationReport.from_results(target=target, results=results, data_docs_path=docs, notes=notes)
    if data_docs_dir is not None:  # Gardien's own page: GX's Data Docs need CDN assets (blank offline)
        write_page(report, data_docs_dir, title=f"Validation of {target} ({run_name.split('-')[0]})")
    return report


def _result(
    spec: ExpectationSpec,
    outcome: GxOutcome | None,
    *,
    conn: Any,
    catalog: CatalogConfig,
    facts: SchemaFacts,
    settings: ValidationSettings,
) -> ExpectationResult:
    base = {"name": spec.name, "table": spec.table, "kind": spec.kind, "suite": spec.suite}
    if outcome is None:
        error = "Great Expectations returned no result for this expectation"
        return ExpectationResult(
            **base, passed=False, unexpected_count=0, examples=(), message=error, error=error
        )
    if outcome.error is not None:
        return ExpectationResult(
            **base,
            passed=False,
            unexpected_count=0,
            examples=(),
            message=f"could not run (not a data failure): {outcome.error.splitlines()[0]}",
            error=outcome.error,
        )
    if outcome.success:
        return ExpectationResult(**base, passed=True, unexpected_count=0, examples=(), message="ok")
    table = facts.ident(spec.table)
    query = _rows_sql(spec, catalog=catalog, facts=facts, source=table)
    examples: tuple[dict[str, Any], ...] = ()
    try:
        examples = fetch_examples(
            conn, query, limit=settings.examples, statement_timeout_ms=settings.statement_timeout_ms
        )
    except psycopg2.Error as exc:
        conn.rollback()
        first = str(exc).strip().splitlines()[0]
        return ExpectationResult(
            **base,
            passed=False,
            unexpected_count=outcome.unexpected_count,
            examples=(),
            message=f"{outcome.unexpected_count} unexpected row(s); examples could not be read: {first}",
        )
    count = outcome.unexpected_count or len(examples)
    shown = "; ".join(", ".join(f"{k}={v!r}" for k, v in e.items()) for e in examples[:3])
    hint = f". {BLAST_RADIUS_HINT.format(table=spec.table)}" if spec.kind == "blast_radius" else ""
    return ExpectationResult(
        **base,
        passed=False,
        unexpected_count=count,
        examples=examples,
        message=f"{count} unexpected row(s)" + (f", e.g. {shown}" if shown else "") + hint,
    )


def fetch_examples(
    conn: Any, query: sql.Composed, *, limit: int, statement_timeout_ms: int
) -> tuple[dict[str, Any], ...]:
    """The first ``limit`` rows of ``query`` as dicts, read in a read-only transaction then rolled back."""
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute("SET LOCAL statement_timeout = %s", (statement_timeout_ms,))
            cur.execute(
                sql.SQL("SELECT * FROM ({}) AS failing ORDER BY 1 LIMIT {}").format(query, sql.Literal(limit))
            )
            names = [d.name for d in cur.description]
            return tuple({n: json_safe(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall())
    finally:
        conn.rollback()


def verify_target(
    dsn: str,
    *,
    catalog: CatalogConfig,
    settings: ValidationSettings,
    probes: tuple[SmokeProbe, ...],
    target: str,
    data_docs_dir: Path | None = None,
) -> ValidationReport:
    """Post-deploy verification: the same suites on the deployed target, plus the smoke probes."""
    return validate_state(
        dsn,
        catalog=catalog,
        settings=settings,
        target=target,
        probes=probes,
        data_docs_dir=data_docs_dir,
        run_name=f"verify-{target}",
    )

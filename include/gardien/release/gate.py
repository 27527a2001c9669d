"""The release's validation gate (rehearsal before approval) and post-deploy verification."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gardien import ledger, pg
from gardien.catalog import bind_catalog
from gardien.errors import ValidationFailedError
from gardien.fingerprint import scope_fingerprint
from gardien.release.service import ReleaseService, StepContext
from gardien.validation.gate import BLAST_RADIUS_HINT


def _settings(svc: ReleaseService) -> Any:
    from gardien.validation import parse_validation_settings

    base = Path(svc.config.source_path).parent if svc.config.source_path else None
    return parse_validation_settings(svc.config.validation, base_dir=base)


def _summary_lines(report: Any, limit: int = 5) -> list[str]:
    failed = [e for e in report.expectations if not e.passed]
    lines = []
    for e in failed[:limit]:
        keys = ", ".join(str(x) for x in e.examples[:3])
        hint = f". {BLAST_RADIUS_HINT.format(table=e.table)}" if e.kind == "blast_radius" else ""
        lines.append(
            f"{e.table}: {e.name} ({e.unexpected_count} rows){' e.g. ' + keys if keys else ''}{hint}"
        )
    lines.extend(report.errors[:limit])
    return lines


def validate_release(
    svc: ReleaseService, release_id: str, *, ctx: StepContext, accept_blast_radius: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Rehearse the changeset on a scratch copy of the final target and validate the post-state.

    ``accept_blast_radius`` (tables, or "*"; the release's parameter) lifts the blast-radius limit of
    those tables for this release only: the release's requester accepts it, its reason says why, and an
    event ``validation.blast_radius_accepted`` records both in the ledger. Without a reason it is refused.

    Records the report in the ledger; raises ValidationFailedError (naming the top failures) when the
    state production would have is not consistent.
    """
    from gardien.validation.bridge import engine_apply, summary_from_changeset
    from gardien.validation.rehearsal import rehearse

    changeset = svc.changeset(release_id)
    with svc.ledger() as conn:
        rel = ledger.get_release(conn, release_id)
    requested_by = rel.requested_by  # for on_insert: requester
    settings = _settings(svc)
    if accept_blast_radius:
        blast = settings.blast_radius.accept(
            frozenset(accept_blast_radius), by=rel.requested_by, reason=rel.reason or ""
        )
        settings = dataclasses.replace(settings, blast_radius=blast)
        svc.event(
            release_id,
            "validation.blast_radius_accepted",
            ctx=ctx,
            payload={"tables": sorted(accept_blast_radius), "accepted_by": rel.requested_by},
            reason=rel.reason,
        )
    target = svc.path.final_targets[0]
    target_dsn = svc.dsn(target)
    docs = svc.release_dir(release_id) / "data_docs"
    result = rehearse(
        target_dsn,
        admin_dsn=pg.dsn_for_database(target_dsn, "postgres"),
        catalog=svc.config.catalog,
        apply_fn=engine_apply(
            changeset, catalog=svc.config.catalog, applied_at=ctx.now, requested_by=requested_by
        ),
        label=release_id.lower().replace("-", "_")[:20],
        now=ctx.now,
        settings=settings,
        summary=summary_from_changeset(changeset, catalog=svc.config.catalog),
        target_name=target,
        data_docs_dir=docs,
    )
    report = result.report.to_dict()
    applied = result.apply_result
    report["expected_fingerprint"] = getattr(applied, "fingerprint_after", None)
    report["touched_tables"] = sorted(getattr(applied, "counts", {}) or {})
    svc.write_json(release_id, "validation.json", report)
    with svc.ledger() as conn:
        ledger.record_validation(
            conn,
            release_id=release_id,
            changeset_id=changeset.id,
            environment=f"rehearsal:{target}",
            passed=result.report.ok,
            report=report,
            actor=ctx.actor,
            at=ctx.now,
            airflow=ctx.airflow,
        )
        ledger.set_release_status(
            conn,
            release_id=release_id,
            status="validated" if result.report.ok else "validation_failed",
            actor=ctx.actor,
            at=ctx.now,
            airflow=ctx.airflow,
        )
    if not result.report.ok:
        raise ValidationFailedError(
            f"release {release_id}: the state {target} would have fails validation: "
            + "; ".join(_summary_lines(result.report))
            + f". Full report: {svc.release_dir(release_id) / 'validation.json'}"
        )
    return {
        "ok": True,
        "trivial": result.report.trivial,
        "data_docs": result.report.data_docs_path,
        "checked": len(result.report.expectations),
        "summary": result.report.summary(),
        "tables": sorted({e.table for e in result.report.expectations if e.table}),
    }


def current_fingerprint(svc: ReleaseService, environment: str, tables: list[str]) -> str:
    conn = pg.connect(svc.dsn(environment), application_name="gardien verify")
    try:
        catalog = bind_catalog(conn, svc.config.catalog, label=environment)
        with conn.cursor() as cur:
            return scope_fingerprint(cur, catalog, tables).digest
    finally:
        conn.rollback()
        conn.close()


def rehearsal_expectation(history: Any) -> tuple[str | None, list[str]]:
    """The fingerprint the rehearsal predicted for the touched tables, and those tables (None: no rehearsal)."""
    rehearsal = next(
        (v for v in reversed(history.validations) if v.environment.startswith("rehearsal:")), None
    )
    if rehearsal is None:
        return None, []
    report = rehearsal.report or {}
    return report.get("expected_fingerprint"), list(report.get("touched_tables") or [])


def verify_environment(svc: ReleaseService, release_id: str, environment: str, *, ctx: StepContext) -> dict:
    """Suites + smoke probes on the deployed target, and its touched scope equals the rehearsal's."""
    from gardien.validation import parse_probes, verify_target

    report = verify_target(
        svc.dsn(environment),
        catalog=svc.config.catalog,
        settings=_settings(svc),
        probes=parse_probes(svc.config.smoke_probes),
        target=environment,
        data_docs_dir=svc.release_dir(release_id) / f"data_docs_verify_{environment}",
    )
    with svc.ledger() as conn:
        history = ledger.release_history(conn, release_id)
    expected, tables = rehearsal_expectation(history)
    actual = current_fingerprint(svc, environment, tables) if expected and tables else None
    fingerprint_ok = expected is None or actual == expected
    data = report.to_dict()
    data.update(
        {"expected_fingerprint": expected, "actual_fingerprint": actual, "fingerprint_ok": fingerprint_ok}
    )
    passed = report.ok and fingerprint_ok
    svc.write_json(release_id, f"verification-{environment}.json", data)
    with svc.ledger() as conn:
        ledger.record_validation(
            conn,
            release_id=release_id,
            changeset_id=history.release.changeset_id or "",
            environment=environment,
            passed=passed,
            report=data,
            actor=ctx.actor,
            at=ctx.now,
            airflow=ctx.airflow,
        )
    if not passed:
        problems = _summary_lines(report)
        if not fingerprint_ok:
            problems.append(
                f"fingerprint of the touched scope {str(actual)[:12]} differs from the rehearsal's {str(expected)[:12]}"
            )
        raise ValidationFailedError(f"verification of {environment} failed: " + "; ".join(problems))
    return {
        "ok": True,
        "environment": environment,
        "fingerprint": actual,
        "fingerprint_expected": expected,
        "checked": len(report.expectations),
        "summary": report.summary(),
        "tables": sorted({e.table for e in report.expectations if e.table}),
        "probes": sorted(e.name for e in report.expectations if e.kind == "smoke_probe"),
    }

"""Great Expectations execution: specs in, per-expectation outcomes out. GX is imported only in here, lazily."""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from gardien import pg
from gardien.errors import ConfigurationError, EnvironmentUnavailableError
from gardien.validation.suites import ExpectationSpec

_META_KEY = "gardien_name"
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class GxOutcome:
    """What GX said about one expectation: success, how many rows were unexpected, or why it could not run."""

    success: bool
    unexpected_count: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class GxCheck:
    """A spec ready for GX; ``query`` is the rendered ``unexpected_rows_query`` for SQL kinds."""

    spec: ExpectationSpec
    query: str | None = None


def _gx() -> Any:
    # Importing GX costs ~5 s: only validation code paths pay it, never DAG parsing or other CLI commands.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # Quieted before the import: importing GX alone logs ~200 INFO lines and deprecation warnings that
    # would bury a task's own summary; GX errors still show.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")
    # raised by GX on our add_table_asset call, so attributed to this module
    warnings.filterwarnings("ignore", message="`schema_name` is deprecated", category=DeprecationWarning)
    import great_expectations as gx

    # Some GX modules set their own logger to INFO (e.g. "Created temporary directory ... for ephemeral
    # docs site" at every run): the parent's level does not reach them.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("great_expectations.") and isinstance(logger, logging.Logger) and logger.level:
            logger.setLevel(logging.ERROR)
    return gx


def sqlalchemy_url(dsn: str, *, statement_timeout_ms: int) -> str:
    """A SQLAlchemy URL for the libpq ``dsn`` (URI or key=value), with a statement timeout."""
    from sqlalchemy.engine import URL

    params = psycopg2.extensions.parse_dsn(dsn)
    host = params.pop("host", None)
    query = {k: str(v) for k, v in params.items() if k not in {"user", "password", "port", "dbname"}}
    if host and host.startswith("/"):
        query["host"], host = host, None
    query["options"] = f"-c statement_timeout={statement_timeout_ms}"
    url = URL.create(
        "postgresql+psycopg2",
        username=params.get("user"),
        password=params.get("password"),
        host=host,
        port=int(params["port"]) if params.get("port") else None,
        database=params.get("dbname"),
        query=query,
    )
    return url.render_as_string(hide_password=False)


def _expectation(gx: Any, check: GxCheck) -> Any:
    spec, p = check.spec, check.spec.params
    meta = {_META_KEY: spec.name, "suite": spec.suite, "kind": spec.kind}
    e = gx.expectations
    if spec.kind == "not_null":
        return e.ExpectColumnValuesToNotBeNull(column=spec.column, meta=meta)
    if spec.kind == "unique" and len(spec.columns) == 1:
        return e.ExpectColumnValuesToBeUnique(column=spec.column, meta=meta)
    if spec.kind == "unique":
        return e.ExpectCompoundColumnsToBeUnique(column_list=list(spec.columns), meta=meta)
    if spec.kind == "in_set":
        return e.ExpectColumnValuesToBeInSet(column=spec.column, value_set=list(p["value_set"]), meta=meta)
    if spec.kind == "between":
        return e.ExpectColumnValuesToBeBetween(
            column=spec.column,
            min_value=p.get("min"),
            max_value=p.get("max"),
            strict_min=bool(p.get("strict_min", False)),
            strict_max=bool(p.get("strict_max", False)),
            meta=meta,
        )
    if spec.kind == "match_regex":
        return e.ExpectColumnValuesToMatchRegex(column=spec.column, regex=p["regex"], meta=meta)
    if spec.kind == "a_greater_than_b":
        return e.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=spec.columns[0],
            column_B=spec.columns[1],
            or_equal=bool(p.get("or_equal", False)),
            meta=meta,
        )
    if check.query is None:
        raise ValueError(f"expectation {spec.name!r} of kind {spec.kind} needs a rendered query")
    return e.UnexpectedRowsExpectation(unexpected_rows_query=check.query, description=spec.name, meta=meta)


def _error_text(info: Any) -> str | None:
    """The first exception message GX recorded for an expectation, or None when it ran."""
    if not info:
        return None
    if isinstance(info, dict) and "raised_exception" in info:
        return str(info.get("exception_message")).strip() if info.get("raised_exception") else None
    for item in info.values() if isinstance(info, dict) else []:
        if isinstance(item, dict) and item.get("raised_exception"):
            return str(item.get("exception_message") or "unknown error").strip()
    return None


def _count(result: dict[str, Any]) -> int:
    for key in ("unexpected_count", "observed_value"):
        value = result.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def run_checks(
    checks: list[GxCheck],
    *,
    dsn: str,
    schema: str,
    run_name: str,
    statement_timeout_ms: int = 300_000,
    places: dict[str, tuple[str, str]] | None = None,
) -> dict[str, GxOutcome]:
    """Run ``checks`` (one GX suite per table) in one checkpoint; return outcomes by expectation name.

    ``places`` maps a catalog table name to its (schema, name in the database) when they differ from
    (``schema``, catalog name).

    An ephemeral context per run; no Data Docs (their pages load assets from CDNs: Gardien writes its own
    page, see gardien.validation.page). Raises EnvironmentUnavailableError when GX cannot reach
    the database, ConfigurationError when GX refuses an expectation's parameters.
    """
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from sqlalchemy import quoted_name

    # GX builds Data Docs file names from these names: keep them to safe characters (a target may be a URI).
    run_name = _UNSAFE_RE.sub("_", run_name).strip("_") or "gardien"

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    try:
        source = ctx.data_sources.add_postgres(
            name=run_name, connection_string=sqlalchemy_url(dsn, statement_timeout_ms=statement_timeout_ms)
        )
    except Exception as exc:  # GX tests the connection here; its errors name no DSN we could redact
        raise EnvironmentUnavailableError(
            f"Great Expectations cannot reach {pg.redact(dsn)}: {str(exc).splitlines()[0] if str(exc) else exc!r}. "
            "Check that the database exists and accepts connections."
        ) from exc
    by_table: dict[str, list[GxCheck]] = {}
    for check in checks:
        by_table.setdefault(check.spec.table, []).append(check)
    definitions = []
    for table, table_checks in by_table.items():
        nsp, rel = (places or {}).get(table, (schema, table))
        # quoted_name(quote=True): GX would otherwise lower-case the names SQLAlchemy then leaves unquoted.
        asset = source.add_table_asset(
            name=table, table_name=quoted_name(rel, quote=True), schema_name=quoted_name(nsp, quote=True)
        )
        batch = asset.add_batch_definition_whole_table(f"{table}-whole")
        suite = ctx.suites.add(gx.ExpectationSuite(name=table))
        for check in table_checks:
            try:
                suite.add_expectation(_expectation(gx, check))
            except (ValueError, TypeError) as exc:  # pydantic refusals from GX
                raise ConfigurationError(
                    f"suite {check.spec.suite}: expectation {check.spec.name!r}: Great Expectations refused it: "
                    f"{str(exc).splitlines()[0]}. Fix the suite file."
                ) from exc
        definitions.append(
            ctx.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
        )
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name=run_name,
            validation_definitions=definitions,
            actions=[],
            result_format={"result_format": "SUMMARY"},
        )
    )
    result = checkpoint.run()
    outcomes: dict[str, GxOutcome] = {}
    for suite_result in result.run_results.values():
        for er in suite_result.results:
            name = (er.expectation_config.meta or {}).get(_META_KEY)
            if name is None:
                continue
            error = _error_text(er.exception_info)
            outcomes[name] = GxOutcome(
                success=bool(er.success) and error is None,
                unexpected_count=_count(er.result or {}),
                error=error,
            )
    return outcomes

"""Smoke probes: configured SQL queries that must return no rows, run read-only with a statement timeout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg2

from gardien.errors import ConfigurationError
from gardien.validation.report import ExpectationResult, json_safe

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True, slots=True)
class SmokeProbe:
    """A query from the configuration (trusted like code) whose every returned row is a problem."""

    name: str
    sql: str
    description: str = ""


def parse_probes(raw: Any) -> tuple[SmokeProbe, ...]:
    """Parse the raw ``smoke_probes:`` list of ``{name, sql, description}`` (``None`` gives none)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigurationError("smoke_probes: expected a list of {name, sql, description}.")
    probes: list[SmokeProbe] = []
    for i, item in enumerate(raw):
        where = f"smoke_probes[{i}]"
        if not isinstance(item, dict):
            raise ConfigurationError(f"{where}: expected a mapping with name, sql and description.")
        extra = sorted(set(item) - {"name", "sql", "description"})
        if extra:
            raise ConfigurationError(
                f"{where}: unknown key(s) {', '.join(extra)}. Allowed: name, sql, description."
            )
        name, query = item.get("name"), item.get("sql")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigurationError(
                f"{where}: 'name' must be a short identifier (letters, digits, _ . : -)."
            )
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError(f"{where} ({name}): 'sql' must be a non-empty SELECT query.")
        probes.append(
            SmokeProbe(
                name=name,
                sql=query.strip().rstrip(";").strip(),
                description=str(item.get("description") or ""),
            )
        )
    names = [p.name for p in probes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigurationError(f"smoke_probes: name(s) used twice: {', '.join(twice)}. Rename them.")
    return tuple(probes)


def run_probes(
    conn: Any, probes: tuple[SmokeProbe, ...], *, examples: int = 10, statement_timeout_ms: int = 60_000
) -> list[ExpectationResult]:
    """Run each probe in its own READ ONLY transaction; a probe that errors is reported, not raised.

    ``conn`` must not be inside a transaction; every transaction opened here is rolled back (nothing to keep).
    """
    previous = conn.readonly
    conn.readonly = True
    try:
        return [
            _run_one(
                conn,
                probe,
                cursor=f"gardien_probe_{i}",
                examples=examples,
                statement_timeout_ms=statement_timeout_ms,
            )
            for i, probe in enumerate(probes)
        ]
    finally:
        conn.rollback()
        conn.readonly = previous


def _run_one(
    conn: Any, probe: SmokeProbe, *, cursor: str, examples: int, statement_timeout_ms: int
) -> ExpectationResult:
    base = {
        "name": f"smoke probe {probe.name}",
        "table": None,
        "kind": "smoke_probe",
        "suite": "smoke_probes",
    }
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = %s", (statement_timeout_ms,))
        # A server-side cursor: DECLARE accepts one query only, and counting never holds all rows in memory.
        with conn.cursor(name=cursor) as cur:
            cur.itersize = 1000
            cur.execute(probe.sql)
            rows: list[dict[str, Any]] = []
            count = 0
            for row in cur:
                if count < examples:
                    rows.append({d.name: json_safe(v) for d, v in zip(cur.description, row, strict=True)})
                count += 1
    except psycopg2.Error as exc:
        conn.rollback()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return ExpectationResult(
            **base,
            passed=False,
            unexpected_count=0,
            examples=(),
            message=f"could not run: {first}",
            error=first,
        )
    conn.rollback()
    message = "no rows" if count == 0 else f"{count} row(s) returned: {probe.description or probe.sql}"
    return ExpectationResult(
        **base, passed=count == 0, unexpected_count=count, examples=tuple(rows), message=message
    )

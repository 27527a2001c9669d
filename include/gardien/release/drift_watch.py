"""One drift-watch pass over one environment: baseline from the ledger, compare the target, record the finding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gardien import journal, ledger, pg
from gardien.catalog import bind_catalog
from gardien.config import GardienConfig, resolve_environment
from gardien.config import ledger_dsn as config_ledger_dsn
from gardien.errors import LedgerError
from gardien.portable import set_session
from gardien.release.drift import Baseline, DriftReport, check_drift, hash_scheme, take_baseline

BASELINE_EVENT = "baseline.recorded"
DRIFT_EVENT = "drift.detected"
STATEMENT_TIMEOUT = "600s"


@dataclass(frozen=True, slots=True)
class WatchResult:
    """``status``: baseline_established | rebaselined | no_drift | drift | drift_known (already recorded)."""

    environment: str
    status: str
    detail: str
    report: DriftReport | None = None
    last_release: str | None = None  # release of the latest deployment still in effect, for messages
    reconciled: tuple[str, ...] = ()  # journal rows the ledger did not record, recorded (or alerted) now
    alerted: tuple[str, ...] = ()  # those of them no intent or release explains (deployment.unrecorded...)

    @property
    def drifted(self) -> bool:
        return self.status in ("drift", "drift_known")

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "status": self.status,
            "detail": self.detail,
            "drifted": self.drifted,
            "last_release": self.last_release,
            "report": self.report.to_payload() if self.report else None,
            "reconciled": list(self.reconciled),
            "alerted": list(self.alerted),
        }


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    seq: int
    at: datetime
    payload: dict[str, Any]


def latest_event(conn: Any, *, kind: str, subject: str) -> RecordedEvent | None:
    """The newest ledger event of ``kind`` about ``subject`` (an environment name), if any."""
    # Read straight from ledger.events: the ledger API lists events by release, and these have none.
    with conn.cursor() as cur:
        cur.execute(
            "SELECT seq, at, payload_text FROM ledger.events WHERE kind = %s AND subject = %s "
            "ORDER BY seq DESC LIMIT 1",
            (kind, subject),
        )
        row = cur.fetchone()
    return RecordedEvent(seq=row[0], at=row[1], payload=json.loads(row[2])) if row else None


@contextmanager
def _target(dsn: str) -> Iterator[Any]:
    """A REPEATABLE READ transaction on the target: journal head, rows and fingerprints from one snapshot."""
    conn = pg.connect(dsn, application_name="gardien drift watch")
    try:
        conn.set_session(isolation_level="REPEATABLE READ")
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


@contextmanager
def _ledger(config: GardienConfig) -> Iterator[Any]:
    conn = pg.connect(config_ledger_dsn(config), application_name="gardien drift watch")
    try:
        ledger.require_schema(conn)
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def watch(
    config: GardienConfig,
    environment: str,
    *,
    actor: str,
    now: datetime,
    airflow: ledger.AirflowIds | None = None,
    max_rows: int = 20,
    rebaseline_reason: str | None = None,
) -> WatchResult:
    """Compare ``environment`` with its last released state and record what was found in the ledger.

    No baseline yet, a changed catalog, or ``rebaseline_reason`` (a person accepting the current state) →
    a new baseline. Gardien's own deployments/rollbacks since the baseline and no other change → a new
    baseline too. Anything else that changed → a ``drift.detected`` event naming the rows (at most
    ``max_rows`` per table), recorded once per distinct drifted state. Safe to retry.
    Raises EnvironmentUnavailableError (target or ledger unreachable), LedgerError (baseline altered).
    """
    from dataclasses import replace

    from gardien.release.reconcile import reconcile_environment
    from gardien.release.service import StepContext

    env = resolve_environment(config, environment)
    # Gardien's own deployments are told from drift by the journal; one the ledger never recorded is
    # recorded (or alerted) first, so the watch never takes an unrecorded change for a known one.
    findings = reconcile_environment(
        config, environment, ctx=StepContext(actor=actor, now=now, airflow=airflow)
    )
    result = _watch(
        config,
        env,
        environment,
        actor=actor,
        now=now,
        airflow=airflow,
        max_rows=max_rows,
        rebaseline_reason=rebaseline_reason,
    )
    if not findings:
        return result
    return replace(
        result,
        reconciled=tuple(f.describe() for f in findings),
        alerted=tuple(f.describe() for f in findings if f.action == "alerted"),
    )


def _watch(
    config: GardienConfig,
    env: Any,
    environment: str,
    *,
    actor: str,
    now: datetime,
    airflow: ledger.AirflowIds | None,
    max_rows: int,
    rebaseline_reason: str | None,
) -> WatchResult:
    # Short ledger transactions only: an append holds a ledger-wide lock until commit, and a scan of a
    # large target must not stall every release step meanwhile.
    with _ledger(config) as lconn:
        recorded = latest_event(lconn, kind=BASELINE_EVENT, subject=environment)
        previous = latest_event(lconn, kind=DRIFT_EVENT, subject=environment)
    baseline = Baseline.from_payload(recorded.payload) if recorded else None

    def append(kind: str, payload: dict[str, Any], reason: str) -> None:
        # Inside the target transaction: if the ledger refuses, the target's new snapshot is undone too.
        with _ledger(config) as lconn:
            ledger.append_event(
                lconn,
                kind=kind,
                actor=actor,
                at=now,
                subject=environment,
                payload=payload,
                reason=reason[:2000],
                airflow=airflow,
            )

    with _target(env.dsn) as tconn, tconn.cursor() as cur:
        set_session(cur)
        cur.execute("SELECT set_config('statement_timeout', %s, true)", (STATEMENT_TIMEOUT,))
        catalog = bind_catalog(tconn, config.catalog, label=environment)
        active = [d for d in journal.history(cur) if d.rolled_back_at is None]
        last_release = active[-1].release_id if active else None

        def rebaseline(status: str, reason: str, report: DriftReport | None = None) -> WatchResult:
            new = take_baseline(cur, catalog, environment=environment)
            payload = new.to_payload()
            if report is not None and report.drifted:
                payload["accepted_drift"] = report.to_payload()
            append(BASELINE_EVENT, payload, reason)
            return WatchResult(environment, status, reason, report, last_release)

        if baseline is None or recorded is None:
            return rebaseline(
                "baseline_established",
                f"first drift watch of {environment}: its current state becomes the baseline",
            )
        if baseline.catalog_fingerprint != catalog.fingerprint:
            return rebaseline(
                "rebaselined", f"the catalog changed since the last baseline of {environment}: new baseline"
            )
        if baseline.row_hash != hash_scheme(cur, catalog):
            return rebaseline(
                "rebaselined",
                f"Gardien's row hashing changed since the last baseline of {environment}: new baseline",
            )
        if rebaseline_reason:
            try:  # the accepted drift goes into the new baseline's event, when it can still be computed
                accepted = check_drift(cur, catalog, baseline=baseline, max_rows=max_rows)
            except LedgerError:  # the stored snapshot was altered: re-establishing it is the repair
                accepted = None
            return rebaseline(
                "rebaselined", f"baseline re-established by {actor}: {rebaseline_reason}", accepted
            )
        report = check_drift(cur, catalog, baseline=baseline, max_rows=max_rows)
        if not report.drifted:
            if report.gardien_changes:
                return rebaseline(
                    "rebaselined",
                    f"{environment} matches its baseline plus Gardien's changes since "
                    f"({'; '.join(report.gardien_changes)}): new baseline",
                    report,
                )
            return WatchResult(environment, "no_drift", f"{environment}: no drift", report, last_release)
        if (
            previous is not None
            and previous.seq > recorded.seq
            and previous.payload.get("state_digest") == report.state_digest
        ):
            return WatchResult(
                environment,
                "drift_known",
                f"{report.summary()} (unchanged since recorded at {previous.at:%Y-%m-%d %H:%M} UTC)",
                report,
                last_release,
            )
        append(
            DRIFT_EVENT,
            {**report.to_payload(), "baseline_seq": recorded.seq, "last_release": last_release},
            report.summary(),
        )
        return WatchResult(environment, "drift", report.summary(), report, last_release)

"""Id crosswalks: which target id each natural key got in a deployment, digested into the chain."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2.extensions

from gardien.errors import LedgerError
from gardien.ledger.chain import AirflowIds, canonical_payload, sha256_hex
from gardien.ledger.deployments import get_deployment
from gardien.ledger.store import append_event, check_actor_and_time, database_errors


@dataclass(frozen=True, slots=True)
class CrosswalkRecord:
    """A crosswalk as recorded: its entries live in ledger.crosswalks; ``digest`` is in the chained event."""

    deployment_id: int
    table: str
    count: int
    digest: str


def record_crosswalk(
    conn: psycopg2.extensions.connection,
    *,
    deployment_id: int,
    table: str,
    entries: Mapping[tuple[Any, ...], Any] | Iterable[tuple[Sequence[Any], Any]],
    actor: str,
    at: datetime,
    airflow: AirflowIds | None = None,
) -> CrosswalkRecord:
    """Record which target id each natural key of ``table`` got in a deployment.

    The event carries the count and ``digest``, the SHA-256 of crosswalk_digest_text(entries), which can be
    recomputed from the stored rows (natural keys hold strings, integers, booleans and nulls only, so they
    survive jsonb unchanged; floats are refused).
    """
    check_actor_and_time(actor, at)
    deployment = get_deployment(conn, deployment_id)
    pairs = entries.items() if isinstance(entries, Mapping) else entries
    normalised = sorted((_natural_key(table, key), _target_id(table, key, target)) for key, target in pairs)
    text = crosswalk_digest_text(normalised)
    with database_errors(f"record the crosswalk of deployment {deployment_id}"), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ledger.crosswalks (deployment_id, table_name, natural_key, target_id) "
            "VALUES (%s, %s, %s::jsonb, %s)",
            [(deployment_id, table, key_text, target) for key_text, target in normalised],
        )
    record = CrosswalkRecord(deployment_id, table, len(normalised), sha256_hex(text))
    append_event(
        conn,
        kind="crosswalk.recorded",
        actor=actor,
        at=at,
        release_id=deployment.release_id,
        subject=table,
        payload={
            "deployment_id": deployment_id,
            "table": table,
            "count": record.count,
            "digest": record.digest,
        },
        airflow=airflow,
    )
    return record


def get_crosswalk(
    conn: psycopg2.extensions.connection, *, deployment_id: int, table: str
) -> dict[tuple[Any, ...], str]:
    """Natural key (tuple) → target id (text) for one table of one deployment."""
    with database_errors(f"read the crosswalk of deployment {deployment_id}"), conn.cursor() as cur:
        cur.execute(
            "SELECT natural_key, target_id FROM ledger.crosswalks WHERE deployment_id = %s AND table_name = %s",
            (deployment_id, table),
        )
        return {_as_tuple(key): target for key, target in cur.fetchall()}


def crosswalk_digest(conn: psycopg2.extensions.connection, *, deployment_id: int, table: str) -> str:
    """Recompute, from the stored rows, the digest the ``crosswalk.recorded`` event carries."""
    with database_errors(f"read the crosswalk of deployment {deployment_id}"), conn.cursor() as cur:
        cur.execute(
            "SELECT natural_key, target_id FROM ledger.crosswalks WHERE deployment_id = %s AND table_name = %s",
            (deployment_id, table),
        )
        entries = [(_key_text(key), target) for key, target in cur.fetchall()]
    return sha256_hex(crosswalk_digest_text(entries))


def crosswalk_digest_text(entries: Iterable[tuple[str, str]]) -> str:
    """One line per entry, sorted: canonical JSON of the natural key, TAB, target id."""
    return "".join(f"{key}\t{target}\n" for key, target in sorted(entries))


def _natural_key(table: str, key: Any) -> str:
    parts = list(key) if isinstance(key, (tuple, list)) else [key]

    def check(value: Any) -> None:
        if isinstance(value, float):
            raise LedgerError(
                f"crosswalk of {table}: natural key {parts!r} holds a float, which jsonb would not keep "
                "exactly; pass it as text."
            )
        if isinstance(value, (list, tuple)):
            for item in value:
                check(item)

    check(parts)
    canonical_payload({"natural_key": parts})  # refuses what PostgreSQL or JSON cannot hold
    return _key_text(parts)


def _key_text(parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _target_id(table: str, key: Any, target: Any) -> str:
    if target is None or isinstance(target, float) or str(target) == "":
        raise LedgerError(
            f"crosswalk of {table}: natural key {key!r} has no usable target id ({target!r}); "
            "record only rows the deployment actually inserted, with the id the target gave them."
        )
    return str(target)


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value

"""The ledger's hash chain, pure: the event value, its canonical form and its hash."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gardien.errors import LedgerError

GENESIS_HASH = "0" * 64
CANONICAL_HEADER = "gardien-ledger-event/1\n"
# Order matters: it is part of the documented canonical form (docs/adr/0002-ledger-hash-chain.md).
CANONICAL_FIELDS = (
    "seq",
    "at",
    "kind",
    "actor",
    "release_id",
    "subject",
    "payload",
    "reason",
    "dag_id",
    "run_id",
    "task_id",
    "prev_hash",
)
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
HASH_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class AirflowIds:
    """Where in Airflow an event was produced (all optional: the CLI has none)."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One link of the chain, as stored. ``payload_text`` is the exact canonical JSON that was hashed."""

    seq: int
    at: datetime
    kind: str
    actor: str
    release_id: str | None
    subject: str | None
    payload_text: str
    reason: str | None
    airflow: AirflowIds
    prev_hash: str
    hash: str
    recorded_at: datetime | None = None

    @property
    def payload(self) -> Any:
        """The payload, parsed from the hashed text (not from the jsonb copy)."""
        return json.loads(self.payload_text)

    def canonical(self) -> str:
        """The canonical text whose SHA-256 is ``hash``."""
        return canonical_text(canonical_values(self))


def canonical_timestamp(at: datetime) -> str:
    """UTC, microseconds always present: what PostgreSQL's timestamptz keeps exactly."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise LedgerError(
            f"timestamp {at.isoformat()} has no time zone: pass an aware datetime (UTC preferred)."
        )
    u = at.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"


def canonical_payload(payload: Mapping[str, Any] | None) -> str:
    """Compact JSON with sorted keys and raw UTF-8; refused if PostgreSQL could not store it verbatim."""
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise LedgerError(
            f"event payload must be a mapping, got {type(payload).__name__}: wrap it in a dict."
        )
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LedgerError(
            f"event payload is not canonical JSON: {exc}. Use str/int/float/bool/None, lists and dicts "
            "with string keys; convert dates and decimals to strings."
        ) from exc
    check_text("payload", text)
    # jsonb refuses \u0000 even escaped; json.dumps writes a NUL as that escape.
    if "\\u0000" in text:
        raise LedgerError("event payload contains a NUL character, which PostgreSQL cannot store: remove it.")
    return text


def check_text(name: str, value: str | None) -> str | None:
    """Refuse strings PostgreSQL's text cannot hold byte for byte (NUL, lone surrogates)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise LedgerError(f"{name} must be a string, got {type(value).__name__}.")
    if "\x00" in value:
        raise LedgerError(f"{name} contains a NUL character, which PostgreSQL cannot store: remove it.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LedgerError(f"{name} is not valid Unicode ({exc.reason}): fix the text's encoding.") from exc
    return value


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise LedgerError(
            f"event kind {kind!r} is not allowed: use dotted lower-case words such as 'release.created'."
        )
    return kind


def check_hash(name: str, value: str) -> str:
    if not isinstance(value, str) or not HASH_RE.match(value):
        raise LedgerError(f"{name} {value!r} is not a SHA-256 hex digest (64 lower-case hex characters).")
    return value


def canonical_values(event: Event) -> dict[str, str | None]:
    """Each canonical field of ``event`` as text (or None), in CANONICAL_FIELDS order."""
    return {
        "seq": str(event.seq),
        "at": canonical_timestamp(event.at),
        "kind": event.kind,
        "actor": event.actor,
        "release_id": event.release_id,
        "subject": event.subject,
        "payload": event.payload_text,
        "reason": event.reason,
        "dag_id": event.airflow.dag_id,
        "run_id": event.airflow.run_id,
        "task_id": event.airflow.task_id,
        "prev_hash": event.prev_hash,
    }


def canonical_text(values: Mapping[str, str | None]) -> str:
    """Header line, then per field ``name SP octet-length SP value LF`` (``name SP - LF`` for NULL).

    Length-prefixed so any value (newlines included) is unambiguous and another tool, even SQL, can
    rebuild it.
    """
    parts = [CANONICAL_HEADER]
    for name in CANONICAL_FIELDS:
        value = values[name]
        if value is None:
            parts.append(f"{name} -\n")
        else:
            parts.append(f"{name} {len(value.encode('utf-8'))} {value}\n")
    return "".join(parts)


def parse_canonical(text: str) -> dict[str, str | None]:
    """Inverse of canonical_text; raises LedgerError if ``text`` is not in that form."""
    data = text.encode("utf-8")
    header = CANONICAL_HEADER.encode()
    if not data.startswith(header):
        raise LedgerError("canonical text does not start with the gardien-ledger-event/1 header.")
    pos = len(header)
    values: dict[str, str | None] = {}
    for name in CANONICAL_FIELDS:
        prefix = f"{name} ".encode()
        if not data.startswith(prefix, pos):
            raise LedgerError(f"canonical text: field {name!r} expected at byte {pos}.")
        pos += len(prefix)
        if data.startswith(b"-\n", pos):
            values[name] = None
            pos += 2
            continue
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise LedgerError(f"canonical text: field {name!r} has no length.")
        length = int(data[pos:space])
        start, end = space + 1, space + 1 + length
        if data[end : end + 1] != b"\n":
            raise LedgerError(f"canonical text: field {name!r} is not {length} bytes long.")
        values[name] = data[start:end].decode("utf-8")
        pos = end + 1
    if pos != len(data):
        raise LedgerError("canonical text: trailing bytes after the last field.")
    return values


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_hash(event: Event) -> str:
    """SHA-256 (hex) of the event's canonical text; ``event.hash`` itself is not part of it."""
    return sha256_hex(event.canonical())

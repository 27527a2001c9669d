"""Verification of the hash chain, pure: walk stored events in order and name the first broken link."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gardien.errors import LedgerError
from gardien.ledger.chain import (
    CANONICAL_FIELDS,
    GENESIS_HASH,
    HASH_RE,
    Event,
    parse_canonical,
    sha256_hex,
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event row as read back for verification: the columns plus the canonical text stored with them."""

    event: Event
    stored_canonical: str


@dataclass(frozen=True, slots=True)
class Anchor:
    """A (seq, hash) pair published outside the ledger, against which a later verification is checked."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """Read ``SEQ:HASH`` (as printed by ``gardien audit verify``)."""
        seq, _, digest = text.partition(":")
        if not seq.isdigit() or not HASH_RE.match(digest):
            raise LedgerError(f"anchor {text!r} is not SEQ:HASH, e.g. 42:{'ab' * 32}.")
        return cls(seq=int(seq), hash=digest)


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first place where the chain does not hold."""

    seq: int
    problem: str
    expected_hash: str
    stored_hash: str
    altered_fields: tuple[str, ...] = ()

    def describe(self) -> str:
        fields = f" (altered: {', '.join(self.altered_fields)})" if self.altered_fields else ""
        return (
            f"chain broken at seq {self.seq}: {self.problem}{fields}; "
            f"expected {self.expected_hash}, stored {self.stored_hash}"
        )


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of a verification. ``head_hash`` is worth publishing elsewhere: it anchors the tail."""

    ok: bool
    checked: int
    first_broken: BrokenLink | None = None
    head_seq: int | None = None
    head_hash: str = field(default=GENESIS_HASH)


def verify_events(rows: Iterable[StoredEvent], *, anchor: Anchor | None = None) -> ChainReport:
    """Walk ``rows`` in seq order and report the first link that does not hold.

    Per row: the columns must rebuild the stored canonical text, that text must hash to the stored hash,
    and prev_hash must equal the previous row's stored hash (genesis: 64 zeros). A chain alone cannot
    reveal a truncated or wholly rewritten tail; ``anchor``, a (seq, hash) published earlier (report,
    Slack, ticket), can: that row must still exist with that hash.
    """
    checked = 0
    previous: Event | None = None
    anchor_seen = False
    for row in rows:
        event = row.event
        broken = _check_row(row, previous)
        if broken is None and anchor is not None and event.seq == anchor.seq:
            anchor_seen = True
            if event.hash != anchor.hash:
                broken = BrokenLink(
                    seq=event.seq,
                    problem="the row no longer has the hash published for it: history up to here was rewritten",
                    expected_hash=anchor.hash,
                    stored_hash=event.hash,
                )
        if broken is not None:
            return _report(checked, previous, broken)
        checked += 1
        previous = event
    if anchor is not None and not anchor_seen:
        return _report(
            checked,
            previous,
            BrokenLink(
                seq=anchor.seq,
                problem="the anchored row is missing: the log was truncated or renumbered",
                expected_hash=anchor.hash,
                stored_hash="",
            ),
        )
    return _report(checked, previous, None)


def _report(checked: int, previous: Event | None, broken: BrokenLink | None) -> ChainReport:
    return ChainReport(
        ok=broken is None,
        checked=checked,
        first_broken=broken,
        head_seq=previous.seq if previous else None,
        head_hash=previous.hash if previous else GENESIS_HASH,
    )


def _check_row(row: StoredEvent, previous: Event | None) -> BrokenLink | None:
    event = row.event
    recomputed = event.canonical()
    expected = sha256_hex(recomputed)
    if recomputed != row.stored_canonical:
        return BrokenLink(
            seq=event.seq,
            problem="the row's columns no longer match the canonical text recorded with it",
            expected_hash=expected,
            stored_hash=event.hash,
            altered_fields=_altered_fields(recomputed, row.stored_canonical),
        )
    if expected != event.hash:
        return BrokenLink(
            seq=event.seq,
            problem="the stored hash is not the SHA-256 of the row's canonical text",
            expected_hash=expected,
            stored_hash=event.hash,
            altered_fields=("hash",),
        )
    previous_hash = previous.hash if previous else GENESIS_HASH
    if event.prev_hash != previous_hash:
        if previous is None:
            where = "the first row does not start from the genesis hash (earlier rows deleted?)"
        elif event.seq != previous.seq + 1:
            where = (
                f"prev_hash does not match seq {previous.seq}, the row before it; "
                f"rows between seq {previous.seq} and {event.seq} are missing (deleted?)"
            )
        else:
            # This row is self-consistent (checked above), so the previous one was rewritten and rehashed.
            where = f"prev_hash does not match seq {previous.seq}, which was rewritten and rehashed"
        return BrokenLink(
            seq=event.seq, problem=where, expected_hash=previous_hash, stored_hash=event.prev_hash
        )
    return None


def _altered_fields(recomputed: str, stored: str) -> tuple[str, ...]:
    try:
        original = parse_canonical(stored)
    except LedgerError:
        return ("canonical",)
    current = parse_canonical(recomputed)
    return tuple(name for name in CANONICAL_FIELDS if original[name] != current[name])

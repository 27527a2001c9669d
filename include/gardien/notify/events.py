"""Plain input values for the Slack message builders (counts, validation failures, drift)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gardien.notify.blocks import escape


@dataclass(frozen=True, slots=True)
class TableCounts:
    """How many rows a changeset (or a deployment) inserts, updates and deletes in one table."""

    table: str
    inserts: int = 0
    updates: int = 0
    deletes: int = 0

    def __post_init__(self) -> None:
        if min(self.inserts, self.updates, self.deletes) < 0:
            raise ValueError(f"negative row count for table {self.table!r}")

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes

    @classmethod
    def from_mapping(cls, counts: Mapping[str, Mapping[str, int]]) -> tuple[TableCounts, ...]:
        """``{"medicament": {"inserts": 2, "updates": 1}}`` → one value per table, in the given order."""
        return tuple(
            cls(
                table=table,
                inserts=int(c.get("inserts", 0)),
                updates=int(c.get("updates", 0)),
                deletes=int(c.get("deletes", 0)),
            )
            for table, c in counts.items()
        )


@dataclass(frozen=True, slots=True)
class ValidationFailure:
    """One failed expectation: the table, the rule, and the natural keys of offending rows."""

    table: str
    rule: str
    keys: tuple[Mapping[str, object], ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DriftItem:
    """Rows of a managed table that differ from what Gardien last recorded for an environment."""

    table: str
    rows: int
    keys: tuple[Mapping[str, object], ...] = field(default=())


def short_hash(changeset_hash: str) -> str:
    """The first 12 hex digits, enough to recognise a changeset in a channel."""
    value = changeset_hash.removeprefix("sha256:")
    return value[:12]


def counts_summary(counts: Sequence[TableCounts]) -> str:
    """``12 inserts, 3 updates, 1 delete in 4 tables`` (plain text, unescaped)."""
    ins = sum(c.inserts for c in counts)
    upd = sum(c.updates for c in counts)
    dele = sum(c.deletes for c in counts)
    touched = sum(1 for c in counts if c.total)
    return (
        f"{_plural(ins, 'insert')}, {_plural(upd, 'update')}, {_plural(dele, 'delete')} "
        f"in {_plural(touched, 'table')}"
    )


def counts_table(counts: Sequence[TableCounts], *, limit: int = 20) -> str:
    """A monospaced per-table breakdown (escaped mrkdwn); tables without changes are left out."""
    rows = [c for c in counts if c.total]
    if not rows:
        return "_no row changes_"
    width = max(len(c.table) for c in rows[:limit])
    lines = [f"{'table'.ljust(width)}  +ins  ~upd  -del"]
    lines += [f"{c.table.ljust(width)}  {c.inserts:>4}  {c.updates:>4}  {c.deletes:>4}" for c in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"… and {len(rows) - limit} more tables")
    return "```" + escape("\n".join(lines)) + "```"


def keys_text(keys: Sequence[Mapping[str, object]], *, limit: int = 3) -> str:
    """``code_ucd=3400891, rang=2; …`` (plain text, unescaped), at most ``limit`` rows."""
    shown = ["(" + ", ".join(f"{k}={v}" for k, v in key.items()) + ")" for key in keys[:limit]]
    if len(keys) > limit:
        shown.append(f"+{len(keys) - limit} more")
    return " ".join(shown)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"

"""The portable changeset: inserts, field-level updates and deletes by natural key; canonical JSON; id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gardien.errors import ChangesetError, UsageError
from gardien.fingerprint import ScopeFingerprint
from gardien.portable import Key, freeze, key_text

# /2: fingerprints of gardien.rowhash (gardien.rowhash.SCHEME); /1 summed SQL-rendered row hashes.
FORMAT = "gardien.changeset/2"


@dataclass(frozen=True, slots=True)
class FieldChange:
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Insert:
    key: Key
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Update:
    key: Key
    baseline: dict[str, Any]  # the whole target row at capture (value columns)
    changes: dict[str, FieldChange]

    @property
    def wanted(self) -> dict[str, Any]:
        return {**self.baseline, **{c: ch.after for c, ch in self.changes.items()}}


@dataclass(frozen=True, slots=True)
class Delete:
    key: Key
    baseline: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TableChanges:
    table: str
    inserts: tuple[Insert, ...] = ()
    updates: tuple[Update, ...] = ()
    deletes: tuple[Delete, ...] = ()

    @property
    def count(self) -> int:
        return len(self.inserts) + len(self.updates) + len(self.deletes)

    def keys(self) -> list[Key]:
        return [r.key for r in (*self.inserts, *self.updates, *self.deletes)]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Changeset:
    """What carrying the source's managed scope onto the target means, in portable form.

    Empty ``tables`` is a normal changeset: the target already equals the source.
    """

    catalog_fingerprint: str
    source_fingerprint: ScopeFingerprint
    target_fingerprint: ScopeFingerprint
    tables: tuple[TableChanges, ...]
    # The id once computed (a changeset is never modified: its content is its identity).
    _id: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def is_empty(self) -> bool:
        return not any(t.count for t in self.tables)

    def for_table(self, name: str) -> TableChanges:
        return next((t for t in self.tables if t.table == name), TableChanges(table=name))

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            t.table: {"inserts": len(t.inserts), "updates": len(t.updates), "deletes": len(t.deletes)}
            for t in self.tables
        }

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "catalog_fingerprint": self.catalog_fingerprint,
            "source_fingerprint": self.source_fingerprint.to_dict(),
            "target_fingerprint": self.target_fingerprint.to_dict(),
            "tables": [
                {
                    "table": t.table,
                    "inserts": [{"key": r.key, "values": r.values} for r in t.inserts],
                    "updates": [
                        {
                            "key": r.key,
                            "baseline": r.baseline,
                            "changes": {
                                c: {"before": ch.before, "after": ch.after} for c, ch in r.changes.items()
                            },
                        }
                        for r in t.updates
                    ],
                    "deletes": [{"key": r.key, "baseline": r.baseline} for r in t.deletes],
                }
                for t in self.tables
            ],
        }

    @property
    def id(self) -> str:
        """SHA-256 of the canonical body: the identity approvals and the ledger bind to (computed once)."""
        if self._id is None:
            object.__setattr__(self, "_id", hashlib.sha256(_canonical(self.body()).encode()).hexdigest())
        return self._id  # type: ignore[return-value]

    def to_json(self) -> str:
        """Canonical serialisation: sorted keys, no insignificant whitespace; the id is recomputable."""
        return _canonical({"id": self.id, "changeset": self.body()})

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "changeset": self.body()}

    def body_json(self) -> str:
        """The canonical body alone: its SHA-256 is the id (what the content-addressed ledger stores)."""
        return _canonical(self.body())

    @classmethod
    def from_body_json(cls, text: str, *, expected_id: str) -> Changeset:
        """Parse a canonical body stored under ``expected_id`` (verified like ``from_json``)."""
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise ChangesetError(f"changeset {expected_id[:12]} is not valid JSON: {exc}") from exc
        return cls.from_json(_canonical({"id": expected_id, "changeset": body}))

    @classmethod
    def from_json(cls, text: str) -> Changeset:
        """Parse and verify a serialised changeset.

        Raises ChangesetError when the text is not a changeset, or when its content no longer hashes to its
        id (tampered or damaged).
        """
        try:
            doc = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise ChangesetError(
                f"not a changeset: invalid JSON ({exc}). Produce it with `gardien diff -o`."
            ) from exc
        if (
            not isinstance(doc, dict)
            or set(doc) != {"id", "changeset"}
            or not isinstance(doc["changeset"], dict)
        ):
            raise ChangesetError(
                "not a changeset: expected an object with 'id' and 'changeset'. Use `gardien diff -o`."
            )
        actual = hashlib.sha256(_canonical(doc["changeset"]).encode()).hexdigest()
        if actual != doc["id"]:
            raise ChangesetError(
                f"changeset {str(doc['id'])[:12]} was altered: its content hashes to {actual[:12]}. "
                "Do not edit changesets; capture a new one with `gardien diff`."
            )
        found = doc["changeset"].get("format")
        if isinstance(found, str) and found.startswith("gardien.changeset/") and found != FORMAT:
            raise ChangesetError(
                f"changeset {actual[:12]} has format {found}, made by another Gardien version (this one reads "
                f"{FORMAT}; their fingerprints are computed differently). Capture it again with `gardien diff`."
            )
        try:
            changeset = _from_body(doc["changeset"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ChangesetError(f"malformed changeset {actual[:12]}: {exc!r}. Capture a new one.") from exc
        if changeset.id != actual:
            raise ChangesetError(
                f"malformed changeset {actual[:12]}: it is not in canonical form. Capture a new one."
            )
        return changeset


def read_changeset(path: Path) -> Changeset:
    """The changeset in file ``path``, verified (``Changeset.from_json``).

    Raises UsageError when the file cannot be read, ChangesetError when it is not UTF-8 text or not a
    changeset (naming the first byte that is not UTF-8).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"cannot read changeset {path}: {exc.strerror}. Give the file `gardien diff -o` wrote."
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ChangesetError(
            f"{path} is not a changeset: byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8 "
            "(a changeset is the UTF-8 JSON file `gardien diff -o` writes); nothing was changed."
        ) from None
    return Changeset.from_json(text)


def _check_value(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return freeze([_check_value(v) for v in value])
    raise ValueError(f"unexpected value {value!r} (values are text, null or keys)")


def _row_values(data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"expected an object of column values, got {data!r}")
    return {str(c): _check_value(v) for c, v in data.items()}


def _key(value: Any) -> Key:
    if not isinstance(value, list) or not value:
        raise ValueError(f"natural key {value!r} is not a non-empty list")
    return freeze(_check_value(value))


def _from_body(body: dict[str, Any]) -> Changeset:
    if body.get("format") != FORMAT:
        raise ValueError(f"format {body.get('format')!r}, expected {FORMAT!r}")
    tables = []
    for t in body["tables"]:
        tables.append(
            TableChanges(
                table=str(t["table"]),
                inserts=tuple(
                    Insert(key=_key(r["key"]), values=_row_values(r["values"])) for r in t["inserts"]
                ),
                updates=tuple(
                    Update(
                        key=_key(r["key"]),
                        baseline=_row_values(r["baseline"]),
                        changes={
                            c: FieldChange(before=_check_value(ch["before"]), after=_check_value(ch["after"]))
                            for c, ch in r["changes"].items()
                        },
                    )
                    for r in t["updates"]
                ),
                deletes=tuple(
                    Delete(key=_key(r["key"]), baseline=_row_values(r["baseline"])) for r in t["deletes"]
                ),
            )
        )
    return Changeset(
        catalog_fingerprint=str(body["catalog_fingerprint"]),
        source_fingerprint=ScopeFingerprint.from_dict(body["source_fingerprint"]),
        target_fingerprint=ScopeFingerprint.from_dict(body["target_fingerprint"]),
        tables=tuple(tables),
    )


def sort_rows(rows: list[Any]) -> tuple[Any, ...]:
    """Rows in canonical order (by their key's canonical text) so equal changesets serialise equally."""
    return tuple(sorted(rows, key=lambda r: key_text(r.key)))

"""A changeset seen by validation: per-table counts and deleted natural keys (engine-format independent)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gardien.errors import ChangesetError


@dataclass(frozen=True, slots=True)
class TableChanges:
    """What a changeset does to one table. ``deleted_keys`` are natural keys as column → value."""

    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    deleted_keys: tuple[dict[str, Any], ...] = ()

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes


@dataclass(frozen=True, slots=True)
class ChangeSummary:
    """Table name → TableChanges. The changeset rules (blast radius, frozen, deletions) read only this."""

    tables: dict[str, TableChanges] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return all(c.total == 0 for c in self.tables.values())

    def for_table(self, table: str) -> TableChanges:
        return self.tables.get(table, TableChanges())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangeSummary:
        """Build from ``{table: {inserts, updates, deletes, deleted_keys: [{col: value}]}}``.

        Raises ChangesetError naming the table and the field when the shape is wrong.
        """
        if not isinstance(data, Mapping):
            raise ChangesetError("change summary: expected a mapping table → {inserts, updates, deletes}.")
        tables: dict[str, TableChanges] = {}
        for table, raw in data.items():
            if not isinstance(raw, Mapping):
                raise ChangesetError(
                    f"change summary: {table}: expected a mapping with inserts/updates/deletes."
                )
            extra = sorted(set(raw) - {"inserts", "updates", "deletes", "deleted_keys"})
            if extra:
                raise ChangesetError(f"change summary: {table}: unknown field(s) {', '.join(extra)}.")
            counts = {}
            for name in ("inserts", "updates", "deletes"):
                value = raw.get(name, 0)
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ChangesetError(
                        f"change summary: {table}.{name}: {value!r} is not a row count (integer >= 0)."
                    )
                counts[name] = value
            keys = raw.get("deleted_keys", [])
            if not isinstance(keys, list | tuple) or not all(isinstance(k, Mapping) for k in keys):
                raise ChangesetError(
                    f"change summary: {table}.deleted_keys: expected a list of {{column: value}}."
                )
            if len(keys) > counts["deletes"]:
                raise ChangesetError(
                    f"change summary: {table}: {len(keys)} deleted keys but deletes = {counts['deletes']}."
                )
            tables[str(table)] = TableChanges(**counts, deleted_keys=tuple(dict(k) for k in keys))
        return cls(tables=tables)

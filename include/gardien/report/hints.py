"""What the catalog tells the report about fields and deletes: list fields (items joined by a separator),
soft-delete tables (a "delete" there retires the row) and retire tables (``delete: {retire: ...}``: an update
flipping the retire column retires or unretires the row, with its reason). Optional: a report built from the
ledger alone has none."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gardien.config import Retire


@dataclass(frozen=True, slots=True)
class CatalogHints:
    """``list_separators`` maps (table, column) to the separator of a list field; ``retired_by`` maps a
    soft-delete table to its retirement flag as people read it (``actif = false``); ``retire`` maps a table
    with ``delete: {retire: ...}`` to that policy (its rows stay managed; see gardien.retire)."""

    list_separators: Mapping[tuple[str, str], str] = field(default_factory=dict)
    retired_by: Mapping[str, str] = field(default_factory=dict)
    retire: Mapping[str, Retire] = field(default_factory=dict)

    @classmethod
    def from_catalog(cls, catalog: Any) -> CatalogHints:
        """From a CatalogConfig (``gardien.config``): declared list references, soft-delete and retire
        policies."""
        separators: dict[tuple[str, str], str] = {}
        retired: dict[str, str] = {}
        retire: dict[str, Retire] = {}
        for table in getattr(catalog, "tables", None) or ():
            for ref in getattr(table, "logical_references", None) or ():
                if getattr(ref, "separator", None):
                    separators[(table.name, ref.column)] = ref.separator
            soft = getattr(table, "soft_delete", None)
            if soft is not None:
                value = soft.value
                shown = str(value).lower() if isinstance(value, bool) else str(value)
                retired[table.name] = f"{soft.column} = {shown}"
            policy = getattr(table, "retire", None)
            if policy is not None:
                retire[table.name] = policy
        return cls(list_separators=separators, retired_by=retired, retire=retire)


def set_difference(before: Any, after: Any, separator: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(added, removed) items of a list field, in the order they appear; None when a side is not a list text.

    Items are compared as trimmed texts; an empty or NULL side is the empty list.
    """

    def items(value: Any) -> list[str] | None:
        if value is None or value == "":
            return []
        if not isinstance(value, str):
            return None
        return [i.strip() for i in value.split(separator) if i.strip()]

    old, new = items(before), items(after)
    if old is None or new is None:
        return None
    old_set, new_set = set(old), set(new)
    added = tuple(dict.fromkeys(i for i in new if i not in old_set))
    removed = tuple(dict.fromkeys(i for i in old if i not in new_set))
    return added, removed

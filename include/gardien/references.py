"""Checking that every key a changeset refers to will exist in the target, with near-miss suggestions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog, by_natural_key
from gardien.changeset import Changeset
from gardien.keys import KeyMap
from gardien.portable import Key, key_text, qualified
from gardien.refvalues import check_value_references, dangling, external_allowed


@dataclass(frozen=True, slots=True)
class Reference:
    table: str
    key: Key
    column: str
    target_table: str
    target_key: Key


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip()).casefold()


def _walk(catalog: Catalog, changeset: Changeset) -> Iterator[tuple[str, Key, str, str, Key]]:
    """(table, key, column, target table, target key) of every reference the changeset writes: foreign-key
    values and declared logical references, per written row in column order."""
    for tc in changeset.tables:
        table = catalog.table(tc.table)
        width = len(table.natural_key)
        positions = {c: i for i, c in enumerate(table.natural_key)}
        # (column, target table, separator): a foreign key has no separator, its value is the target key.
        columns = [(c, fk.table, None) for c, fk in table.fks.items()]
        columns += [
            (r.column, r.target_table, r.separator or "")
            for r in table.logical_references
            if by_natural_key(catalog.table(r.target_table), r.target_columns)  # others: gardien.refvalues
        ]
        if not columns:
            continue
        # Inserts write their values, updates the values they change (FieldChange.after).
        written = [(r.key, r.values) for r in tc.inserts]
        written += [(r.key, {c: ch.after for c, ch in r.changes.items()}) for r in tc.updates]
        for key, values in written:
            if type(key) is not tuple or len(key) != width:
                dict(zip(table.natural_key, key, strict=True))  # a key that does not fit raises here
            for column, target, separator in columns:
                if column in values:
                    value = values[column]
                elif column in positions:
                    value = key[positions[column]]
                else:
                    continue
                if value is None:
                    continue
                if separator is None:
                    yield table.name, key, column, target, value
                    continue
                for part in value.split(separator) if separator else [value]:
                    if part != "":
                        yield table.name, key, column, target, (part,)


def collect(catalog: Catalog, changeset: Changeset) -> list[Reference]:
    """Every reference written by the changeset: foreign-key values and declared logical references."""
    return [Reference(*ref) for ref in _walk(catalog, changeset)]


def check_references(cur: Any, *, catalog: Catalog, changeset: Changeset, keymap: KeyMap) -> None:
    """Raise SourceDataError naming each row whose reference will not exist once the changeset is applied.

    A key exists afterwards if the target has it now (physically) or the changeset inserts it, and the
    changeset does not delete it. When a missing key differs from an existing one only by case or
    whitespace, the message names that nearest key. A logical reference's ``external`` rule allows the
    values it names; references to other unique column sets are checked by value (gardien.refvalues).
    """
    check_value_references(cur, catalog=catalog, changeset=changeset)
    by_table: dict[str, set[Key]] = {}
    for _, _, _, target, target_key in _walk(catalog, changeset):
        keys = by_table.get(target)
        if keys is None:
            keys = by_table[target] = set()
        keys.add(target_key)
    if not by_table:
        return
    inserted = {tc.table: {r.key for r in tc.inserts} for tc in changeset.tables}
    # A soft delete keeps the row (only its retired flag changes), so references to it still resolve;
    # validation, not the engine, judges whether a retired row may stay referenced.
    deleted = {
        tc.table: {r.key for r in tc.deletes}
        for tc in changeset.tables
        if catalog.table(tc.table).soft_delete is None
    }
    for name, keys in by_table.items():
        keymap.add(catalog.table(name), keys - inserted.get(name, set()))
    keymap.resolve(by_table)
    # Usual case, decided without reading the resolved keys back: every key registered for these tables
    # resolved (so every referenced key exists now) and none is deleted by the changeset.
    empty: set[Key] = set()
    if not any(k in deleted.get(name, empty) for name, keys in by_table.items() for k in keys) and all(
        keymap.all_resolved(catalog.table(name)) for name in by_table
    ):
        return
    existing = {name: set(keymap.ids(catalog.table(name))) for name in by_table}
    if not any(
        (k not in existing[name] and k not in inserted.get(name, empty)) or k in deleted.get(name, empty)
        for name, keys in by_table.items()
        for k in keys
    ):
        return
    refs = collect(catalog, changeset)  # the rows behind the missing keys, for the message
    missing = [
        r
        for r in refs
        if (
            r.target_key not in existing[r.target_table]
            and r.target_key not in inserted.get(r.target_table, set())
        )
        or r.target_key in deleted.get(r.target_table, set())
    ]
    missing = _not_external(cur, catalog, missing)
    if not missing:
        return
    lines = []
    for ref in missing[:50]:
        near = _nearest(
            cur, catalog.table(ref.target_table), ref.target_key, inserted.get(ref.target_table, set())
        )
        if near == ref.target_key:
            hint = " (the changeset deletes it)"
        elif near:
            hint = f" (nearest existing key: {key_text(near)}, which differs only by case or whitespace)"
        else:
            hint = ""
        lines.append(
            f"{ref.table} {key_text(ref.key)}: {ref.column} refers to {ref.target_table} "
            f"{key_text(ref.target_key)}, which will not exist in the target{hint}"
        )
    raise dangling("keys", lines, total=len(missing))


def _not_external(cur: Any, catalog: Catalog, missing: list[Reference]) -> list[Reference]:
    """``missing`` without the logical references that their ``external`` rule allows."""
    rules = {
        (t.name, r.column): r.external for t in catalog.tables for r in t.logical_references if r.external
    }
    allowed: dict[tuple[str, str], dict[str, str]] = {}
    for (table, column), rule in rules.items():
        values = {r.target_key[0] for r in missing if (r.table, r.column) == (table, column)}
        allowed[(table, column)] = external_allowed(cur, rule, values) if values else {}
    return [r for r in missing if r.target_key[0] not in allowed.get((r.table, r.column), {})]


def _nearest(cur: Any, table: BoundTable, key: Key, inserted: set[Key]) -> Key | None:
    if len(key) != 1 or not isinstance(key[0], str) or table.natural_key[0] in table.fks:
        return None
    wanted = _normal(key[0])
    for candidate in sorted(inserted, key=key_text):
        if isinstance(candidate[0], str) and _normal(candidate[0]) == wanted:
            return candidate
    column = sql.Identifier(table.natural_key[0])
    cur.execute(
        sql.SQL(
            "SELECT t0.{c}::text FROM {t} AS t0 WHERE lower(regexp_replace(btrim(t0.{c}::text), '\\s+', ' ', 'g')) = %s "
            "ORDER BY 1 LIMIT 1"
        ).format(c=column, t=qualified(table)),
        (wanted,),
    )
    row = cur.fetchone()
    return (row[0],) if row else None

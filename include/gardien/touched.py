"""Reading rows in portable form (key and values as gardien.portable.RowSql's JSON renders them) without
rendering or parsing JSON: what an apply or a rollback touches, and what a diff found different.

The portable components are selected as plain columns: a text component is ``column::text`` (as the JSON
array holds it), a foreign key is an "is null" flag followed by the referenced row's key components,
recursively. The Python side rebuilds the tuples with a decoder compiled once per table.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog
from gardien.portable import Key, qualified, referenced_join


class Reader:
    """The SELECT list, joins and row decoder of one table."""

    def __init__(self, catalog: Catalog, table: BoundTable) -> None:
        self.catalog = catalog
        self.table = table
        self.columns: list[sql.Composable] = [sql.SQL("t0.{}").format(sql.Identifier(table.pk))]
        self.joins: list[sql.Composable] = []
        self._aliases = itertools.count(1)
        key = self._key(table, "t0")
        values = [self._component(table, "t0", c) for c in table.value_columns]
        # Column names are embedded as Python literals (repr), positions as indexes: nothing else.
        source = "lambda r: ({key}, r[0], {{{values}}})".format(
            key=key,
            values=", ".join(f"{c!r}: {v}" for c, v in zip(table.value_columns, values, strict=True)),
        )
        self.decode: Callable[[tuple[Any, ...]], tuple[Key, Any, dict[str, Any]]] = eval(source, {})  # noqa: S307

    def _column(self, expr: sql.Composable) -> str:
        self.columns.append(expr)
        return f"r[{len(self.columns) - 1}]"

    def _key(self, table: BoundTable, alias: str) -> str:
        parts = [self._component(table, alias, c) for c in table.natural_key]
        return "(" + "".join(f"{p}, " for p in parts) + ")"

    def _component(self, table: BoundTable, alias: str, column: str) -> str:
        col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column))
        fk = table.fks.get(column)
        if fk is None:
            return self._column(sql.SQL("{}::text").format(col))
        # As gardien.portable.RowSql renders it: NULL, or the referenced row's natural key (LEFT JOIN).
        ref = self.catalog.table(fk.table)
        ref_alias = f"r{next(self._aliases)}"
        self.joins.append(referenced_join(ref, ref_alias, col))
        is_null = self._column(sql.SQL("{} IS NULL").format(col))
        return f"(None if {is_null} else {self._key(ref, ref_alias)})"

    def query(self, ids: sql.Composable) -> sql.Composed:
        return self.where(sql.SQL("t0.{} = ANY({})").format(sql.Identifier(self.table.pk), ids))

    def where(self, condition: sql.Composable) -> sql.Composed:
        """The rows (alias ``t0``) matching ``condition``; decode each with ``decode``."""
        return sql.SQL("SELECT {cols} FROM {t} AS t0 {joins} WHERE {condition}").format(
            cols=sql.SQL(", ").join(self.columns),
            t=qualified(self.table),
            joins=sql.SQL(" ").join(self.joins),
            condition=condition,
        )


def read_resolved(
    cur: Any, *, catalog: Catalog, table: BoundTable, keys: sql.Identifier
) -> Iterator[tuple[Key, Any, dict[str, Any]]]:
    """(key, id, values) of the rows whose ids are resolved in the key map's temp table ``keys`` of
    ``table`` (gardien.keys), read there by the server rather than sent back as a list (no scope filter)."""
    reader = Reader(catalog, table)
    cur.execute(reader.query(sql.SQL("ARRAY(SELECT id FROM {} WHERE id IS NOT NULL)").format(keys)))
    return map(reader.decode, cur.fetchall())

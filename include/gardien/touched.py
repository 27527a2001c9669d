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
from gardien.errors import ConfigurationError
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

    def where(
        self, condition: sql.Composable, *, extra: sql.Composable | None = None, lock: bool = False
    ) -> sql.Composed:
        """The rows (alias ``t0``) matching ``condition``; decode each with ``decode`` (``extra`` columns
        follow the decoded ones; ``lock`` locks the rows of ``t0``, not the referenced ones)."""
        cols = [*self.columns, extra] if extra is not None else self.columns
        return sql.SQL("SELECT {cols} FROM {t} AS t0 {joins} WHERE {condition}{lock}").format(
            cols=sql.SQL(", ").join(cols),
            t=qualified(self.table),
            joins=sql.SQL(" ").join(self.joins),
            condition=condition,
            lock=sql.SQL(" FOR UPDATE OF t0" if lock else ""),
        )


def read_resolved(
    cur: Any, *, catalog: Catalog, table: BoundTable, keys: sql.Identifier, whole: Whole | None = None
) -> Iterator[tuple[Key, Any, dict[str, Any], dict[str, str | None] | None]]:
    """(key, id, values, whole row) of the rows whose ids are resolved in the key map's temp table ``keys``
    of ``table`` (gardien.keys), read there by the server rather than sent back as a list (no scope filter).

    With ``whole`` the rows are also locked (FOR UPDATE, until the transaction ends: no other session can
    change them meanwhile, and one that changed them first is waited for and its committed values read)
    and returned whole, every column as its text (``Whole.read``); else the fourth item is None.
    """
    reader = Reader(catalog, table)
    ids = sql.SQL("t0.{} = ANY(ARRAY(SELECT id FROM {} WHERE id IS NOT NULL))").format(
        sql.Identifier(table.pk), keys
    )
    if whole is None:
        cur.execute(reader.where(ids))
        return ((*reader.decode(r), None) for r in cur.fetchall())
    cur.execute(reader.where(ids, extra=whole.select("t0"), lock=True))
    n, names = len(reader.columns), whole.names
    return ((*reader.decode(r), dict(zip(names, r[n:], strict=True))) for r in cur.fetchall())


class Whole:
    """Every column of one table as stored (managed or ignored, primary key included), each as its text.

    Journaled before-images and after-images are such rows: text is what each type's input function reads
    back exactly (with the pinned session settings, gardien.portable.SESSION_SETTINGS), so a row re-created
    from it is the row that was there, ignored NOT NULL columns included.
    """

    def __init__(self, cur: Any, table: BoundTable) -> None:
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '', a.attidentity = 'a', "
            "EXISTS (SELECT 1 FROM pg_constraint k WHERE k.contype = 'f' AND k.conrelid = c.oid "
            "AND k.confrelid = c.oid AND a.attnum = ANY(k.conkey)) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (table.schema, table.relname or table.name),
        )
        rows = cur.fetchall()
        if not rows:  # never an empty select list: name the table the database does not have
            raise ConfigurationError(
                f"{table.name}: table {table.schema}.{table.relname or table.name} has no columns in this "
                "database (dropped or renamed?); check the catalog's schema/table for it."
            )
        self.table = table
        self.names: tuple[str, ...] = tuple(r[0] for r in rows)
        self.types: dict[str, str] = {r[0]: r[1] for r in rows}
        # What a restoring INSERT may write (not generated), what an UPDATE may set (neither the primary key
        # nor an identity column GENERATED ALWAYS), and the self-references set once every row exists.
        self.insertable = tuple(r[0] for r in rows if not r[2])
        self.updatable = tuple(r[0] for r in rows if not r[2] and not r[3] and r[0] != table.pk)
        self.self_refs = tuple(r[0] for r in rows if r[4] and not r[2])

    def select(self, alias: str) -> sql.Composed:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(c)) for c in self.names
        )

    def read(self, cur: Any, ids: list[Any], *, lock: bool) -> dict[str, dict[str, str | None]]:
        """The rows whose primary key is in ``ids`` (values or their text), by primary key text; locked
        (FOR UPDATE) if ``lock``."""
        if not ids:
            return {}
        texts = [str(i) for i in ids]
        # Integer ids as one array text (cheaper than thousands of quoted parameters), others one by one.
        plain = all(type(i) is int or (type(i) is str and i.lstrip("-").isdigit()) for i in ids)
        cur.execute(
            sql.SQL("SELECT {cols} FROM {t} AS w WHERE w.{pk} = ANY({ids}::{typ}[]){lock}").format(
                cols=self.select("w"),
                t=qualified(self.table),
                pk=sql.Identifier(self.table.pk),
                ids=sql.Literal("{" + ",".join(texts) + "}") if plain else sql.Placeholder(),
                typ=sql.SQL(self.types[self.table.pk]),
                lock=sql.SQL(" FOR UPDATE" if lock else ""),
            ),
            None if plain else (texts,),
        )
        pk = self.names.index(self.table.pk)
        return {r[pk]: dict(zip(self.names, r, strict=True)) for r in cur.fetchall()}

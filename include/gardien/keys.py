"""Resolving portable natural keys to a database's own ids, set-based, through temporary tables."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog
from gardien.plan import table_order
from gardien.portable import Key, freeze, key_text, qualified

_instances = itertools.count(1)


class KeyMap:
    """Natural key → id for the keys one operation touches or references, kept in temp tables.

    One temp table per managed table holds (nk jsonb, id, one typed column per key component); resolving is
    one joined UPDATE per table, using the table's unique index on its natural key. Physical rows are
    found whatever the scope or soft-delete state: ids are what foreign keys and writes need.
    """

    def __init__(self, cur: Any, catalog: Catalog) -> None:
        self.cur = cur
        self.catalog = catalog
        self._prefix = f"_gk{next(_instances)}_"
        self._created: dict[str, sql.Identifier] = {}
        self._order = table_order(catalog)

    def temp(self, table: BoundTable) -> sql.Identifier:
        """The temp table of ``table`` (created on first use, dropped at transaction end)."""
        ident = self._created.get(table.name)
        if ident is None:
            ident = sql.Identifier(f"{self._prefix}{self.catalog.names.index(table.name)}")
            comps = [
                sql.SQL("t0.{} AS {}").format(sql.Identifier(c), sql.Identifier(f"k{i}"))
                for i, c in enumerate(table.natural_key)
            ]
            self.cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {tmp} ON COMMIT DROP AS SELECT NULL::jsonb AS nk, t0.{pk} AS id, {comps} "
                    "FROM {src} AS t0 WITH NO DATA"
                ).format(
                    tmp=ident,
                    pk=sql.Identifier(table.pk),
                    comps=sql.SQL(", ").join(comps),
                    src=qualified(table),
                )
            )
            self.cur.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (nk)").format(ident))
            self._created[table.name] = ident
        return ident

    def add(self, table: BoundTable, keys: Iterable[Key]) -> None:
        """Register keys of ``table`` (and, recursively, the parent keys inside them)."""
        keys = list(keys)
        if not keys:
            return
        for i, column in enumerate(table.natural_key):
            fk = table.fks.get(column)
            if fk is not None:
                self.add(self.catalog.table(fk.table), {k[i] for k in keys if k[i] is not None})
        self.cur.execute(
            sql.SQL(
                "INSERT INTO {} (nk) SELECT DISTINCT x::jsonb FROM unnest(%s::text[]) AS x ON CONFLICT (nk) DO NOTHING"
            ).format(self.temp(table)),
            ([key_text(k) for k in keys],),
        )

    def resolve(self, tables: Iterable[str] | None = None) -> None:
        """Look up the ids of every registered key still unresolved, parents first."""
        wanted = set(self._created if tables is None else tables)
        for name in self._order:
            if name not in wanted or name not in self._created:
                continue
            table = self.catalog.table(name)
            tmp = self._created[name]
            sets: list[sql.Composable] = []
            for i, column in enumerate(table.natural_key):
                fk = table.fks.get(column)
                if fk is None:
                    sets.append(
                        sql.SQL(
                            "{k} = (jsonb_populate_record(NULL::{src}, jsonb_build_object({c}, g.nk->{i}))).{col}"
                        ).format(
                            k=sql.Identifier(f"k{i}"),
                            src=qualified(table),
                            c=sql.Literal(column),
                            i=sql.Literal(i),
                            col=sql.Identifier(column),
                        )
                    )
                else:
                    parent = self.temp(self.catalog.table(fk.table))
                    sets.append(
                        sql.SQL("{k} = (SELECT p.id FROM {p} AS p WHERE p.nk = g.nk->{i})").format(
                            k=sql.Identifier(f"k{i}"), p=parent, i=sql.Literal(i)
                        )
                    )
            self.cur.execute(
                sql.SQL("UPDATE {} AS g SET {} WHERE g.id IS NULL").format(tmp, sql.SQL(", ").join(sets))
            )
            match = sql.SQL(" AND ").join(
                sql.SQL("t0.{} = g.{}").format(sql.Identifier(c), sql.Identifier(f"k{i}"))
                for i, c in enumerate(table.natural_key)
            )
            self.cur.execute(
                sql.SQL(
                    "UPDATE {tmp} AS g SET id = t0.{pk} FROM {src} AS t0 WHERE g.id IS NULL AND {match}"
                ).format(tmp=tmp, pk=sql.Identifier(table.pk), src=qualified(table), match=match)
            )

    def ids(self, table: BoundTable) -> dict[Key, Any]:
        """Resolved keys of ``table`` (unresolved ones are absent)."""
        if table.name not in self._created:
            return {}
        self.cur.execute(
            sql.SQL("SELECT nk::text, id FROM {} WHERE id IS NOT NULL").format(self._created[table.name])
        )
        return {freeze(json.loads(nk)): row_id for nk, row_id in self.cur.fetchall()}

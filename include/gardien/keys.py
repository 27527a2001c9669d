"""Resolving portable natural keys to a database's own ids, set-based, through typed temporary tables."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable
from typing import Any

from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog
from gardien.plan import table_order
from gardien.portable import Key, key_text, qualified

_instances = itertools.count(1)


def copy_field(value: str | None) -> str:
    """One field of COPY's text format (NULL as ``\\N``)."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def copy_json(text: str) -> str:
    """``copy_field`` of a canonical JSON text (key_text, values_text): only a backslash can need escaping,
    as JSON escapes control characters itself."""
    return text.replace("\\", "\\\\") if "\\" in text else text


class KeyTexts(dict):
    """Memo of gardien.portable.key_text: key → canonical text, each key rendered once per operation.

    Only keys made of text, None and nested such keys are remembered (equal keys of that form have equal
    texts); anything else is rendered by key_text on every call, exactly as before.
    """

    __slots__ = ()

    def __missing__(self, key: Any) -> str:
        return key_text(key, self)

    def text(self, key: Any) -> str:
        """key_text(key), memoised when the key is well formed."""
        try:
            return self[key]
        except TypeError:  # unhashable (a list inside): never memoised
            return key_text(key)


class KeyMap:
    """Natural key → id for the keys one operation touches or references, kept in temp tables.

    One temp table per managed table holds (nk text, id, one column per key component): ``nk`` is the key's
    canonical text (gardien.portable.key_text), a plain component is typed as the table's own column (COPY
    parses it with the column type's input function, as the portable text was produced by its output
    function), a foreign-key component holds the parent key's text (``p<i>``) and the parent's id (``k<i>``).
    Keys are resolved as they are added: COPY into a staging table, then one INSERT ... SELECT that looks
    up each key through the table's unique natural-key index (parents are added, hence resolved, first).
    Keys still unresolved (rows a write is about to insert) are looked up again by ``resolve`` once the
    writes say the table changed (``invalidate``). Physical rows are found whatever the scope or
    soft-delete state: ids are what foreign keys and writes need. The Python side remembers the key of
    each text, so reading ids back parses nothing.
    """

    def __init__(self, cur: Any, catalog: Catalog) -> None:
        self.cur = cur
        self.catalog = catalog
        self._prefix = f"_gk{next(_instances)}_"
        self._created: dict[str, sql.Identifier] = {}
        self._staging: dict[str, sql.Identifier] = {}
        self._keys: dict[str, dict[str, Key]] = {}  # table → key text → key
        self._ids: dict[str, dict[Key, Any]] = {}  # table → resolved key → id, until its temp table changes
        self.texts = KeyTexts()  # key → canonical text, shared by every step of the operation
        self._pending: set[str] = set()  # tables whose unresolved keys may resolve now
        self._order = table_order(catalog)

    def temp(self, table: BoundTable) -> sql.Identifier:
        """The temp table of ``table`` (created on first use, dropped at transaction end)."""
        ident = self._created.get(table.name)
        if ident is None:
            name = f"{self._prefix}{self.catalog.names.index(table.name)}"
            ident = sql.Identifier(name)
            comps: list[sql.Composable] = []
            for i, c in enumerate(table.natural_key):
                comps.append(sql.SQL("t0.{} AS {}").format(sql.Identifier(c), sql.Identifier(f"k{i}")))
                if c in table.fks:
                    comps.append(sql.SQL("NULL::text AS {}").format(sql.Identifier(f"p{i}")))
            self.cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {tmp} ON COMMIT DROP AS SELECT NULL::text AS nk, t0.{pk} AS id, {comps} "
                    "FROM {src} AS t0 WITH NO DATA"
                ).format(
                    tmp=ident,
                    pk=sql.Identifier(table.pk),
                    comps=sql.SQL(", ").join(comps),
                    src=qualified(table),
                )
            )
            self.cur.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (nk)").format(ident))
            staging = sql.Identifier(f"{name}_in")
            self.cur.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(staging, ident))
            self._created[table.name] = ident
            self._staging[table.name] = staging
            self._keys[table.name] = {}
        return ident

    def add(self, table: BoundTable, keys: Iterable[Key]) -> None:
        """Register keys of ``table`` (and, recursively, the parent keys inside them) and resolve them."""
        tmp = self.temp(table)
        known = self._keys[table.name]
        texts = self.texts
        new: dict[str, Key] = {}
        for k in keys:
            try:
                text = texts[k]
            except TypeError:  # unhashable (a list inside): rendered, never memoised
                text = key_text(k)
            if text not in known and text not in new:
                new[text] = k
        if not new:
            return
        fk_parts = [(i, table.fks[c]) for i, c in enumerate(table.natural_key) if c in table.fks]
        for i, fk in fk_parts:
            parents = {k[i] for k in new.values() if isinstance(k, tuple) and len(k) > i}
            self.add(self.catalog.table(fk.table), {p for p in parents if isinstance(p, tuple)})
        fk_index = {i for i, _ in fk_parts}
        loaded = [sql.Identifier("nk")]
        for i in range(len(table.natural_key)):
            loaded.append(sql.Identifier(f"p{i}" if i in fk_index else f"k{i}"))
        width = len(table.natural_key)
        is_fk = [i in fk_index for i in range(width)]
        malformed = "\t".join(["\\N"] * width)
        lines = []
        for text, k in new.items():
            # A malformed key (wrong shape) is registered but never resolves: callers report it as missing.
            if not (isinstance(k, tuple) and len(k) == width):
                lines.append(f"{copy_json(text)}\t{malformed}\n")
                continue
            fields = [copy_json(text)]
            for part, fk in zip(k, is_fk, strict=True):
                if fk:
                    # key_text renders JSON: only a backslash needs escaping for COPY.
                    fields.append(copy_json(texts.text(part)) if isinstance(part, tuple) else "\\N")
                else:
                    fields.append(copy_field(part) if isinstance(part, str) else "\\N")
            lines.append("\t".join(fields) + "\n")
        buf = io.StringIO("".join(lines))
        staging = self._staging[table.name]
        self.cur.copy_expert(
            sql.SQL("COPY {} ({}) FROM STDIN")
            .format(staging, sql.SQL(", ").join(loaded))
            .as_string(self.cur),
            buf,
        )
        # Foreign-key components first (the parents' temp tables are resolved): joined to the parents' temp
        # tables (unique nk: one match or none); then the key itself: one correlated lookup per key, always
        # through the unique indexes (never a scan of a large table).
        comps = [
            sql.SQL("{j}.id AS {k}").format(j=sql.Identifier(f"j{i}"), k=sql.Identifier(f"k{i}"))
            if i in fk_index
            else sql.SQL("s.{}").format(sql.Identifier(f"k{i}"))
            for i in range(width)
        ]
        joins = [
            sql.SQL("LEFT JOIN {p} AS {j} ON {j}.nk = s.{pi}").format(
                p=self.temp(self.catalog.table(fk.table)),
                j=sql.Identifier(f"j{i}"),
                pi=sql.Identifier(f"p{i}"),
            )
            for i, fk in fk_parts
        ]
        parents = [sql.SQL("s.{}").format(sql.Identifier(f"p{i}")) for i in sorted(fk_index)]
        columns = [sql.Identifier(f"k{i}") for i in range(width)]
        columns += [sql.Identifier(f"p{i}") for i in sorted(fk_index)]
        self.cur.execute(
            sql.SQL(
                "INSERT INTO {tmp} (nk, id, {columns}) SELECT x.nk, {lookup}, {xcols} "
                "FROM (SELECT s.nk, {comps} FROM {staging} AS s {joins} OFFSET 0) AS x"
            ).format(
                tmp=tmp,
                columns=sql.SQL(", ").join(columns),
                lookup=self._lookup(table, "x"),
                xcols=sql.SQL(", ").join(sql.SQL("x.{}").format(c) for c in columns),
                comps=sql.SQL(", ").join([*comps, *parents]),
                staging=staging,
                joins=sql.SQL(" ").join(joins),
            )
        )
        self.cur.execute(sql.SQL("TRUNCATE {}").format(staging))
        known.update(new)
        self._ids.pop(table.name, None)

    def _lookup(self, table: BoundTable, alias: str) -> sql.Composable:
        """The id of the row whose natural key is in ``alias``'s k<i> columns (NULL when there is none)."""
        match = sql.SQL(" AND ").join(
            sql.SQL("t0.{} = {}.{}").format(sql.Identifier(c), sql.Identifier(alias), sql.Identifier(f"k{i}"))
            for i, c in enumerate(table.natural_key)
        )
        # LIMIT 1: a target without a unique index on the natural key resolves to one of its duplicates,
        # as a joined UPDATE did (the diff reports duplicate keys).
        return sql.SQL("(SELECT t0.{pk} FROM {src} AS t0 WHERE {match} LIMIT 1)").format(
            pk=sql.Identifier(table.pk), src=qualified(table), match=match
        )

    def invalidate(self) -> None:
        """Rows were written: keys still unresolved may resolve now (see ``resolve``)."""
        self._pending.update(self._created)

    def resolve(self, tables: Iterable[str] | None = None) -> None:
        """Look up again, parents first, the keys still unresolved in tables written since (``invalidate``)."""
        wanted = set(self._created if tables is None else tables) & self._pending
        for name in self._order:
            if name not in wanted:
                continue
            self._pending.discard(name)
            table = self.catalog.table(name)
            tmp = self._created[name]
            fk_index = [i for i, c in enumerate(table.natural_key) if c in table.fks]
            if not fk_index:
                update = sql.SQL("UPDATE {tmp} AS g SET id = {lookup} WHERE g.id IS NULL").format(
                    tmp=tmp, lookup=self._lookup(table, "g")
                )
            else:
                # Foreign-key components looked up again in the parents' temp tables, then the key with
                # them: one pass over the unresolved rows.
                comps = [
                    sql.SQL("(SELECT p.id FROM {p} AS p WHERE p.nk = g.{pi})").format(
                        p=self.temp(self.catalog.table(table.fks[c].table)), pi=sql.Identifier(f"p{i}")
                    )
                    if i in fk_index
                    else sql.SQL("g.{}").format(sql.Identifier(f"k{i}"))
                    for i, c in enumerate(table.natural_key)
                ]
                update = sql.SQL(
                    "UPDATE {tmp} AS g SET ({fks}, id) = "
                    "(SELECT {xfks}, {lookup} FROM (SELECT {comps} OFFSET 0) AS x) WHERE g.id IS NULL"
                ).format(
                    tmp=tmp,
                    fks=sql.SQL(", ").join(sql.Identifier(f"k{i}") for i in fk_index),
                    xfks=sql.SQL(", ").join(
                        sql.SQL("x.{}").format(sql.Identifier(f"k{i}")) for i in fk_index
                    ),
                    lookup=self._lookup(table, "x"),
                    comps=sql.SQL(", ").join(
                        sql.SQL("{} AS {}").format(c, sql.Identifier(f"k{i}")) for i, c in enumerate(comps)
                    ),
                )
            cached = self._ids.get(name)
            if cached is None:
                self.cur.execute(update)
                continue
            # Only the rows this UPDATE touched can have changed: the cached ids are completed with them.
            self.cur.execute(update + sql.SQL(" RETURNING g.nk, g.id"))
            known = self._keys[name]
            for nk, row_id in self.cur.fetchall():
                if row_id is not None:
                    cached[known[nk]] = row_id

    def all_resolved(self, table: BoundTable) -> bool:
        """Whether every key registered for ``table`` resolved to a row (True when none is registered)."""
        if table.name not in self._created:
            return True
        self.cur.execute(
            sql.SQL("SELECT NOT EXISTS (SELECT FROM {} WHERE id IS NULL)").format(self._created[table.name])
        )
        return bool(self.cur.fetchone()[0])

    def ids(self, table: BoundTable) -> dict[Key, Any]:
        """Resolved keys of ``table`` (unresolved ones are absent)."""
        if table.name not in self._created:
            return {}
        cached = self._ids.get(table.name)
        if cached is not None:
            return dict(cached)
        self.cur.execute(
            sql.SQL("SELECT nk, id FROM {} WHERE id IS NOT NULL").format(self._created[table.name])
        )
        known = self._keys[table.name]
        ids = self._ids[table.name] = {known[nk]: row_id for nk, row_id in self.cur.fetchall()}
        return dict(ids)

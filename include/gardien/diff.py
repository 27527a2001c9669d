"""Diff by natural keys: stream both sides sorted, merge-join in constant memory, fetch only what differs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from gardien import pg
from gardien.catalog import BoundTable, Catalog, assert_compatible, bind_catalog
from gardien.changeset import Changeset, Delete, FieldChange, Insert, TableChanges, Update, sort_rows
from gardien.config import CatalogConfig
from gardien.errors import ChangesetError, SourceDataError
from gardien.fingerprint import ScopeFingerprint, TableFingerprint
from gardien.keys import KeyMap
from gardien.portable import RowSql, freeze, set_session
from gardien.references import check_references

FETCH_SIZE = 20_000
Progress = Callable[[str, int], None]

# Each row streams as: natural key text, md5 of its portable text (the fingerprint's row hash, so the
# fingerprint comes for free), its ctid (to fetch the full row later), and whether a key part is NULL.
_STREAM_SQL = """
SELECT k, h, ctid::text, nulls FROM (
  SELECT {key}::text AS k, md5(json_build_array({key}, {values})::text) AS h, t0.ctid, ({nulls}) AS nulls
  FROM {src} WHERE {live}
) AS s ORDER BY k COLLATE "C"
"""


@dataclass(slots=True)
class _Side:
    """Per-table accumulators of one side of the merge (fingerprint sums, bad keys)."""

    low: int = 0
    high: int = 0
    rows: int = 0
    null_keys: list[str] = field(default_factory=list)
    dup_keys: list[str] = field(default_factory=list)

    def fingerprint(self, table: str) -> TableFingerprint:
        return TableFingerprint(table=table, rows=self.rows, low=self.low, high=self.high)


def _signed(hex16: str) -> int:
    value = int(hex16, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def _stream(conn: Any, rs: RowSql, side: _Side, name: str) -> Iterator[tuple[str, str, str]]:
    nulls = sql.SQL(" OR ").join(
        sql.SQL("t0.{} IS NULL").format(sql.Identifier(c)) for c in rs.table.natural_key
    )
    query = sql.SQL(_STREAM_SQL).format(
        key=rs.key, values=rs.values, nulls=nulls, src=rs.from_clause(), live=rs.live_filter()
    )
    with conn.cursor(name=name) as cur:
        cur.itersize = FETCH_SIZE
        cur.execute(query)
        previous = None
        for key, h, ctid, has_null in cur:
            side.rows += 1
            side.low += _signed(h[:16])
            side.high += _signed(h[16:])
            if has_null:
                side.null_keys.append(key)
                continue
            if key == previous:
                side.dup_keys.append(key)
                continue
            previous = key
            yield key, h, ctid


_END = "\U0010ffff" * 2  # sorts after any key text a database can hold


def _merge(
    src: Iterator[tuple[str, str, str]], tgt: Iterator[tuple[str, str, str]]
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Merge two key-sorted streams: ctids of source-only, target-only and differing rows."""
    only_src: list[str] = []
    only_tgt: list[str] = []
    differ: list[tuple[str, str]] = []
    s = next(src, None)
    t = next(tgt, None)
    while s is not None or t is not None:
        sk = s[0] if s is not None else _END
        tk = t[0] if t is not None else _END
        if sk == tk:
            if s[1] != t[1]:
                differ.append((s[2], t[2]))
            s, t = next(src, None), next(tgt, None)
        elif sk < tk:
            only_src.append(s[2])
            s = next(src, None)
        else:
            only_tgt.append(t[2])
            t = next(tgt, None)
    return only_src, only_tgt, differ


def _fetch(cur: Any, rs: RowSql, ctids: list[str]) -> dict[Any, dict[str, Any]]:
    if not ctids:
        return {}
    query = sql.SQL("SELECT {key}::text, {values}::text FROM {src} WHERE t0.ctid = ANY(%s::tid[])").format(
        key=rs.key, values=rs.values, src=rs.from_clause()
    )
    cur.execute(query, (ctids,))
    columns = rs.table.value_columns
    return {
        freeze(json.loads(k)): dict(zip(columns, freeze(json.loads(v)), strict=True))
        for k, v in cur.fetchall()
    }


def diff_table(
    source: Any, target: Any, *, catalog: Catalog, table: BoundTable
) -> tuple[TableChanges, TableFingerprint, TableFingerprint]:
    """Diff one table; both connections are inside a snapshot with the session settings pinned."""
    rs = RowSql.build(catalog, table)
    s_side, t_side = _Side(), _Side()
    only_src, only_tgt, differ = _merge(
        _stream(source, rs, s_side, "gardien_src"), _stream(target, rs, t_side, "gardien_tgt")
    )
    problems = [f"NULL in natural key {k}" for k in s_side.null_keys[:20]]
    problems += [f"duplicate natural key {k}" for k in sorted(set(s_side.dup_keys))[:20]]
    if problems:
        raise SourceDataError(
            f"source table {table.name}: {len(s_side.null_keys)} row(s) with a NULL natural-key column "
            f"({', '.join(table.natural_key)}), {len(set(s_side.dup_keys))} duplicated key(s):\n  "
            + "\n  ".join(problems)
            + "\nFix these rows in the source (or choose a natural key that identifies each row) and capture again."
        )
    if t_side.null_keys or t_side.dup_keys:
        bad = (t_side.null_keys + t_side.dup_keys)[:20]
        raise ChangesetError(
            f"target table {table.name} has NULL or duplicate natural keys, so its rows cannot be matched: "
            f"{', '.join(bad)}. Repair the target (a unique constraint on the natural key prevents this)."
        )
    with source.cursor() as scur, target.cursor() as tcur:
        src_rows = _fetch(scur, rs, only_src + [s for s, _ in differ])
        tgt_rows = _fetch(tcur, rs, only_tgt + [t for _, t in differ])
    inserts, updates, deletes = [], [], []
    for key, values in src_rows.items():
        before = tgt_rows.get(key)
        if before is None:
            inserts.append(Insert(key=key, values=values))
            continue
        changes = {
            c: FieldChange(before[c], values[c]) for c in table.value_columns if before[c] != values[c]
        }
        if changes:
            updates.append(Update(key=key, baseline=before, changes=changes))
    for key, values in tgt_rows.items():
        if key not in src_rows:
            deletes.append(Delete(key=key, baseline=values))
    changes = TableChanges(
        table=table.name, inserts=sort_rows(inserts), updates=sort_rows(updates), deletes=sort_rows(deletes)
    )
    return changes, s_side.fingerprint(table.name), t_side.fingerprint(table.name)


def diff_connections(
    source: Any,
    target: Any,
    *,
    catalog_config: CatalogConfig,
    source_label: str = "source",
    target_label: str = "target",
    progress: Progress | None = None,
) -> Changeset:
    """Capture the changeset that makes ``target``'s managed scope equal ``source``'s.

    Each connection is put in a REPEATABLE READ snapshot and rolled back at the end (nothing is written;
    temp tables for the reference check vanish). Raises ConfigurationError when the schemas do not match
    the catalog or each other, SourceDataError on NULL/duplicate keys or dangling references.
    """
    for conn in (source, target):
        conn.rollback()
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ)
    try:
        with source.cursor() as scur, target.cursor() as tcur:
            set_session(scur)
            set_session(tcur)
            s_cat = bind_catalog(source, catalog_config, label=source_label)
            t_cat = bind_catalog(target, catalog_config, label=target_label)
            assert_compatible(s_cat, t_cat, source_label=source_label, target_label=target_label)
        tables, s_fps, t_fps = [], [], []
        for i, table in enumerate(s_cat.tables):
            if progress:
                progress(table.name, i)
            changes, s_fp, t_fp = diff_table(source, target, catalog=s_cat, table=table)
            if changes.count:
                tables.append(changes)
            s_fps.append(s_fp)
            t_fps.append(t_fp)
        changeset = Changeset(
            catalog_fingerprint=s_cat.fingerprint,
            source_fingerprint=ScopeFingerprint(tables=tuple(s_fps)),
            target_fingerprint=ScopeFingerprint(tables=tuple(t_fps)),
            tables=tuple(tables),
        )
        with target.cursor() as tcur:
            check_references(tcur, catalog=t_cat, changeset=changeset, keymap=KeyMap(tcur, t_cat))
        return changeset
    finally:
        source.rollback()
        target.rollback()


def diff(
    source_dsn: str,
    target_dsn: str,
    *,
    catalog_config: CatalogConfig,
    source_label: str = "source",
    target_label: str = "target",
    progress: Progress | None = None,
) -> Changeset:
    """Open both databases and capture the changeset (see ``diff_connections``)."""
    source = pg.connect(source_dsn, application_name="gardien diff")
    try:
        target = pg.connect(target_dsn, application_name="gardien diff")
        try:
            return diff_connections(
                source,
                target,
                catalog_config=catalog_config,
                source_label=source_label,
                target_label=target_label,
                progress=progress,
            )
        finally:
            target.close()
    finally:
        source.close()

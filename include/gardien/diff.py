"""Diff by natural keys: hash both sides' rows (gardien.rowhash), match them by key hash, fetch only what differs."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg2.extensions
from psycopg2 import sql

from gardien import pg
from gardien.catalog import BoundTable, Catalog, assert_compatible, bind_catalog
from gardien.changeset import Changeset, Delete, FieldChange, Insert, TableChanges, Update, sort_rows
from gardien.config import CatalogConfig
from gardien.errors import ChangesetError, SourceDataError
from gardien.fingerprint import ScopeFingerprint, TableFingerprint, sums
from gardien.keys import KeyMap
from gardien.portable import RowSql, key_text, set_session
from gardien.references import check_references
from gardien.rowhash import RowHasher
from gardien.touched import Reader

Progress = Callable[[str, int], None]

DIFF_WORK_MEM = "64MB"
BATCH = 65_536  # rows hashed at once per side (gardien.rowhash streams each table in batches)


@dataclass(slots=True)
class _Rows:
    """One side's live rows of a table, sorted by key hash: key hash, row hash and ctid (block << 16 | pos),
    three uint64 columns (24 bytes a row)."""

    kh: np.ndarray
    row: np.ndarray
    ctid: np.ndarray

    def __len__(self) -> int:
        return len(self.kh)


@dataclass(slots=True)
class _Side:
    """Per-table accumulators of one side: fingerprint sums and the ctids of rows to fetch."""

    low: int = 0
    high: int = 0
    rows: int = 0
    fetch: list[np.ndarray] = field(default_factory=list)  # ctids of differing rows
    suspects: list[np.ndarray] = field(default_factory=list)  # ctids of rows sharing a key hash

    def fingerprint(self, table: str) -> TableFingerprint:
        return TableFingerprint(table=table, rows=self.rows, low=self.low, high=self.high)

    def add(self, row: np.ndarray) -> None:
        """Add rows to the fingerprint sums (gardien.fingerprint.sums of their row hashes)."""
        part = sums("", row)
        self.rows += part.rows
        self.low += part.low
        self.high += part.high

    def ctids(self, name: str) -> list[str]:
        parts = getattr(self, name)
        if not parts:
            return []
        ctid = np.concatenate(parts)
        return [f"({b},{p})" for b, p in zip((ctid >> 16).tolist(), (ctid & 0xFFFF).tolist(), strict=True)]


def _compare(s: _Rows, t: _Rows, s_side: _Side, t_side: _Side) -> None:
    """Record the rows that differ between two sides sorted by key hash (a row hash differs, or one side
    lacks the key)."""
    s_same = np.zeros(len(s), dtype=bool)
    t_same = np.zeros(len(t), dtype=bool)
    if len(s) and len(t):
        for start in range(0, len(s), BATCH):  # in slices: temporaries stay small
            kh, row = s.kh[start : start + BATCH], s.row[start : start + BATCH]
            idx = np.minimum(np.searchsorted(t.kh, kh), len(t) - 1)
            same = (t.kh[idx] == kh) & (t.row[idx] == row)
            s_same[start : start + BATCH] = same
            t_same[idx[same]] = True
    # A key hash seen twice on one side: duplicated natural keys (or, rarely, a hash collision). Those
    # rows are fetched on both sides and judged on their real keys.
    dup = np.concatenate([s.kh[1:][s.kh[1:] == s.kh[:-1]], t.kh[1:][t.kh[1:] == t.kh[:-1]]])
    if len(dup):
        s_dup, t_dup = np.isin(s.kh, dup), np.isin(t.kh, dup)
        s_side.suspects.append(s.ctid[s_dup])
        t_side.suspects.append(t.ctid[t_dup])
        s_same &= ~s_dup
        t_same &= ~t_dup
    if not s_same.all():
        s_side.fetch.append(s.ctid[~s_same])
    if not t_same.all():
        t_side.fetch.append(t.ctid[~t_same])


SPILL_ROWS = 250_000  # rows of one side held in memory (6 MB); beyond, they go to temporary files
_BITS = 6
_PARTS = 1 << _BITS  # key-hash partitions of a spilled side (the top 6 bits): each is compared on its own
_SHIFT = 64 - _BITS
_SPILLED = np.dtype([("kh", "<u8"), ("row", "<u8"), ("ctid", "<u8")])


def _sorted(kh: np.ndarray, row: np.ndarray, ctid: np.ndarray) -> _Rows:
    order = np.argsort(kh)
    return _Rows(kh[order], row[order], ctid[order])


class _Spilled:
    """One side's rows written by key-hash partition to temporary files, so memory stays bounded whatever
    the table size: a partition of both sides is then read, sorted and compared at a time."""

    def __init__(self) -> None:
        self.files = [tempfile.TemporaryFile(prefix="gardien-diff-") for _ in range(_PARTS)]

    def write(self, kh: np.ndarray, row: np.ndarray, ctid: np.ndarray) -> None:
        part = (kh >> np.uint64(_SHIFT)).astype(np.intp)
        order = np.argsort(part, kind="stable")
        rows = np.empty(len(kh), dtype=_SPILLED)
        rows["kh"], rows["row"], rows["ctid"] = kh[order], row[order], ctid[order]
        ends = np.cumsum(np.bincount(part, minlength=_PARTS))
        for p, (start, end) in enumerate(zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True)):
            if end > start:
                self.files[p].write(rows[start:end].tobytes())

    def part(self, p: int) -> _Rows:
        f = self.files[p]
        f.seek(0)
        rows = np.frombuffer(f.read(), dtype=_SPILLED)
        return _sorted(rows["kh"], rows["row"], rows["ctid"])

    def close(self) -> None:
        for f in self.files:
            f.close()


def _part(rows: _Rows | _Spilled, p: int) -> _Rows:
    """Partition ``p`` (key hashes whose top bits are ``p``) of one side."""
    if isinstance(rows, _Spilled):
        return rows.part(p)
    low, high = np.uint64(p << _SHIFT), np.uint64(((p + 1) << _SHIFT) - 1)
    start, end = np.searchsorted(rows.kh, low), np.searchsorted(rows.kh, high, side="right")
    return _Rows(rows.kh[start:end], rows.row[start:end], rows.ctid[start:end])


def _side(hasher: RowHasher, conn: Any, table: BoundTable, side: _Side) -> _Rows | _Spilled:
    """One side's live rows of ``table``, hashed: sorted by key hash in memory, or spilled to partition files
    past SPILL_ROWS; fingerprint sums into ``side``."""
    kh: list[np.ndarray] = []
    row: list[np.ndarray] = []
    ctid: list[np.ndarray] = []
    held = 0
    spilled: _Spilled | None = None
    try:
        for batch in hasher.stream(conn, table, ctid=True):
            side.add(batch.row)
            tids = (batch.block.astype(np.uint64) << np.uint64(16)) | batch.pos.astype(np.uint64)
            if spilled is not None:
                spilled.write(batch.kh, batch.row, tids)
                continue
            kh.append(batch.kh)
            row.append(batch.row)
            ctid.append(tids)
            held += len(tids)
            if held > SPILL_ROWS:
                spilled = _Spilled()
                spilled.write(np.concatenate(kh), np.concatenate(row), np.concatenate(ctid))
                kh, row, ctid = [], [], []
    except BaseException:
        if spilled is not None:
            spilled.close()
        raise
    if spilled is not None:
        return spilled
    columns = []
    for parts in (kh, row, ctid):
        columns.append(np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64))
        parts.clear()  # each column held once
    order = np.argsort(columns[0])
    for i in range(len(columns)):
        columns[i] = columns[i][order]  # one column at a time, the unsorted one freed
    return _Rows(*columns)


def _on_both(work: Callable[[int], Any]) -> tuple[Any, Any]:
    """``work(0)`` (source) and ``work(1)`` (target) at once, one thread each, so both servers work together."""
    results: list[Any] = [None, None]

    def run(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as exc:  # re-raised below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"gardien-diff-{i}") for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results[0], results[1]


def _null_keys(cur: Any, rs: RowSql) -> tuple[int, list[str]]:
    if set(rs.table.natural_key) <= rs.table.not_null:
        return 0, []  # every key column is declared NOT NULL: no scan needed
    nulls = sql.SQL(" OR ").join(
        sql.SQL("t0.{} IS NULL").format(sql.Identifier(c)) for c in rs.table.natural_key
    )
    cur.execute(
        sql.SQL("SELECT count(*) OVER (), {key}::text FROM {src} WHERE {live} AND ({nulls}) LIMIT 20").format(
            key=rs.key, src=rs.from_clause(), live=rs.live_filter(), nulls=nulls
        )
    )
    rows = cur.fetchall()
    return (rows[0][0] if rows else 0), [k for _, k in rows]


def _fetch(cur: Any, reader: Reader, ctids: list[str]) -> list[tuple[Any, dict[str, Any]]]:
    """The rows at these ctids in portable form: (key, values)."""
    if not ctids:
        return []
    cur.execute(reader.where(sql.SQL("t0.ctid = ANY(%s::tid[])")), (ctids,))
    return [(key, values) for key, _, values in map(reader.decode, cur.fetchall())]


def _duplicates(rows: list[tuple[Any, dict[str, Any]]]) -> list[str]:
    seen: set[Any] = set()
    dups: set[str] = set()
    for key, _ in rows:
        if key in seen:
            dups.add(key_text(key))
        seen.add(key)
    return sorted(dups)


def diff_table(
    source: Any,
    target: Any,
    *,
    catalog: Catalog,
    table: BoundTable,
    hashers: tuple[RowHasher, RowHasher] | None = None,
) -> tuple[TableChanges, TableFingerprint, TableFingerprint]:
    """Diff one table; both connections are inside a snapshot with the session settings pinned."""
    if hashers is None:
        hashers = (
            RowHasher(source.cursor(), catalog, batch=BATCH),
            RowHasher(target.cursor(), catalog, batch=BATCH),
        )
    rs = RowSql.build(catalog, table)
    with source.cursor() as scur, target.cursor() as tcur:
        (s_nulls, s_null_keys), (t_nulls, t_null_keys) = _null_keys(scur, rs), _null_keys(tcur, rs)
    reader = Reader(catalog, table)
    conns, sides = (source, target), (_Side(), _Side())
    s_rows, t_rows = _on_both(lambda i: _side(hashers[i], conns[i], table, sides[i]))
    try:
        if isinstance(s_rows, _Rows) and isinstance(t_rows, _Rows):
            _compare(s_rows, t_rows, *sides)
        else:
            for p in range(_PARTS):  # equal keys share a key hash, hence a partition
                _compare(_part(s_rows, p), _part(t_rows, p), *sides)
    finally:
        for rows in (s_rows, t_rows):
            if isinstance(rows, _Spilled):
                rows.close()
    del s_rows, t_rows

    def fetch(i: int) -> tuple[list[str], dict[Any, dict[str, Any]]]:
        with conns[i].cursor() as cur:
            dups = _duplicates(_fetch(cur, reader, sides[i].ctids("suspects")))
            return dups, ({} if dups else dict(_fetch(cur, reader, sides[i].ctids("fetch"))))

    (s_dups, src_rows), (t_dups, tgt_rows) = _on_both(fetch)
    problems = [f"NULL in natural key {k}" for k in s_null_keys]
    problems += [f"duplicate natural key {k}" for k in s_dups[:20]]
    if problems:
        raise SourceDataError(
            f"source table {table.name}: {s_nulls} row(s) with a NULL natural-key column "
            f"({', '.join(table.natural_key)}), {len(s_dups)} duplicated key(s):\n  "
            + "\n  ".join(problems)
            + "\nFix these rows in the source (or choose a natural key that identifies each row) and capture again."
        )
    if t_nulls or t_dups:
        bad = (t_null_keys + t_dups)[:20]
        raise ChangesetError(
            f"target table {table.name} has NULL or duplicate natural keys, so its rows cannot be matched: "
            f"{', '.join(bad)}. Repair the target (a unique constraint on the natural key prevents this)."
        )
    inserts, updates, deletes = [], [], []
    value_columns = table.value_columns
    for key, values in src_rows.items():
        before = tgt_rows.get(key)
        if before is None:
            inserts.append(Insert(key=key, values=values))
            continue
        changes = {c: FieldChange(before[c], values[c]) for c in value_columns if before[c] != values[c]}
        if changes:
            updates.append(Update(key=key, baseline=before, changes=changes))
    for key, values in tgt_rows.items():
        if key not in src_rows:
            deletes.append(Delete(key=key, baseline=values))
    changes = TableChanges(
        table=table.name, inserts=sort_rows(inserts), updates=sort_rows(updates), deletes=sort_rows(deletes)
    )
    return changes, sides[0].fingerprint(table.name), sides[1].fingerprint(table.name)


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
            for cur in (scur, tcur):
                # The joins that render the fetched rows' portable form hash whole referenced tables: in
                # memory rather than in batches spilled at the default 4MB (a cap, not an allocation).
                cur.execute("SELECT set_config('work_mem', %s, true)", (DIFF_WORK_MEM,))
            s_cat = bind_catalog(source, catalog_config, label=source_label)
            t_cat = bind_catalog(target, catalog_config, label=target_label)
            assert_compatible(s_cat, t_cat, source_label=source_label, target_label=target_label)
        tables, s_fps, t_fps = [], [], []
        # One hasher per side for the whole capture: referenced tables' key hashes are read once.
        hashers = (
            RowHasher(source.cursor(), s_cat, batch=BATCH),
            RowHasher(target.cursor(), t_cat, batch=BATCH),
        )
        for i, table in enumerate(s_cat.tables):
            if progress:
                progress(table.name, i)
            changes, s_fp, t_fp = diff_table(source, target, catalog=s_cat, table=table, hashers=hashers)
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

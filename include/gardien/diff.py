"""Diff by natural keys: stream both sides sorted, merge-join in constant memory, fetch only what differs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
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
from gardien.fingerprint import ScopeFingerprint, TableFingerprint
from gardien.keys import KeyMap
from gardien.portable import RowSql, freeze, key_text, row_halves, set_session
from gardien.references import check_references

Progress = Callable[[str, int], None]

_SIGN = "(-9223372036854775808)::bigint"
DIFF_WORK_MEM = "256MB"

# Each side streams, in binary COPY, fixed-width rows (key hash, the row hash's two halves, ctid) sorted
# by key hash as unsigned (hence the sign flip): big-endian unsigned order is what numpy compares. COPY
# rather than a cursor: no per-row Python object, and both servers work at once (one thread each).
_STREAM_SQL = """
COPY (SELECT s.kh, {h1}, {h2}, s.ctid FROM ({hashed}) AS s ORDER BY s.kh # {sign}) TO STDOUT (FORMAT binary)
"""
_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l1", ">i4"),
        ("kh", ">u8"),
        ("l2", ">i4"),
        ("h1", ">i8"),
        ("l3", ">i4"),
        ("h2", ">i8"),
        ("l4", ">i4"),
        ("block", ">u4"),
        ("pos", ">u2"),
    ]
)
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, no header extension
_TRAILER = b"\xff\xff"
BATCH = 65_536  # rows per side held at once: memory stays constant whatever the table size
_CHUNK = 1 << 20


@dataclass(slots=True)
class _Side:
    """Per-table accumulators of one side of the merge: fingerprint sums and rows to fetch."""

    low: int = 0
    high: int = 0
    rows: int = 0
    fetch: list[np.ndarray] = field(default_factory=list)  # ctids (block, pos) of differing rows
    suspects: list[np.ndarray] = field(default_factory=list)  # ctids of rows sharing a key hash

    def fingerprint(self, table: str) -> TableFingerprint:
        return TableFingerprint(table=table, rows=self.rows, low=self.low, high=self.high)

    def add(self, batch: np.ndarray) -> None:
        self.rows += len(batch)
        self.low += _exact_sum(batch["h1"])
        self.high += _exact_sum(batch["h2"])

    def ctids(self, name: str) -> list[str]:
        parts = getattr(self, name)
        if not parts:
            return []
        rows = np.concatenate(parts)
        return [f"({b},{p})" for b, p in zip(rows["block"].tolist(), rows["pos"].tolist(), strict=True)]


def _exact_sum(values: np.ndarray) -> int:
    """Sum of signed 64-bit values without overflow: high and low 32-bit parts summed apart."""
    v = values.astype(np.int64)
    return (int((v >> 32).sum()) << 32) + int((v & 0xFFFFFFFF).sum())


class _Stream:
    """One side's sorted rows: a thread runs the COPY into a pipe, the caller reads numpy batches."""

    def __init__(self, conn: Any, query: str, name: str) -> None:
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):  # a larger pipe means fewer wake-ups; Linux only
            fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _CHUNK)
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._writer = os.fdopen(write_fd, "wb", buffering=_CHUNK)
        self._pending = b""
        self._started = False
        self.done = False
        self._failure: list[BaseException] = []

        def produce() -> None:
            try:
                with conn.cursor() as cur:
                    cur.copy_expert(query, self._writer)
            except BaseException as exc:  # re-raised in the reading thread
                self._failure.append(exc)
            finally:
                with contextlib.suppress(OSError):
                    self._writer.close()

        self._thread = threading.Thread(target=produce, name=f"gardien-diff-{name}", daemon=True)
        self._thread.start()

    def read(self, rows: int) -> np.ndarray:
        """Up to ``rows`` more rows (fewer only at the end of the stream)."""
        want = rows * _ROW.itemsize + (0 if self._started else len(_HEADER))
        chunks = [self._pending]
        size = len(self._pending)
        while size < want and not self.done:
            chunk = self._reader.read(max(_CHUNK, want - size))
            if not chunk:
                self.done = True
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        if self.done:
            self.close()
            if data.endswith(_TRAILER):
                data = data[: -len(_TRAILER)]
        if not self._started and data:
            if not data.startswith(_HEADER):
                raise ChangesetError(
                    "unexpected COPY header from the server; the diff cannot read this stream."
                )
            data = data[len(_HEADER) :]
            self._started = True
        whole = min(len(data) // _ROW.itemsize, rows)
        self._pending = data[whole * _ROW.itemsize :]
        if self.done and self._pending:
            raise ChangesetError(f"truncated COPY stream ({len(self._pending)} bytes left); capture again.")
        return np.frombuffer(data, dtype=_ROW, count=whole).copy()

    def close(self, *, quiet: bool = False) -> None:
        """Stop reading (a producer still writing gets a broken pipe) and re-raise its failure unless quiet."""
        with contextlib.suppress(OSError):
            self._reader.close()
        self._thread.join()
        if self._failure and not quiet:
            raise self._failure[0]


def _compare(s: np.ndarray, t: np.ndarray, s_side: _Side, t_side: _Side) -> None:
    """Record rows of one batch that differ; ``s`` and ``t`` hold the same key-hash range, sorted."""
    s_side.add(s)
    t_side.add(t)
    s_same = np.zeros(len(s), dtype=bool)
    t_same = np.zeros(len(t), dtype=bool)
    if len(s) and len(t):
        idx = np.minimum(np.searchsorted(t["kh"], s["kh"]), len(t) - 1)
        s_same = (t["kh"][idx] == s["kh"]) & (t["h1"][idx] == s["h1"]) & (t["h2"][idx] == s["h2"])
        t_same[idx[s_same]] = True
    # A key hash seen twice on one side: duplicated natural keys (or, rarely, a hash collision). Those
    # rows are fetched on both sides and judged on their real keys.
    dup = np.concatenate([s["kh"][1:][s["kh"][1:] == s["kh"][:-1]], t["kh"][1:][t["kh"][1:] == t["kh"][:-1]]])
    if len(dup):
        s_dup, t_dup = np.isin(s["kh"], dup), np.isin(t["kh"], dup)
        s_side.suspects.append(s[s_dup])
        t_side.suspects.append(t[t_dup])
        s_same &= ~s_dup
        t_same &= ~t_dup
    if not s_same.all():
        s_side.fetch.append(s[~s_same])
    if not t_same.all():
        t_side.fetch.append(t[~t_same])


def _merge(source: _Stream, target: _Stream, s_side: _Side, t_side: _Side) -> None:
    """Walk both key-hash-sorted streams in batches; a batch ends below the smaller last key hash seen."""
    empty = np.empty(0, dtype=_ROW)
    s_buf, t_buf, want = empty, empty, BATCH
    while True:
        if not source.done and len(s_buf) < want:
            s_buf = np.concatenate([s_buf, source.read(want - len(s_buf))])
        if not target.done and len(t_buf) < want:
            t_buf = np.concatenate([t_buf, target.read(want - len(t_buf))])
        bounds = [b["kh"][-1] for b, st in ((s_buf, source), (t_buf, target)) if not st.done and len(b)]
        if not bounds:
            _compare(s_buf, t_buf, s_side, t_side)
            return
        # Rows at the bound itself may continue in the next read: keep them for the next batch.
        bound = min(bounds)
        i, j = np.searchsorted(s_buf["kh"], bound), np.searchsorted(t_buf["kh"], bound)
        if i == 0 and j == 0:
            want *= 2  # one key hash fills a whole batch (massive duplication): read further
            continue
        _compare(s_buf[:i], t_buf[:j], s_side, t_side)
        s_buf, t_buf, want = s_buf[i:], t_buf[j:], BATCH


def _null_keys(cur: Any, rs: RowSql) -> tuple[int, list[str]]:
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


def _fetch(cur: Any, rs: RowSql, ctids: list[str]) -> list[tuple[Any, dict[str, Any]]]:
    if not ctids:
        return []
    query = sql.SQL("SELECT {key}::text, {values}::text FROM {src} WHERE t0.ctid = ANY(%s::tid[])").format(
        key=rs.key, values=rs.values, src=rs.from_clause()
    )
    cur.execute(query, (ctids,))
    columns = rs.table.value_columns
    return [
        (freeze(json.loads(k)), dict(zip(columns, freeze(json.loads(v)), strict=True)))
        for k, v in cur.fetchall()
    ]


def _duplicates(rows: list[tuple[Any, dict[str, Any]]]) -> list[str]:
    seen: set[Any] = set()
    dups: set[str] = set()
    for key, _ in rows:
        if key in seen:
            dups.add(key_text(key))
        seen.add(key)
    return sorted(dups)


def diff_table(
    source: Any, target: Any, *, catalog: Catalog, table: BoundTable
) -> tuple[TableChanges, TableFingerprint, TableFingerprint]:
    """Diff one table; both connections are inside a snapshot with the session settings pinned."""
    rs = RowSql.build(catalog, table)
    with source.cursor() as scur, target.cursor() as tcur:
        (s_nulls, s_null_keys), (t_nulls, t_null_keys) = _null_keys(scur, rs), _null_keys(tcur, rs)
    s_side, t_side = _Side(), _Side()
    h1, h2 = row_halves()
    query = sql.SQL(_STREAM_SQL).format(
        h1=h1, h2=h2, hashed=rs.hashed(sql.SQL("t0.ctid AS ctid")), sign=sql.SQL(_SIGN)
    )
    streams = [
        _Stream(source, query.as_string(source), "source"),
        _Stream(target, query.as_string(target), "target"),
    ]
    try:
        _merge(streams[0], streams[1], s_side, t_side)
    except BaseException:
        for stream in streams:
            stream.close(quiet=True)  # the merge's own error is the one to report
        raise
    for stream in streams:
        stream.close()
    with source.cursor() as scur, target.cursor() as tcur:
        s_dups = _duplicates(_fetch(scur, rs, s_side.ctids("suspects")))
        t_dups = _duplicates(_fetch(tcur, rs, t_side.ctids("suspects")))
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
        src_rows = dict(_fetch(scur, rs, s_side.ctids("fetch")))
        tgt_rows = dict(_fetch(tcur, rs, t_side.ctids("fetch")))
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
            for cur in (scur, tcur):
                # Each side sorts its table's rows by key hash (~100 MB at 1M rows): in memory rather than
                # spilled to disk at the default 4MB. A cap for this transaction only, not an allocation.
                cur.execute("SELECT set_config('work_mem', %s, true)", (DIFF_WORK_MEM,))
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

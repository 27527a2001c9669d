"""Portable row hashes, computed on the client: the server hashes each row's own columns, numpy translates
foreign keys into the referenced rows' key hashes and mixes.

Why on the client. A row's portable form names each referenced row by its natural key, because surrogate
ids differ between environments. Rendering that form in SQL takes one hash join per foreign key and per
row (three joins cost ~0.45 s per million rows, more than scanning the table), and the diff then sorted a
million rows on each side. Here the server sends, per row, fixed-width binary fields only: a hash of the
columns that are not foreign keys, the foreign keys as ids, the primary key; numpy replaces each id by the
key hash of the row it references (a sorted-array lookup, tens of nanoseconds a row) and mixes the parts.

The hash, per row of a table:

- ``lk`` and ``lv``: PostgreSQL's ``hash_record_extended`` over the natural-key columns, resp. the value
  columns, that are not foreign keys. Types whose equality is identity are hashed natively; text under
  ``COLLATE "C"``; every other type through its text output (so 1.0 and 1.00, -0 and 0, '1 day' and
  '24 hours' differ, as in the portable JSON form). The session output settings are pinned
  (gardien.portable.set_session) so text output is the same everywhere.
- a foreign key's part is the referenced row's key hash; NULL and a dangling id get fixed constants.
- ``kh`` (key hash) = chain(KEY_SEED, lk, key foreign-key parts in key order);
  ``row`` = chain(ROW_SEED, kh, lv, value foreign-key parts in column order), where
  chain(s, a, b, ...) = mix(...mix(mix(s ^ a) ^ b)...) and mix is the splitmix64 finaliser (a bijection
  of 64-bit words: rows that differ in one part always hash differently).
- the two 64-bit halves a fingerprint sums are mix(row ^ HALF_SEEDS[i]), as signed integers.

Natural keys cannot reference each other in a cycle (gardien.catalog refuses it), so key hashes are
computed parents first, each referenced table once per hasher (all its rows, or only the ids a restricted
read needs). A hasher reads through one cursor, hence one snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog
from gardien.errors import ChangesetError
from gardien.portable import RowSql, qualified

SCHEME = "gardien.rowhash/2"  # changes whenever any hash below would change
KEY_SEED = 0x6761726469656E6B  # "gardienk"
ROW_SEED = 0x6761726469656E72  # "gardienr"
LOCAL_SEED = 0x6761726469656E6C  # "gardienl": the local hash (gardien.fingerprint, scheme local/3)
HALF_SEEDS = (0x5555555555555555, 0x3333333333333333)
NULL_REF = np.uint64(0x6E756C6C72656621)  # a NULL foreign key
DANGLING_REF = np.uint64(0x64616E676C696E67)  # a foreign key whose row does not exist
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)

BATCH = 262_144  # rows mixed at once when streaming a whole table
_CHUNK = 1 << 20
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, no header extension
_TRAILER = b"\xff\xff"

_INTEGER_IDS = ("smallint", "integer", "bigint")
_NATIVE_TYPES = re.compile(
    r"^(smallint|integer|bigint|boolean|date|uuid|numeric\(\d+,\d+\)"
    r"|timestamp(\(\d\))? with(out)? time zone)$"
)
_TEXT_TYPES = re.compile(r"^(text|character varying(\(\d+\))?)$")


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on an array of uint64 (wrapping arithmetic), as a new array."""
    x = x ^ (x >> _S30)
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def chain(seed: int, parts: list[np.ndarray], n: int) -> np.ndarray:
    acc = np.full(n, seed, dtype=np.uint64)
    for part in parts:
        acc = mix(acc ^ part)
    return acc


def halves(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two signed 64-bit halves of the row hashes that fingerprints sum."""
    return tuple(mix(row ^ np.uint64(s)).view(np.int64) for s in HALF_SEEDS)  # type: ignore[return-value]


def exact_sum(values: np.ndarray) -> int:
    """Sum of signed 64-bit values without overflow: high and low 32-bit parts summed apart."""
    v = values.astype(np.int64, copy=False)
    return (int((v >> 32).sum()) << 32) + int((v & 0xFFFFFFFF).sum())


def column_sql(column: sql.Composable, typ: str) -> sql.Composable:
    """A column as hashed: natively when equality is identity, else through its text form, byte-wise."""
    if _NATIVE_TYPES.match(typ):
        return column
    if _TEXT_TYPES.match(typ):
        return sql.SQL('{} COLLATE "C"').format(column)
    return sql.SQL('{}::text COLLATE "C"').format(column)


def id_sql(column: sql.Composable, pk_type: str) -> sql.Composable:
    """A primary-key (or foreign-key) value as one 64-bit integer: itself, or a hash of its text."""
    if pk_type in _INTEGER_IDS:
        return sql.SQL("{}::bigint").format(column)
    return sql.SQL("hashtextextended({}::text, 0)").format(column)


def _record_hash(table: BoundTable, columns: list[str]) -> sql.Composable:
    if not columns:
        return sql.SQL("0::bigint")
    parts = [column_sql(sql.SQL("t0.{}").format(sql.Identifier(c)), table.types[c]) for c in columns]
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(parts))


_WIDTH = {"smallint": ">i2", "integer": ">i4", "bigint": ">i8"}
_NULL_ID = {"smallint": -(1 << 15), "integer": -(1 << 31), "bigint": -(1 << 63)}


def _dtype(fields: list[tuple[str, str]], ctid: bool) -> np.dtype:
    spec: list[tuple[str, str]] = [("n", ">i2")]
    for i, (name, width) in enumerate(fields):
        spec += [(f"l{i}", ">i4"), (name, width)]
    if ctid:
        spec += [("lc", ">i4"), ("block", ">u4"), ("pos", ">u2")]
    return np.dtype(spec)


@dataclass(frozen=True, slots=True)
class _Ref:
    """A foreign key as streamed: its field, the referenced table, and the value that stands for NULL."""

    field: str
    table: str
    null: int | None  # None: the column is NOT NULL


@dataclass(frozen=True, slots=True)
class _Layout:
    """The binary COPY one table is read through, and how its fields are mixed."""

    query: sql.Composed
    dtype: np.dtype
    key_refs: tuple[_Ref, ...]  # natural-key foreign keys, in key order
    value_refs: tuple[_Ref, ...]  # value foreign keys, in column order
    key_raw: tuple[str, ...]  # fields of NOT NULL integer key columns, sent as they are
    value_raw: tuple[str, ...]
    has_lk: bool  # an ``lk`` field: hash_record_extended of the other plain key columns
    has_lv: bool


def _layout(
    catalog: Catalog,
    table: BoundTable,
    *,
    full: bool,
    where: sql.Composable | None,
    ctid: bool = False,
    pk: bool = False,
) -> _Layout:
    """Key stream (``full`` False: every physical row, for key hashes; with ``pk``) or row stream (live rows).

    Integer foreign keys travel as they are stored (a nullable one with its type's minimum for NULL,
    which ``RowHasher`` checks no referenced row uses); other ids as a 64-bit hash of their text.
    """

    def raw(c: str) -> bool:  # an integer that is never NULL is its own 64-bit part: nothing to hash
        return table.types[c] in _WIDTH and c in table.not_null

    key_plain = [c for c in table.natural_key if c not in table.fks]
    value_plain = [c for c in table.value_columns if c not in table.fks] if full else []
    key_fk = [c for c in table.natural_key if c in table.fks]
    value_fk = [c for c in table.value_columns if c in table.fks] if full else []
    exprs: list[sql.Composable] = []
    fields: list[tuple[str, str]] = []
    hashed_key = [c for c in key_plain if not raw(c)]
    hashed_value = [c for c in value_plain if not raw(c)]
    if hashed_key:
        exprs.append(_record_hash(table, hashed_key))
        fields.append(("lk", ">i8"))
    if hashed_value:
        exprs.append(_record_hash(table, hashed_value))
        fields.append(("lv", ">i8"))
    raws: dict[str, str] = {}
    for c in [c for c in key_plain + value_plain if raw(c)]:
        raws[c] = f"r{len(raws)}"
        exprs.append(sql.SQL("t0.{}").format(sql.Identifier(c)))
        fields.append((raws[c], _WIDTH[table.types[c]]))
    refs: dict[str, _Ref] = {}
    for i, c in enumerate(key_fk + value_fk):
        col = sql.SQL("t0.{}").format(sql.Identifier(c))
        ref = catalog.table(table.fks[c].table)
        typ = table.types[c]
        nullable = c not in table.not_null
        if ref.pk_type in _INTEGER_IDS and typ in _WIDTH:
            expr, width, null = col, _WIDTH[typ], _NULL_ID[typ]
        else:
            expr, width, null = id_sql(col, ref.pk_type), ">i8", _NULL_ID["bigint"]
        if nullable:
            expr = sql.SQL("coalesce({}, {})").format(expr, sql.Literal(null))
        exprs.append(expr)
        fields.append((f"f{i}", width))
        refs[c] = _Ref(field=f"f{i}", table=ref.name, null=null if nullable else None)
    if pk or not full:
        exprs.append(id_sql(sql.SQL("t0.{}").format(sql.Identifier(table.pk)), table.pk_type))
        fields.append(("pk", ">i8"))
    if ctid:
        exprs.append(sql.SQL("t0.ctid"))
    if not exprs:
        exprs.append(sql.SQL("0::bigint"))  # a key of foreign keys only, read for its count
        fields.append(("zero", ">i8"))
    conds: list[sql.Composable] = [RowSql.build(catalog, table).live_filter()] if full else []
    if where is not None:
        conds.append(where)
    query = sql.SQL("COPY (SELECT {} FROM {} AS t0 WHERE {}) TO STDOUT (FORMAT binary)").format(
        sql.SQL(", ").join(exprs),
        qualified(table),
        sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE"),
    )
    return _Layout(
        query=query,
        dtype=_dtype(fields, ctid),
        key_refs=tuple(refs[c] for c in key_fk),
        value_refs=tuple(refs[c] for c in value_fk),
        key_raw=tuple(raws[c] for c in key_plain if c in raws),
        value_raw=tuple(raws[c] for c in value_plain if c in raws),
        has_lk=bool(hashed_key),
        has_lv=bool(hashed_value),
    )


def layout_sql(catalog: Catalog, table: BoundTable) -> sql.Composed:
    """The row stream's query for ``table`` (what the drift watch's hash scheme digests)."""
    return _layout(catalog, table, full=True, where=None).query


def _body(data: bytes) -> bytes:
    """The start of a binary COPY without its header (checked)."""
    if not data.startswith(_HEADER):
        raise ChangesetError("unexpected COPY header from the server; the row hashes cannot be read.")
    return data[len(_HEADER) :]


def read_all(cur: Any, query: sql.Composed, dtype: np.dtype) -> np.ndarray:
    """A small binary COPY read at once."""
    buf = io.BytesIO()
    cur.copy_expert(query.as_string(cur), buf)
    data = buf.getvalue()
    if data.endswith(_TRAILER):
        data = data[: -len(_TRAILER)]
    data = _body(data)
    rest = len(data) % dtype.itemsize
    if rest:
        raise ChangesetError(f"truncated COPY stream ({rest} bytes left); read again.")
    return np.frombuffer(data, dtype=dtype)


class Stream:
    """One binary COPY read in batches while it runs: a thread writes it into a pipe, the caller reads."""

    def __init__(self, conn: Any, query: str, dtype: np.dtype, name: str) -> None:
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):  # a larger pipe means fewer wake-ups; Linux only
            fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _CHUNK)
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._writer = os.fdopen(write_fd, "wb", buffering=_CHUNK)
        self._dtype = dtype
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

        self._thread = threading.Thread(target=produce, name=f"gardien-copy-{name}", daemon=True)
        self._thread.start()

    def read(self, rows: int) -> np.ndarray:
        """Up to ``rows`` more rows (fewer only at the end of the stream)."""
        item = self._dtype.itemsize
        want = rows * item + (0 if self._started else len(_HEADER))
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
            data = _body(data)
            self._started = True
        whole = min(len(data) // item, rows)
        self._pending = data[whole * item :]
        if self.done and self._pending:
            raise ChangesetError(f"truncated COPY stream ({len(self._pending)} bytes left); read again.")
        return np.frombuffer(data, dtype=self._dtype, count=whole)

    def close(self, *, quiet: bool = False) -> None:
        """Stop reading (a producer still writing gets a broken pipe) and re-raise its failure unless quiet."""
        with contextlib.suppress(OSError):
            self._reader.close()
        self._thread.join()
        if self._failure and not quiet:
            raise self._failure[0]


_DENSE = 4  # ids spanning at most this many times their count are looked up by direct indexing


class _KeyMap:
    """Key hashes of some rows of one table, by 64-bit id."""

    def __init__(self, ids: np.ndarray, kh: np.ndarray, *, complete: bool) -> None:
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]  # int64, sorted
        self.kh = kh[order]  # uint64
        self.complete = complete  # every physical row of the table is in
        self._base = 0
        self._table: np.ndarray | None = None
        if len(self.ids):
            low, high = int(self.ids[0]), int(self.ids[-1])
            if high - low < _DENSE * len(self.ids) + 1024:
                self._base = low
                self._table = np.full(high - low + 1, DANGLING_REF, dtype=np.uint64)
                self._table[self.ids - low] = self.kh

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """The key hash of each id (DANGLING_REF for an id no row has)."""
        if not len(self.ids):
            return np.full(len(ids), DANGLING_REF, dtype=np.uint64)
        if self._table is not None:
            at = ids - self._base
            inside = (at >= 0) & (at < len(self._table))
            if inside.all():
                return self._table[at]
            out = np.full(len(ids), DANGLING_REF, dtype=np.uint64)
            out[inside] = self._table[at[inside]]
            return out
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.where(self.ids[at] == ids, self.kh[at], DANGLING_REF)

    def has(self, ids: np.ndarray) -> np.ndarray:
        if not len(self.ids):
            return np.zeros(len(ids), dtype=bool)
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return self.ids[at] == ids


@dataclass(frozen=True, slots=True)
class Hashed:
    """Live rows of a table with their hashes (and ctids when asked)."""

    kh: np.ndarray | None  # uint64 key hashes (None when only the local hash was asked)
    row: np.ndarray | None  # uint64 row hashes (fingerprint halves derive from these)
    pk: np.ndarray | None  # int64 ids, when asked
    block: np.ndarray | None = None
    pos: np.ndarray | None = None
    local: np.ndarray | None = None  # uint64 local hashes (the row as stored, ids included), when asked


class RowHasher:
    """Portable row hashes of a catalog's tables through one cursor (one snapshot)."""

    def __init__(self, cur: Any, catalog: Catalog, *, batch: int | None = None) -> None:
        self.cur = cur
        self.catalog = catalog
        self.batch = batch or BATCH
        self._maps: dict[str, _KeyMap] = {}
        self._checked: set[tuple[str, int | None]] = set()

    # -- key hashes of referenced rows -------------------------------------------------------------
    def key_map(self, name: str, ids: np.ndarray | None = None) -> _KeyMap:
        """Key hashes of ``name``'s rows: all of them, or at least those with ``ids`` (int64)."""
        table = self.catalog.table(name)
        known = self._maps.get(name)
        if known is not None and (known.complete or (ids is not None and known.has(ids).all())):
            return known
        where = None
        if ids is not None and table.pk_type in _INTEGER_IDS:
            wanted = np.unique(ids)
            if known is not None:
                wanted = wanted[~known.has(wanted)]
            if not len(wanted):
                return known or _KeyMap(np.empty(0, np.int64), np.empty(0, np.uint64), complete=False)
            where = sql.SQL("t0.{} = ANY({}::bigint[])").format(
                sql.Identifier(table.pk), sql.Literal("{" + ",".join(map(str, wanted.tolist())) + "}")
            )
        layout = _layout(self.catalog, table, full=False, where=where, ctid=False)
        rows = read_all(self.cur, layout.query, layout.dtype)
        kh = self._key_hashes(layout, rows, restricted=where is not None)
        pk = rows["pk"].astype(np.int64)
        if known is not None and where is not None:
            pk, kh = np.concatenate([known.ids, pk]), np.concatenate([known.kh, kh])
        found = _KeyMap(pk, kh, complete=where is None)
        self._maps[name] = found
        return found

    def _null_free(self, ref: _Ref) -> None:
        """Refuse a referenced table that has a row whose id is the value standing for NULL in ``ref``."""
        marker = (ref.table, ref.null)
        if ref.null is None or marker in self._checked:
            return
        table = self.catalog.table(ref.table)
        if table.pk_type in _INTEGER_IDS:
            self.cur.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} = %s)").format(
                    qualified(table), sql.Identifier(table.pk)
                ),
                (ref.null,),
            )
            if self.cur.fetchone()[0]:
                raise ChangesetError(
                    f"table {table.name} has a row with id {ref.null}, the value Gardien reads as NULL in a "
                    "nullable foreign key of that type; renumber that row (ids are never compared)."
                )
        self._checked.add(marker)

    def _parts(self, refs: tuple[_Ref, ...], rows: np.ndarray, *, restricted: bool) -> list[np.ndarray]:
        """The referenced rows' key hashes for each foreign key of ``refs`` (NULL and dangling as constants)."""
        parts = []
        for ref in refs:
            self._null_free(ref)
            ids = rows[ref.field].astype(np.int64)
            is_null = ids == ref.null if ref.null is not None else None
            wanted = ids[~is_null] if is_null is not None else ids
            part = self.key_map(ref.table, wanted if restricted else None).lookup(ids)
            if is_null is not None:
                part[is_null] = NULL_REF
            parts.append(part)
        return parts

    def _key_hashes(self, layout: _Layout, rows: np.ndarray, *, restricted: bool) -> np.ndarray:
        parts = [rows["lk"].astype(np.uint64)] if layout.has_lk else []
        parts += [rows[f].astype(np.int64).view(np.uint64) for f in layout.key_raw]
        parts += self._parts(layout.key_refs, rows, restricted=restricted)
        return chain(KEY_SEED, parts, len(rows))

    def _mix_rows(
        self, layout: _Layout, rows: np.ndarray, *, restricted: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        kh = self._key_hashes(layout, rows, restricted=restricted)
        parts = [kh]
        if layout.has_lv:
            parts.append(rows["lv"].astype(np.uint64))
        parts += [rows[f].astype(np.int64).view(np.uint64) for f in layout.value_raw]
        parts += self._parts(layout.value_refs, rows, restricted=restricted)
        return kh, chain(ROW_SEED, parts, len(rows))

    # -- live rows ---------------------------------------------------------------------------------
    @staticmethod
    def _local(layout: _Layout, rows: np.ndarray) -> np.ndarray:
        """The row as stored, its id and foreign-key ids included, no translation (scheme local/3): the same
        fields the portable hash reads, chained in layout order, so both come from one stream."""
        parts = [rows["pk"].astype(np.int64).view(np.uint64)]
        parts += [rows[f].astype(np.uint64) for f in ("lk", "lv") if f in rows.dtype.names]
        parts += [rows[f].astype(np.int64).view(np.uint64) for f in (*layout.key_raw, *layout.value_raw)]
        parts += [
            rows[r.field].astype(np.int64).view(np.uint64) for r in (*layout.key_refs, *layout.value_refs)
        ]
        return chain(LOCAL_SEED, parts, len(rows))

    def rows(
        self,
        table: BoundTable,
        *,
        where: sql.Composable | None = None,
        pk: bool = False,
        local: bool = False,
    ) -> Hashed:
        """The live rows of ``table`` matching ``where`` (few: read at once), hashed."""
        layout = _layout(self.catalog, table, full=True, where=where, pk=pk or local)
        rows = read_all(self.cur, layout.query, layout.dtype)
        kh, row = self._mix_rows(layout, rows, restricted=True)
        return Hashed(
            kh=kh,
            row=row,
            pk=rows["pk"].astype(np.int64) if pk else None,
            local=self._local(layout, rows) if local else None,
        )

    def stream(
        self,
        conn: Any,
        table: BoundTable,
        *,
        ctid: bool = False,
        pk: bool = False,
        local: bool = False,
        portable: bool = True,
    ) -> Iterator[Hashed]:
        """Every live row of ``table``, hashed, in batches, read through ``conn`` (this hasher's).

        ``local`` adds the local hashes; ``portable=False`` computes only those (no referenced table read).
        """
        layout = _layout(self.catalog, table, full=True, where=None, ctid=ctid, pk=pk or local)
        for ref in (*layout.key_refs, *layout.value_refs):
            self._null_free(ref)
            if portable:
                self.key_map(ref.table)  # whole referenced tables, before the stream starts
        stream = Stream(conn, layout.query.as_string(self.cur), layout.dtype, table.name)
        try:
            while not stream.done:
                rows = stream.read(self.batch)
                if not len(rows):
                    continue
                kh, row = self._mix_rows(layout, rows, restricted=False) if portable else (None, None)
                yield Hashed(
                    kh=kh,
                    row=row,
                    pk=rows["pk"].astype(np.int64) if pk else None,
                    block=rows["block"].astype(np.uint32) if ctid else None,
                    pos=rows["pos"].astype(np.uint16) if ctid else None,
                    local=self._local(layout, rows) if local else None,
                )
        except BaseException:
            stream.close(quiet=True)
            raise
        stream.close()


def row_hash_hex(row: np.ndarray) -> list[str]:
    """Row hashes as 32 hex digits: the two halves (as unsigned 64-bit), as the drift baseline stores them."""
    h1, h2 = halves(row)
    return [
        f"{a:016x}{b:016x}"
        for a, b in zip(h1.view(np.uint64).tolist(), h2.view(np.uint64).tolist(), strict=True)
    ]

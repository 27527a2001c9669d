"""Load a portable dataset into one environment with COPY, giving rows that environment's own ids."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from operator import itemgetter

from psycopg2 import sql

from gardien.demo.content import TABLES, Dataset, Row, TableSpec, row_key

# Ids are assigned here, not by the sequences, so they are known before the rows are written (a foreign
# key becomes a dictionary look-up) and environments never share an id for the same row: environment
# number ``slot`` uses ids ``slot * stride + 1 ...`` of each table, in its own shuffled order.
NULL = r"\N"
_BATCH = 20_000  # rows per chunk handed to COPY: big enough to amortise, small enough to stream
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_REFERENCED = frozenset(target for spec in TABLES for _col, target in spec.references)


def schema_sql() -> str:
    """The demo schema DDL shipped with the package."""
    return resources.files("gardien.demo").joinpath("schema.sql").read_text(encoding="utf-8")


def id_stride(*datasets: Dataset) -> dict[str, int]:
    """Per table, a power of ten above the largest row count, so id ranges of environments never overlap."""
    strides: dict[str, int] = {}
    for spec in TABLES:
        largest = max(len(d.rows[spec.name]) for d in datasets)
        stride = 10
        while stride <= largest:
            stride *= 10
        strides[spec.name] = stride
    return strides


def _text(value: object) -> str:
    if value is None:
        return NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    return str(value)


class _Memo(dict):
    """COPY text of each distinct value of one column, computed once (most columns repeat a lot)."""

    def __missing__(self, value: object) -> str:
        text = self[value] = _text(value)
        return text


class _ChunkStream:
    """A read()-able view of an iterator of text chunks, for ``copy_expert``.

    ``read`` returns one whole chunk whatever size is asked: psycopg2 sends what it gets and stops at "".
    """

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks

    def read(self, size: int = -1) -> str:
        return next(self._chunks, "")


def _encoders(spec: TableSpec, ids: Mapping[str, Mapping[object, str]]) -> list[Callable[[object], str]]:
    references = dict(spec.references)
    encoders: list[Callable[[object], str]] = []
    for column in spec.columns:
        if column in references:
            encoders.append({None: NULL, **ids[references[column]]}.__getitem__)
        else:
            encoders.append(_Memo().__getitem__)
    return encoders


def _copy_chunks(rows: list[Row], encoders: list[Callable[[object], str]], first: int) -> Iterator[str]:
    """COPY text of ``rows`` with ids from ``first``, encoded column by column (C-level loops, no per-row code)."""
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        columns = [map(str, range(first + start, first + start + len(batch)))]
        columns.extend(map(encode, map(itemgetter(i), batch)) for i, encode in enumerate(encoders))
        yield "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"


def _drop_constraints(cur) -> list[tuple[str, str, str]]:
    """Drop the public schema's keys and foreign keys; return (table, name, definition) to restore them.

    Foreign keys come first (they depend on the unique indexes); restoring walks the list backwards.
    """
    cur.execute(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
        "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE c.contype IN ('f', 'p', 'u') AND n.nspname = 'public' "
        "ORDER BY c.contype = 'f' DESC, 1, 2"
    )
    found = cur.fetchall()
    for table, name, _definition in found:
        cur.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name))
        )
    return found


def _restore_constraints(cur, found: list[tuple[str, str, str]]) -> None:
    for table, name, definition in reversed(found):
        # The definition is PostgreSQL's own rendering of the constraint it just dropped, not input text.
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(table), sql.Identifier(name), sql.SQL(definition)
            )
        )


def load_dataset(conn, dataset: Dataset, *, slot: int, strides: Mapping[str, int], shuffle_seed: str) -> None:
    """COPY every table of ``dataset`` into ``conn``'s database (schema already created); no commit.

    Rows are written in an order shuffled by ``shuffle_seed``, except rows new in this environment
    (``dataset.appended``), which come last and so get the highest ids, as they would in real life.
    """
    rng = random.Random(shuffle_seed)
    ids: dict[str, dict[object, str]] = {}
    with conn.cursor() as cur:
        # Building each index once and validating each foreign key with one join after the load is an
        # order of magnitude faster than maintaining them row by row (1M rows: ~3 s instead of ~20 s).
        constraints = _drop_constraints(cur)
        for spec in TABLES:
            rows = dataset.rows[spec.name]
            fresh = dataset.appended.get(spec.name, 0)
            order = list(range(len(rows) - fresh))
            rng.shuffle(order)
            order.extend(range(len(rows) - fresh, len(rows)))
            first = slot * strides[spec.name] + 1
            if spec.name in _REFERENCED:  # looked up by the tables loaded after it (or by itself)
                ids[spec.name] = {row_key(spec, rows[i]): str(first + n) for n, i in enumerate(order)}
            chunks = _copy_chunks([rows[i] for i in order], _encoders(spec, ids), first)
            copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier("public", spec.name),
                sql.SQL(", ").join(sql.Identifier(c) for c in ("id", *spec.columns)),
            )
            cur.copy_expert(copy.as_string(conn), _ChunkStream(chunks))
            # Later inserts (by the apply engine) must continue after the ids given here.
            cur.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)",
                (f"public.{spec.name}", max(first + len(rows) - 1, 1), bool(rows)),
            )
        _restore_constraints(cur, constraints)

"""Order-independent fingerprints of a managed scope in portable form, computed inside PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg2 import sql

from gardien.catalog import BoundTable, Catalog
from gardien.portable import SESSION_SETTINGS, RowSql, qualified
from gardien.rowhash import RowHasher, column_sql, exact_sum, halves

# Each row's portable form is hashed (gardien.rowhash: two 64-bit halves per row) and the halves are
# summed over the table: an additive multiset hash, independent of row order and physical layout.
# Surrogate ids never enter it, so two environments with the same configuration and different ids have
# the same fingerprint. Soft-deleted rows are outside the scope (RowSql.live_filter): a row retired by the
# soft-delete flag means "absent", and one side may have retired a row the other never had, so including
# them would make equal configurations differ.


@dataclass(frozen=True, slots=True)
class TableFingerprint:
    """Row count and the two sums of one table; being sums, fingerprints can be added and subtracted."""

    table: str
    rows: int
    low: int
    high: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.table}:{self.rows}:{self.low}:{self.high}".encode()).hexdigest()

    def shifted(self, after: TableFingerprint, before: TableFingerprint) -> TableFingerprint:
        """This fingerprint plus the effect of a change that took ``before`` to ``after``."""
        return TableFingerprint(
            self.table,
            self.rows + after.rows - before.rows,
            self.low + after.low - before.low,
            self.high + after.high - before.high,
        )

    def to_dict(self) -> dict[str, Any]:
        # Sums as text: they exceed 64 bits on large tables and must survive any JSON reader.
        return {
            "table": self.table,
            "rows": self.rows,
            "low": str(self.low),
            "high": str(self.high),
            "digest": self.digest,
        }


@dataclass(frozen=True, slots=True)
class ScopeFingerprint:
    """Fingerprints of some managed tables and one digest over them."""

    tables: tuple[TableFingerprint, ...]

    @property
    def digest(self) -> str:
        lines = sorted(f"{t.table}:{t.digest}" for t in self.tables)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def table(self, name: str) -> TableFingerprint | None:
        return next((t for t in self.tables if t.table == name), None)

    def restricted(self, names: Iterable[str]) -> ScopeFingerprint:
        wanted = set(names)
        return ScopeFingerprint(tables=tuple(t for t in self.tables if t.table in wanted))

    def shifted(self, after: ScopeFingerprint, before: ScopeFingerprint) -> ScopeFingerprint:
        """Add the effect (``after`` - ``before``) of another change on the tables both cover."""
        out = []
        for t in self.tables:
            a, b = after.table(t.table), before.table(t.table)
            out.append(t.shifted(a, b) if a is not None and b is not None else t)
        return ScopeFingerprint(tables=tuple(out))

    def differing(self, other: ScopeFingerprint) -> list[str]:
        """Names of the tables whose fingerprints differ (or exist on one side only)."""
        names = {t.table for t in self.tables} | {t.table for t in other.tables}
        return sorted(n for n in names if self.table(n) != other.table(n))

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "tables": [t.to_dict() for t in self.tables]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScopeFingerprint:
        return cls(
            tables=tuple(
                TableFingerprint(t["table"], int(t["rows"]), int(t["low"]), int(t["high"]))
                for t in data["tables"]
            )
        )


def ids_literal(ids: Iterable[Any]) -> sql.Composable:
    """An array literal of primary-key values (not a parameter: a LIKE scope filter's "%" must not read as a
    placeholder). Integer ids are written as one bigint[] text, much cheaper than quoting each element."""
    ids = list(ids)
    if all(type(i) is int for i in ids):
        return sql.SQL("{}::bigint[]").format(sql.Literal("{" + ",".join(map(str, ids)) + "}"))
    return sql.Literal(ids)


def sums(table: str, row: np.ndarray) -> TableFingerprint:
    """The fingerprint of rows with these row hashes (gardien.rowhash)."""
    h1, h2 = halves(row)
    return TableFingerprint(table=table, rows=len(row), low=exact_sum(h1), high=exact_sum(h2))


def table_fingerprint(
    cur: Any, *, catalog: Catalog, table: BoundTable, hasher: RowHasher | None = None
) -> TableFingerprint:
    """Fingerprint of the live, in-scope rows of one table, in portable form (streamed: constant memory)."""
    hasher = hasher or RowHasher(cur, catalog)
    return _summed(table.name, (batch.row for batch in hasher.stream(cur.connection, table)))


def scope_fingerprint(cur: Any, catalog: Catalog, tables: Iterable[str] | None = None) -> ScopeFingerprint:
    """Fingerprint of the managed scope (or of the named tables only), in catalog order.

    The caller must have pinned the session output settings (gardien.portable.set_session).
    """
    wanted = set(catalog.names if tables is None else tables)
    hasher = RowHasher(cur, catalog)
    return ScopeFingerprint(
        tables=tuple(
            table_fingerprint(cur, catalog=catalog, table=t, hasher=hasher)
            for t in catalog.tables
            if t.name in wanted
        )
    )


# The LOCAL fingerprint: the same additive sums over the rows as they are stored, surrogate id and
# foreign-key ids included, no join. It is not portable (ids differ between environments) and serves one
# purpose: proving a rollback. Rollback restores deleted rows with their former ids, restores updated rows
# in place and deletes inserted rows, so an exact restoration is also an id-exact one, and a restored scope
# whose local fingerprint equals the one journaled before the deployment is the scope as it was, column
# for column. Scheme local/3 (current) hashes the very fields the portable stream reads (gardien.rowhash:
# the record hash of the plain columns, NOT NULL integers and foreign-key ids as stored, plus the id),
# chained and mixed per row on the client, so one scan gives both fingerprints. No text is rendered for
# types whose equality is identity (integers, booleans, dates, timestamps, uuid, numeric with
# a fixed scale; text compared byte-wise under COLLATE "C"); every other type is hashed through its text
# form, as the portable fingerprint does, so that "equal" never hides a different stored value (1.0 and
# 1.00, -0 and 0, '1 day' and '24 hours', case-insensitive collations).
LOCAL_SEEDS = (0, 6148914691236517205)
# Earlier schemes, still computed for the journals that recorded them: local/2 mixed each row's record
# hash in SQL (its text hashed again, two seeds); local/1 summed hash_record_extended itself, which is
# linear in the columns' hashes modulo 2**64: two rows exchanging their values showed only through
# carries, about half the time.
LOCAL_SCHEME = "local/3"
LOCAL_SCHEMES = ("local/1", "local/2", "local/3")
_LOCAL_SQL = {
    "local/1": """
SELECT count(*), coalesce(sum(hash_record_extended({row}, {s1})), 0)::text,
       coalesce(sum(hash_record_extended({row}, {s2})), 0)::text
FROM {src} AS t0 WHERE {live} AND {where}
""",
    "local/2": """
SELECT count(*), coalesce(sum(hashtextextended(r, {s1})), 0)::text, coalesce(sum(hashtextextended(r, {s2})), 0)::text
FROM (SELECT hash_record_extended({row}, 0)::text AS r FROM {src} AS t0 WHERE {live} AND {where} OFFSET 0) AS s
""",
}


def _local_column(column: str, typ: str) -> sql.Composable:
    return column_sql(sql.SQL("t0.{}").format(sql.Identifier(column)), typ)


def local_row(table: BoundTable) -> sql.Composable:
    """ROW(primary key, managed columns) of a ``t0`` row, as the local fingerprint hashes it."""
    cols = [(table.pk, table.pk_type)] + [(c, table.types[c]) for c in table.columns if c != table.pk]
    return sql.SQL("ROW({})").format(sql.SQL(", ").join(_local_column(c, t) for c, t in cols))


def local_table_fingerprint(
    cur: Any,
    *,
    catalog: Catalog,
    table: BoundTable,
    where: sql.Composable | None = None,
    scheme: str = LOCAL_SCHEME,
) -> TableFingerprint:
    """Local fingerprint of the live, in-scope rows of one table (also matching ``where``)."""
    if scheme == LOCAL_SCHEME:
        hasher = RowHasher(cur, catalog)
        if where is not None:
            return sums(table.name, hasher.rows(table, where=where, local=True).local)
        return _summed(
            table.name, (b.local for b in hasher.stream(cur.connection, table, local=True, portable=False))
        )
    rs = RowSql.build(catalog, table)
    cur.execute(
        sql.SQL(_LOCAL_SQL[scheme]).format(
            row=local_row(table),
            s1=sql.Literal(LOCAL_SEEDS[0]),
            s2=sql.Literal(LOCAL_SEEDS[1]),
            src=qualified(table),
            live=rs.live_filter(),
            where=sql.SQL("TRUE") if where is None else where,
        )
    )
    rows, low, high = cur.fetchone()
    return TableFingerprint(table=table.name, rows=int(rows), low=int(low), high=int(high))


def local_scope_fingerprint(
    cur: Any, catalog: Catalog, tables: Iterable[str], *, scheme: str = LOCAL_SCHEME
) -> ScopeFingerprint:
    """Local fingerprint of the named tables, in catalog order (``scheme``: see LOCAL_SCHEMES)."""
    wanted = set(tables)
    return ScopeFingerprint(
        tables=tuple(
            local_table_fingerprint(cur, catalog=catalog, table=t, scheme=scheme)
            for t in catalog.tables
            if t.name in wanted
        )
    )


def touched_fingerprints(
    cur: Any, *, catalog: Catalog, ids: dict[str, list[Any]]
) -> tuple[ScopeFingerprint, ScopeFingerprint]:
    """Portable and local fingerprints of the live, in-scope rows of each table whose primary key is in
    ``ids[table]``, from one read per table.

    Apply adds the difference of these over the touched rows (after minus before its writes) to the full
    fingerprints taken before: one full scan instead of two. Rows outside the touched set cannot change
    portable form meanwhile (natural keys never change in place), and post-deploy verification recomputes
    the full fingerprint, so a wrong sum would not go unnoticed.
    """
    hasher = RowHasher(cur, catalog)
    portable, local = [], []
    for name, table_ids in ids.items():
        table = catalog.table(name)
        where = sql.SQL("t0.{} = ANY({})").format(sql.Identifier(table.pk), ids_literal(table_ids))
        hashed = hasher.rows(table, where=where, local=True)
        portable.append(sums(name, hashed.row))
        local.append(sums(name, hashed.local))
    return ScopeFingerprint(tables=tuple(portable)), ScopeFingerprint(tables=tuple(local))


def scope_fingerprints(
    cur: Any, catalog: Catalog, tables: Iterable[str]
) -> tuple[ScopeFingerprint, ScopeFingerprint]:
    """Portable and local fingerprints of the named tables, in catalog order, from one scan per table."""
    wanted = set(tables)
    hasher = RowHasher(cur, catalog)
    portable, local = [], []
    for table in catalog.tables:
        if table.name in wanted:
            parts = list(_both(hasher.stream(cur.connection, table, local=True), table.name))
            portable.append(_add(table.name, [p for p, _ in parts]))
            local.append(_add(table.name, [q for _, q in parts]))
    return ScopeFingerprint(tables=tuple(portable)), ScopeFingerprint(tables=tuple(local))


def _both(batches: Iterable[Any], name: str) -> Iterator[tuple[TableFingerprint, TableFingerprint]]:
    for batch in batches:
        yield sums(name, batch.row), sums(name, batch.local)


def _add(name: str, parts: list[TableFingerprint]) -> TableFingerprint:
    return TableFingerprint(
        table=name,
        rows=sum(p.rows for p in parts),
        low=sum(p.low for p in parts),
        high=sum(p.high for p in parts),
    )


def _summed(name: str, hashes: Iterable[np.ndarray]) -> TableFingerprint:
    return _add(name, [sums(name, h) for h in hashes])


class SnapshotFingerprints:
    """The full-scope portable and local fingerprints of some tables, computed on another connection that
    shares the caller's snapshot (pg_export_snapshot), while the caller goes on with its transaction.

    The exported snapshot is the state the caller's transaction started from (it must be taken before its
    writes): the reader sees exactly that state, never the caller's uncommitted writes, so the result is
    the same as scanning on the caller's connection at that point, only concurrent with the rest of the
    apply. One scan per table gives both fingerprints (gardien.rowhash). ``start`` connects and imports
    the snapshot synchronously and returns None when that fails (the caller then scans itself);
    ``result()`` waits and re-raises the reader's error; ``close()`` cancels it if it still runs and
    closes the connection.
    """

    def __init__(self, conn: Any, catalog: Catalog, tables: list[str]) -> None:
        self._catalog = catalog
        self._tables = tables
        self._conn = conn
        self._result: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @classmethod
    def start(
        cls, connect: Any, snapshot: str, catalog: Catalog, tables: list[str], settings: dict[str, str]
    ) -> SnapshotFingerprints | None:
        """Open a reader on ``snapshot`` with ``settings`` (set_config, transaction-local) and start it."""
        conn = None
        try:
            conn = connect()
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                # The first statement of the transaction, as PostgreSQL requires.
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
                for name, value in [*SESSION_SETTINGS, *settings.items()]:
                    cur.execute("SELECT set_config(%s, %s, true)", (name, value))
        except Exception:  # noqa: BLE001 - no reader (connection limit, pooler...): the caller scans itself
            if conn is not None:
                conn.close()
            return None
        return cls(conn, catalog, tables)

    def _run(self) -> None:
        try:
            with self._conn.cursor() as cur:
                self._result = scope_fingerprints(cur, self._catalog, self._tables)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._result = exc

    def result(self) -> tuple[ScopeFingerprint, ScopeFingerprint]:
        """(portable, local) fingerprints of the tables, once the reader is done."""
        self._thread.join()
        self.close()
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._conn.cancel()
            except Exception:  # noqa: BLE001, S110 - best effort: the connection is closed below
                pass
        self._thread.join()
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001, S110
            pass

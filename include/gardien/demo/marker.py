"""The completion marker and the pending-change manifest kept in each demo database (schema gardien_demo)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from psycopg2 import sql
from psycopg2.extras import execute_values

from gardien.demo.changes import PendingChange
from gardien.demo.content import TABLES

# The schema sits beside the managed ``public`` tables, outside the catalog, so releases never carry it.
_DDL = """
CREATE SCHEMA gardien_demo;
COMMENT ON SCHEMA gardien_demo IS 'Gardien demo generator bookkeeping; not part of the managed configuration.';
CREATE TABLE gardien_demo.pending_change (
    seq         integer PRIMARY KEY,
    kind        text    NOT NULL,
    table_name  text    NOT NULL,
    natural_key text[]  NOT NULL,
    field       text,
    before      text,
    after       text,
    description text    NOT NULL
);
CREATE TABLE gardien_demo.build_info (
    environment       text    NOT NULL,
    scale             integer NOT NULL,
    seed              bigint  NOT NULL,
    bench_changes     integer[],
    fingerprint       text    NOT NULL,
    content_checksum  text    NOT NULL,
    row_counts        jsonb   NOT NULL,
    built_at          timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True, slots=True)
class Marker:
    """What a finished build recorded: its parameters and the row count of each table."""

    environment: str
    scale: int
    seed: int
    bench_changes: tuple[int, int, int] | None
    fingerprint: str
    row_counts: Mapping[str, int]
    content_checksum: str = ""  # of the managed tables as built; not a build parameter

    def same_build(self, other: Marker) -> bool:
        return (self.environment, self.scale, self.seed, self.bench_changes, self.fingerprint) == (
            other.environment,
            other.scale,
            other.seed,
            other.bench_changes,
            other.fingerprint,
        )

    def describe(self) -> str:
        bench = (
            "" if self.bench_changes is None else f" bench_changes={','.join(map(str, self.bench_changes))}"
        )
        return f"scale={self.scale} seed={self.seed}{bench} generator={self.fingerprint[:12]}"


def create_bookkeeping(cur) -> None:
    """Create the gardien_demo schema (empty: the marker row is written last, by write_marker)."""
    cur.execute(_DDL)


def write_manifest(cur, changes: tuple[PendingChange, ...]) -> None:
    execute_values(
        cur,
        "INSERT INTO gardien_demo.pending_change "
        "(seq, kind, table_name, natural_key, field, before, after, description) VALUES %s",
        [
            (n, c.kind, c.table, list(c.key), c.field, c.before, c.after, c.description)
            for n, c in enumerate(changes, start=1)
        ],
        page_size=5000,
    )


def write_marker(cur, marker: Marker) -> None:
    cur.execute(
        "INSERT INTO gardien_demo.build_info "
        "(environment, scale, seed, bench_changes, fingerprint, row_counts, content_checksum) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            marker.environment,
            marker.scale,
            marker.seed,
            None if marker.bench_changes is None else list(marker.bench_changes),
            marker.fingerprint,
            json.dumps(dict(marker.row_counts)),
            marker.content_checksum,
        ),
    )


def read_marker(cur) -> Marker | None:
    """The marker of the database ``cur`` is connected to, or None when the build never finished."""
    cur.execute("SELECT to_regclass('gardien_demo.build_info') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute(
        "SELECT environment, scale, seed, bench_changes, fingerprint, row_counts, content_checksum "
        "FROM gardien_demo.build_info ORDER BY built_at DESC LIMIT 1"
    )
    row = cur.fetchone()
    if row is None:
        return None
    environment, scale, seed, bench, fingerprint, counts, checksum = row
    return Marker(
        environment=environment,
        scale=scale,
        seed=seed,
        bench_changes=None if bench is None else (bench[0], bench[1], bench[2]),
        fingerprint=fingerprint,
        row_counts=counts,
        content_checksum=checksum,
    )


def content_checksum(cur) -> str:
    """MD5 over every managed table's rows in id order: any insert, update or delete changes it.

    Costs about 2 s per million rows, so it is computed once at build time and compared only on request.
    """
    digest = hashlib.md5(usedforsecurity=False)
    for spec in TABLES:
        cur.execute(
            sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')) FROM {} t").format(
                sql.Identifier("public", spec.name)
            )
        )
        digest.update(f"{spec.name}:{cur.fetchone()[0]};".encode())
    return digest.hexdigest()


def read_manifest(cur) -> tuple[PendingChange, ...]:
    """The pending changes recorded in the database ``cur`` is connected to (empty if none)."""
    cur.execute("SELECT to_regclass('gardien_demo.pending_change') IS NOT NULL")
    if not cur.fetchone()[0]:
        return ()
    cur.execute(
        "SELECT kind, table_name, natural_key, field, before, after, description "
        "FROM gardien_demo.pending_change ORDER BY seq"
    )
    return tuple(
        PendingChange(kind, table, tuple(key), field, before, after, description)
        for kind, table, key, field, before, after, description in cur.fetchall()
    )

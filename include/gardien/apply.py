"""Apply a changeset to one target: lock, three-way check, set-based writes, journal — one transaction."""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors

from gardien import faults, journal, pg
from gardien.audit import set_requester
from gardien.catalog import Catalog, bind_catalog
from gardien.changeset import Changeset
from gardien.config import CatalogConfig
from gardien.errors import ChangesetError, DeploymentError
from gardien.fingerprint import (
    LOCAL_SCHEME,
    ScopeFingerprint,
    SnapshotFingerprints,
    scope_fingerprints,
    touched_fingerprints,
)
from gardien.journal import BeforeImage
from gardien.keys import KeyMap
from gardien.plan import FieldNote, three_way
from gardien.portable import Key, set_session
from gardien.references import check_references
from gardien.rowhash import SCHEME as ROWHASH_SCHEME
from gardien.shape import check_shape
from gardien.touched import Whole, read_resolved
from gardien.writes import TableWrites, execute

_LOCK_CLASS = 0x47415244 & 0x7FFFFFFF  # "GARD"
WORK_MEM = "64MB"  # per sort or hash of this transaction only (SET LOCAL)


_timing = logging.getLogger("gardien.timing")


class Phases:
    """Wall time of each phase of an apply or a rollback, logged at DEBUG on ``gardien.timing``."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        if _timing.isEnabledFor(logging.DEBUG):
            now = time.perf_counter()
            _timing.debug("%s: %s %.3f s", self.what, phase, now - self.last)
            self.last = now


R = TypeVar("R")

_gc_lock = threading.Lock()
_gc_depth = 0  # applies and rollbacks running in this process
_gc_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while an apply or a rollback runs (process-wide, nestable).

    They allocate hundreds of thousands of small containers (keys, rows, before-images) that all stay
    alive until the end, and no cycles: each full collection re-scans them for nothing (about 0.2 s of a
    16k-change apply). Reference counting still frees everything; the collector is re-enabled, if it was
    enabled, when the last apply or rollback of the process ends.
    """
    global _gc_depth, _gc_was_enabled
    with _gc_lock:
        if _gc_depth == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_was_enabled:
                gc.enable()


def without_gc(func: Callable[..., R]) -> Callable[..., R]:
    """``func`` run with the garbage collector paused (``paused_gc``)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        with paused_gc():
            return func(*args, **kwargs)

    return wrapper


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per transaction: waiting for a lock, one statement, and the session idling inside the transaction
    (a frozen or stopped client: PostgreSQL ends its session, which rolls back and frees every lock)."""

    lock_ms: int = 10_000
    statement_ms: int = 600_000
    idle_ms: int = 120_000


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply did. ``status``: applied, already_applied (no-op) or empty (nothing to do)."""

    status: str
    changeset_id: str
    target: str
    deployment_id: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    drift: tuple[FieldNote, ...] = ()
    crosswalk: dict[str, list[tuple[Key, Any]]] = field(default_factory=dict)
    fingerprint_before: str | None = None
    fingerprint_after: str | None = None
    matches_source: bool | None = None
    note: str | None = None  # e.g. a COMMIT whose outcome had to be checked (gardien.faults.commit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "changeset_id": self.changeset_id,
            "target": self.target,
            "deployment_id": self.deployment_id,
            "counts": self.counts,
            "drift": [d.to_dict() for d in self.drift],
            "crosswalk": {t: [[list(k), v] for k, v in rows] for t, rows in self.crosswalk.items()},
            "fingerprint_before": self.fingerprint_before,
            "fingerprint_after": self.fingerprint_after,
            "matches_source": self.matches_source,
            "note": self.note,
        }


def prepare(cur: Any, *, schema: str, target: str, timeouts: Timeouts) -> None:
    """Pin output settings and timeouts for this transaction and take the target's deployment lock.

    Raises DeploymentError naming the session holding the lock when it is not free within the lock timeout.
    """
    set_session(cur)
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{timeouts.lock_ms}ms",))
    cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{timeouts.statement_ms}ms",))
    cur.execute(
        "SELECT set_config('idle_in_transaction_session_timeout', %s, true)", (f"{timeouts.idle_ms}ms",)
    )
    # The default 4MB makes the joins of a few thousand keys against large tables spill to disk; JIT
    # compilation costs more than it saves on these statements of a few thousand rows each.
    cur.execute("SELECT set_config('work_mem', %s, true)", (WORK_MEM,))
    cur.execute("SELECT set_config('jit', 'off', true)")
    _compress_wal(cur)
    objid = zlib.crc32(schema.encode()) & 0x7FFFFFFF
    cur.execute("SAVEPOINT gardien_lock")
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, objid))
    except psycopg2.errors.LockNotAvailable:
        cur.execute("ROLLBACK TO SAVEPOINT gardien_lock")
        cur.execute(
            "SELECT a.pid, a.application_name, a.client_addr::text, a.xact_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s::oid AND l.objid = %s::oid "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (_LOCK_CLASS, objid),
        )
        row = cur.fetchone()
        holder = (
            f"held by pid {row[0]} ({row[1] or 'unnamed'} from {row[2] or 'local socket'}, since {row[3]})"
            if row
            else "held by another session"
        )
        raise DeploymentError(
            f"target {target} is locked by another deployment or rollback ({holder}); waited "
            f"{timeouts.lock_ms} ms. Retry when it has finished."
        ) from None
    cur.execute("RELEASE SAVEPOINT gardien_lock")


def _compress_wal(cur: Any) -> None:
    """Compress this transaction's full-page images and large journal values with lz4 when allowed.

    A deployment rewrites rows all over its tables: after a checkpoint, the first change to each page logs
    the whole page (~80 MB of WAL for 16k changes spread over a 1M-row table). ``wal_compression`` needs
    superuser or ``GRANT SET ON PARAMETER wal_compression`` (PostgreSQL 15); without it, or on a server
    built without lz4, the settings stay as they are and nothing else changes.
    """
    for name in ("wal_compression", "default_toast_compression"):
        cur.execute("SAVEPOINT gardien_setting")
        try:
            cur.execute("SELECT set_config(%s, 'lz4', true)", (name,))
        except psycopg2.Error:
            cur.execute("ROLLBACK TO SAVEPOINT gardien_setting")
        cur.execute("RELEASE SAVEPOINT gardien_setting")


def read_touched(
    cur: Any, *, catalog: Catalog, keymap: KeyMap, keys: dict[str, list[Key]], lock: bool = False
) -> dict[str, dict[Key, tuple[Any, dict[str, Any], dict[str, str | None] | None]]]:
    """The rows with these natural keys as they physically are now: key → (id, value columns, whole row).

    With ``lock``, the rows are locked until the transaction ends (FOR UPDATE) and read whole (every
    column as text, gardien.touched.Whole); else the whole row is None.
    """
    for name, table_keys in keys.items():
        keymap.add(catalog.table(name), table_keys)
    keymap.resolve()
    out: dict[str, dict[Key, tuple[Any, dict[str, Any], dict[str, str | None] | None]]] = {}
    for name in keys:
        table = catalog.table(name)
        whole = Whole(cur, table) if lock else None
        rows = read_resolved(cur, catalog=catalog, table=table, keys=keymap.temp(table), whole=whole)
        out[name] = {k: (i, v, w) for k, i, v, w in rows}
    return out


@without_gc
def apply_changeset(
    conn: Any,
    changeset: Changeset,
    *,
    catalog_config: CatalogConfig,
    target: str,
    applied_at: datetime,
    deployment_id: str | None = None,
    release_id: str | None = None,
    release_label: str | None = None,
    timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen value
    dsn: str | None = None,
    requested_by: str | None = None,
) -> ApplyResult:
    """Apply ``changeset`` in the caller's transaction (the caller commits, or rolls back on error).

    With ``dsn`` (the database ``conn`` is connected to), the full-scope fingerprints are computed on two
    other connections sharing this transaction's snapshot, concurrently with the rest of the apply;
    without it, on ``conn`` itself (same result, one after the other).

    Raises ChangesetError (other catalog), ConflictError (three-way check; nothing written),
    SourceDataError (dangling references) or DeploymentError (target lock, fingerprint reader); a failure
    of the database itself (timeout, refusal, connection lost) is raised as psycopg2 raised it, for the
    caller to roll back: ``deploy`` turns it into a DeploymentError that names it (gardien.faults).
    """
    changeset_id = changeset.id  # a hash of the whole body: computed once (it costs ~0.2 s at 16k changes)
    with conn.cursor() as cur:
        prepare(cur, schema=catalog_config.schema_, target=target, timeouts=timeouts)
        catalog = bind_catalog(conn, catalog_config, label=target)
        if catalog.fingerprint != changeset.catalog_fingerprint:
            raise ChangesetError(
                f"changeset {changeset_id[:12]} was made for another catalog (catalog {changeset.catalog_fingerprint[:12]}; "
                f"{target} has {catalog.fingerprint[:12]}): the catalog definition or column types differ. "
                "Capture a new changeset with the current configuration."
            )
        check_shape(changeset, catalog, target=target)
        journal.ensure_schema(cur)
        set_requester(cur, catalog=catalog, changeset=changeset, requested_by=requested_by)  # on_insert
        previous = journal.active_for_changeset(cur, changeset_id)
        if previous is not None:
            return ApplyResult(
                status="already_applied",
                changeset_id=changeset_id,
                target=target,
                deployment_id=previous.deployment_id,
            )
        if changeset.is_empty:
            return ApplyResult(status="empty", changeset_id=changeset_id, target=target)
        phase = Phases(f"apply {changeset_id[:12]} to {target}")
        keymap = KeyMap(cur, catalog)
        # Locked from here to COMMIT: what the three-way check compares is what the writes replace.
        current = read_touched(
            cur, catalog=catalog, keymap=keymap, keys={t.table: t.keys() for t in changeset.tables}, lock=True
        )
        phase("read and lock touched rows")
        scan = None
        if dsn is not None:
            scan = _start_scan(
                cur, catalog, [t.table for t in changeset.tables if t.count], dsn=dsn, timeouts=timeouts
            )
        try:
            return _apply(
                cur,
                changeset,
                changeset_id=changeset_id,
                catalog=catalog,
                target=target,
                applied_at=applied_at,
                deployment_id=deployment_id,
                release_id=release_id,
                release_label=release_label,
                scan=scan,
                keymap=keymap,
                current=current,
                phase=phase,
            )
        finally:
            if scan is not None:
                scan.close()


def _start_scan(
    cur: Any, catalog: Catalog, tables: list[str], *, dsn: str, timeouts: Timeouts
) -> SnapshotFingerprints | None:
    """Full-scope fingerprints computed on other connections sharing this transaction's snapshot.

    Exported after the touched rows are locked and before any write: the readers see the scope exactly as
    this apply found it, the rows it replaces included (a concurrent edit committed before the lock is in
    both the snapshot and the before-images).
    """
    cur.execute("SELECT pg_export_snapshot()")
    return SnapshotFingerprints.start(
        lambda: pg.connect(dsn, application_name="gardien apply (fingerprint)"),
        cur.fetchone()[0],
        catalog,
        tables,
        settings={
            "lock_timeout": f"{timeouts.lock_ms}ms",
            "statement_timeout": f"{timeouts.statement_ms}ms",
            "idle_in_transaction_session_timeout": f"{timeouts.idle_ms}ms",
            # The readers already run beside the apply: parallel workers would only add processes
            # competing with it for the same cores.
            "max_parallel_workers_per_gather": "0",
            "jit": "off",
        },
    )


def _apply(
    cur: Any,
    changeset: Changeset,
    *,
    changeset_id: str,
    catalog: Catalog,
    target: str,
    applied_at: datetime,
    deployment_id: str | None,
    release_id: str | None,
    release_label: str | None,
    scan: SnapshotFingerprints | None,
    keymap: KeyMap,
    current: dict[str, dict[Key, tuple[Any, dict[str, Any], dict[str, str | None] | None]]],
    phase: Phases,
) -> ApplyResult:
    plans, drift = three_way(
        catalog, changeset, {t: {k: v for k, (_, v, _) in rows.items()} for t, rows in current.items()}
    )
    phase("three-way check")
    check_references(cur, catalog=catalog, changeset=changeset, keymap=keymap)
    phase("references")
    touched = [name for name, plan in plans.items() if plan.count]
    if scan is None:
        before, local_before = scope_fingerprints(cur, catalog, touched)
    ids_before = {name: [r[0] for r in current.get(name, {}).values()] for name in touched}
    touched_before, local_touched_before = touched_fingerprints(cur, catalog=catalog, ids=ids_before)
    phase("fingerprints of touched rows before")
    writes = {
        name: TableWrites(
            table=name,
            inserts=[(i.key, i.values) for i in plan.inserts],
            updates=plan.updates,
            deletes=plan.deletes,
        )
        for name, plan in plans.items()
        if plan.count
    }
    execute(cur, catalog=catalog, writes=writes, keymap=keymap)
    phase("writes")
    # The full fingerprints after = before + (touched rows after - touched rows before); the touched
    # rows now include the ones just inserted. Only the touched rows are read again.
    ids_after = {}
    for name in touched:
        resolved = keymap.ids(catalog.table(name))
        ids_after[name] = ids_before[name] + [resolved[k] for k in writes[name].keys() if k in resolved]
    touched_after, local_touched_after = touched_fingerprints(cur, catalog=catalog, ids=ids_after)
    phase("fingerprints of touched rows after")
    if scan is not None:
        try:
            portable, local = scan.result()
        except psycopg2.Error as exc:
            raise DeploymentError(
                f"apply on {target}: the second connection reading the full-scope fingerprints (application "
                f"'gardien apply (fingerprint)') failed ({faults.cause(exc)}); the apply's transaction was rolled "
                "back, nothing was applied. Retry."
            ) from None
        before, local_before = portable.restricted(touched), local.restricted(touched)
        phase("waiting for the full-scope fingerprints")
    after = before.shifted(touched_after, touched_before)
    local_after = local_before.shifted(local_touched_after, local_touched_before)
    images: dict[str, list[BeforeImage]] = {}
    crosswalk: dict[str, list[tuple[Key, Any]]] = {}
    for name, tw in writes.items():
        table = catalog.table(name)
        ids = keymap.ids(table)
        rows = current.get(name, {})
        # The whole rows as the writes left them: what a rollback compares with the target then.
        after_rows = Whole(cur, table).read(cur, ids_after[name], lock=False)
        # By canonical text, as key_text sorts (each key's text was rendered once, by the key map).
        keys = sorted(tw.keys(), key=keymap.texts.text)
        images[name] = [
            BeforeImage(
                k,
                None if row is None else row[0],
                None,  # journaled as the whole row only (gardien.journal.FORMAT)
                None if row is None else row[2],
                None if (i := ids.get(k)) is None else after_rows.get(str(i)),
            )
            for k in keys
            for row in (rows.get(k),)
        ]
        crosswalk[name] = [(k, ids.get(k)) for k in keys]
    counts = {
        n: {"inserts": len(p.inserts), "updates": len(p.updates), "deletes": len(p.deletes)}
        for n, p in plans.items()
        if p.count
    }
    phase("before-images")
    dep_id = (
        deployment_id
        or "dep-"
        + hashlib.sha256(f"{changeset_id}|{target}|{applied_at.isoformat()}".encode()).hexdigest()[:16]
    )
    journal.record(
        cur,
        deployment_id=dep_id,
        changeset_id=changeset_id,
        catalog_fingerprint=catalog.fingerprint,
        applied_at=applied_at,
        before_images=images,
        crosswalk=crosswalk,
        fingerprint_before=_with_local(before, local_before),
        fingerprint_after=_with_local(after, local_after),
        drift=[d.to_dict() for d in drift],
        counts=counts,
        release_id=release_id,
        release_label=release_label,
    )
    phase("journal")
    return ApplyResult(
        status="applied",
        changeset_id=changeset_id,
        target=target,
        deployment_id=dep_id,
        counts=counts,
        drift=tuple(drift),
        crosswalk=crosswalk,
        fingerprint_before=before.digest,
        fingerprint_after=after.digest,
        matches_source=after == changeset.source_fingerprint.restricted(touched),
    )


def _with_local(portable: ScopeFingerprint, local: ScopeFingerprint) -> dict[str, Any]:
    """A journaled fingerprint: the portable one (what drift, release and reports read) and, under
    ``local``, the local one the rollback proof compares (gardien.fingerprint, LOCAL fingerprint), each
    with the scheme that computed it (a later Gardien may compute them differently)."""
    return {
        **portable.to_dict(),
        "scheme": ROWHASH_SCHEME,
        "local": {**local.to_dict(), "scheme": LOCAL_SCHEME},
    }


def deploy(dsn: str, changeset: Changeset, **kwargs: Any) -> ApplyResult:
    """Connect to ``dsn``, apply in one transaction and commit; roll back on any error.

    Every database failure becomes a DeploymentError naming its cause and saying whether anything was
    applied (gardien.faults); a connection lost during COMMIT is settled by reading the target's journal.
    """
    return faults.run(
        dsn,
        application="gardien apply",
        target=kwargs.get("target", "target"),
        what="apply",
        error=DeploymentError,
        unchanged="nothing was applied",
        work=lambda conn: apply_changeset(conn, changeset, dsn=dsn, **kwargs),
        changed=lambda result: result.status == "applied",
        committed=lambda cur, result: journal.find(cur, result.deployment_id) is not None,
    )

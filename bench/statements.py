"""One apply of the bench changeset with every statement of every connection timed on the client.

    python bench/statements.py [--rows 1000000] [--top 30] [--prefix P --keep]

Builds the demo hospital (or reuses it with ``--keep`` and the same ``--prefix``), captures the changeset,
applies it once to a fresh copy of prod after a ``CHECKPOINT`` (as bench/ab.py does) and prints the phases
the engine logs (``gardien.timing``) and the slowest statements: seconds, connection (application name),
the statement's start. Statements of the full-scope fingerprint reader run beside the apply's own.
For attributing a phase to its statements before changing them (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402
from run import build, changes_for, fresh_copy, say  # noqa: E402

from gardien import pg  # noqa: E402
from gardien.config import load_config  # noqa: E402
from gardien.demo.generator import drop_environments  # noqa: E402
from gardien.diff import diff  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
timed: list[tuple[float, str, str]] = []  # seconds, application name, statement


class Timed(psycopg2.extensions.cursor):
    """A cursor that records how long each execute and COPY took, seen from the client."""

    def _record(self, started: float, query: Any) -> None:
        text = query if isinstance(query, str) else query.as_string(self)
        app = self.connection.info.parameter_status("application_name") or ""
        timed.append((time.perf_counter() - started, app, " ".join(text.split())))

    def execute(self, query: Any, params: Any = None) -> None:
        started = time.perf_counter()
        try:
            super().execute(query, params)
        finally:
            self._record(started, query)

    def copy_expert(self, query: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            super().copy_expert(query, file, *args, **kwargs)
        finally:
            self._record(started, query)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--config", default=str(ROOT / "include" / "config" / "gardien.yaml"))
    parser.add_argument("--prefix", default=f"gardien_st_{os.getpid()}_")
    parser.add_argument("--keep", action="store_true", help="keep the demo databases for a later run")
    args = parser.parse_args()
    admin = pg.admin_dsn()
    catalog = load_config(args.config).catalog
    copy = f"{args.prefix}apply"
    try:
        dsns = build(admin, prefix=args.prefix, rows=args.rows, changes=changes_for(args.rows))
        changeset = diff(dsns["qualif"], dsns["prod"], catalog_config=catalog)
        target = fresh_copy(admin, f"{args.prefix}prod", copy)
        measure.checkpoint(admin)
        plain = psycopg2.connect
        pg.psycopg2.connect = lambda dsn, **kw: plain(dsn, cursor_factory=Timed, **kw)  # type: ignore[attr-defined]
        timing = logging.getLogger("gardien.timing")
        timing.setLevel(logging.DEBUG)
        timing.addHandler(logging.StreamHandler(sys.stdout))
        timing.propagate = False
        from gardien.apply import deploy

        started = time.perf_counter()
        deploy(target, changeset, catalog_config=catalog, target="bench", applied_at=datetime.now(UTC))
        print(f"apply {time.perf_counter() - started:.3f} s, load average {os.getloadavg()[0]:.1f}")
        pg.psycopg2.connect = plain  # type: ignore[attr-defined]
        for seconds, app, text in sorted(timed, reverse=True)[: args.top]:
            print(f"{seconds:7.3f}  {app[:28]:28}  {text[:160]}")
    finally:
        say("dropping the copy" + ("" if args.keep else " and the demo databases"))
        pg.drop_database(admin, copy)
        if not args.keep:
            drop_environments(admin, prefix=args.prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())

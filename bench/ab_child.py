"""One apply then rollback, timed, with whichever ``gardien`` PYTHONPATH gives (for bench/ab.py).

Besides wall time, it counts CPU seconds: this process's (every thread) plus those of the server
processes serving its connections (read from /proc when each connection closes; same machine only).
On a loaded machine wall time mostly measures the queue for the CPUs; CPU seconds measure the work.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from datetime import datetime, timedelta

import psycopg2
import psycopg2.extensions

TICK = os.sysconf("SC_CLK_TCK")
server_cpu = [0.0]


def _cpu_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    except OSError:
        return 0.0


class Counted(psycopg2.extensions.connection):
    """A connection that adds its server process's CPU time to ``server_cpu`` when it closes."""

    def close(self) -> None:
        if not self.closed:
            server_cpu[0] += _cpu_of(self.get_backend_pid())
        super().close()


def main() -> int:
    config, target, path, when = sys.argv[1:5]
    from gardien import pg

    plain = psycopg2.connect

    def connect(dsn: str, **kwargs):  # pg.connect calls psycopg2.connect: give it the counting class
        return plain(dsn, connection_factory=Counted, **kwargs)

    pg.psycopg2.connect = connect  # type: ignore[attr-defined]
    from gardien.apply import deploy
    from gardien.changeset import Changeset
    from gardien.config import load_config
    from gardien.rollback import rollback

    catalog = load_config(config).catalog
    phases = io.StringIO()  # gardien.timing's DEBUG lines (apply.Phases): where each run's time goes
    handler = logging.StreamHandler(phases)
    timing = logging.getLogger("gardien.timing")
    timing.setLevel(logging.DEBUG)
    timing.addHandler(handler)
    changeset = Changeset.from_json(open(path, encoding="utf-8").read())
    at = datetime.fromisoformat(when)
    out = {}
    for what in ("apply", "rollback"):
        server_cpu[0] = 0.0
        cpu, started = time.process_time(), time.perf_counter()
        if what == "apply":
            applied = deploy(target, changeset, catalog_config=catalog, target="bench", applied_at=at)
            assert applied.status == "applied", applied.status
        else:
            undone = rollback(
                target,
                applied.deployment_id,
                catalog_config=catalog,
                target="bench",
                rolled_back_at=at + timedelta(seconds=1),
            )
        out[f"{what}_s"] = time.perf_counter() - started
        out[f"{what}_cpu_s"] = time.process_time() - cpu + server_cpu[0]
    import gardien

    json.dump(
        {
            **out,
            "proven": undone.proven,
            "package": gardien.__file__,
            "phases": phases.getvalue().splitlines(),
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

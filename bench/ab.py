"""Apply and rollback of the same changeset by two builds of Gardien, interleaved in one run (A/B).

    python bench/ab.py --baseline-src PATH/TO/OTHER/include [--rows 1000000] [--repeat 3] [--prefix P --keep]

Builds the demo hospital once (prefix ``gardien_ab_``), captures the changeset with this build, then for
each repetition and each build: a fresh copy of prod, CHECKPOINT, apply then rollback in a fresh process
whose ``gardien`` package comes from that build's ``include`` directory (``bench/ab_child.py``). Both builds
meet the same machine noise; the ratio is the figure to read. Wall seconds and CPU seconds (client and
server processes of the run, bench/ab_child.py) are reported; on a loaded machine read the CPU ratio.
Prints JSON (medians and runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402
from run import build, fresh_copy, say  # noqa: E402

from gardien import pg  # noqa: E402
from gardien.config import load_config  # noqa: E402
from gardien.demo.generator import drop_environments  # noqa: E402
from gardien.diff import diff  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline-src", required=True, help="the other build's include/ directory")
    parser.add_argument(
        "--this-src",
        default=str(ROOT / "include"),
        help="this build's include/ directory (default: this checkout's)",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "include" / "config" / "gardien.yaml"))
    parser.add_argument(
        "--prefix",
        default=f"gardien_ab_{os.getpid()}_",
        help="database name prefix (default: unique to this run, so runs beside other jobs never share one)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo databases (a later run with the same --prefix reuses them)",
    )
    args = parser.parse_args()
    admin = pg.admin_dsn()
    catalog = load_config(args.config).catalog
    prefix = args.prefix
    copy = f"{prefix}apply"
    builds = {"baseline": str(Path(args.baseline_src).resolve()), "this": str(Path(args.this_src).resolve())}
    kinds = ("apply", "rollback", "apply_cpu", "rollback_cpu")
    runs: dict[str, dict[str, list[float]]] = {b: {k: [] for k in kinds} for b in builds}
    phases: dict[str, dict[str, list[float]]] = {b: {} for b in builds}  # wall s per logged phase
    try:
        dsns = build(admin, prefix=prefix, rows=args.rows, changes=measure_changes(args.rows))
        changeset = diff(dsns["qualif"], dsns["prod"], catalog_config=catalog)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cs.json"
            path.write_text(changeset.to_json(), encoding="utf-8")
            when = datetime(2026, 1, 1, tzinfo=UTC)
            for rep in range(args.repeat):
                for name, src in builds.items():
                    say(f"repetition {rep + 1}/{args.repeat}: {name}")
                    target = fresh_copy(admin, f"{prefix}prod", copy)
                    measure.checkpoint(admin)
                    when += timedelta(minutes=1)
                    out = subprocess.run(
                        [
                            sys.executable,
                            str(ROOT / "bench" / "ab_child.py"),
                            args.config,
                            target,
                            str(path),
                            when.isoformat(),
                        ],
                        env={**os.environ, "PYTHONPATH": src},
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    result = json.loads(out.stdout)
                    assert result["package"].startswith(src), (result["package"], src)
                    for kind in kinds:
                        runs[name][kind].append(result[f"{kind}_s"])
                    for line in result.get("phases", []):
                        if (phase := _phase(line)) is not None:
                            phases[name].setdefault(phase[0], []).append(phase[1])
                    if not result["proven"]:
                        raise RuntimeError(f"{name}: rollback not proven")
    finally:
        pg.drop_database(admin, copy)
        if not args.keep:
            drop_environments(admin, prefix=prefix)
    figures = {b: {k: measure.summary(v) for k, v in r.items()} for b, r in runs.items()}
    ratio = {
        k: round(figures["this"][k]["median"] / figures["baseline"][k]["median"], 3)
        for k in ("apply", "rollback")
    }
    print(
        json.dumps(
            {
                "rows": args.rows,
                "load_average": os.getloadavg(),
                "figures": figures,
                "this_over_baseline": ratio,
                "phases_wall_median_s": {
                    b: {p: round(statistics.median(v), 3) for p, v in ph.items()} for b, ph in phases.items()
                },
                "at": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            indent=2,
        )
    )
    return 0


def _phase(line: str) -> tuple[str, float] | None:
    """("apply: writes", 0.62) from a gardien.timing line ("apply 1a2b… to bench: writes 0.620 s")."""
    match = re.match(r"(apply|rollback) .*?: (.+) ([0-9.]+) s$", line)
    return (f"{match[1]}: {match[2]}", float(match[3])) if match else None


def measure_changes(rows: int) -> tuple[int, int, int]:
    from run import changes_for

    return changes_for(rows)


if __name__ == "__main__":
    sys.exit(main())

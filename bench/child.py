"""One diff in a fresh process: prints its wall time, peak RSS and change counts as JSON (for bench/run.py)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def _peak_rss_mb() -> float:
    """VmHWM from /proc (Linux); ru_maxrss (KiB on Linux) elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args()
    from gardien.config import load_config
    from gardien.diff import diff

    catalog = load_config(args.config).catalog
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    changeset = diff(args.source, args.target, catalog_config=catalog)
    seconds = time.perf_counter() - started
    counts = {
        t.table: {"inserts": len(t.inserts), "updates": len(t.updates), "deletes": len(t.deletes)}
        for t in changeset.tables
    }
    json.dump(
        {
            "seconds": seconds,
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "rss_after_imports_mb": round(rss_before, 1),
            "counts": counts,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

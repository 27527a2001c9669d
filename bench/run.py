"""`make bench`: diff, apply, rollback and validation of the demo hospital at scale, beside the COPY floor and reladiff."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402  (bench/ is a folder of scripts, not a package)

from gardien import pg  # noqa: E402
from gardien.config import load_config  # noqa: E402
from gardien.demo.generator import build_environments, drop_environments  # noqa: E402
from gardien.diff import diff  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {
    "diff_over_floor": 2.5,
    "reladiff_over_diff": 5.0,
    "apply_s": 1.5,
    "rollback_s": 1.5,
    "diff_rss_mb": 300,
}
SMALL_CHANGES = (60, 30, 10)  # the 100-change case


def say(line: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def changes_for(rows: int) -> tuple[int, int, int]:
    """~1.6% of the lines: 10,000 updates, 5,000 inserts and 1,000 deletes per million."""
    return max(1, rows // 100), max(1, rows // 200), max(1, rows // 1000)


def machine(admin: str) -> dict[str, Any]:
    with pg.autocommit(admin) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
        cur.execute("SELECT current_setting('shared_buffers'), current_setting('work_mem')")
        shared_buffers, work_mem = cur.fetchone()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "ram_gib": round(ram, 1),
        "python": platform.python_version(),
        "postgresql": version,
        "shared_buffers": shared_buffers,
        "work_mem": work_mem,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def build(admin: str, *, prefix: str, rows: int, changes: tuple[int, int, int]) -> dict[str, str]:
    started = time.perf_counter()
    built = build_environments(
        admin, prefix=prefix, scale=max(1, rows // 500), bench_changes=changes, progress=say
    )
    say(f"{prefix}*: ready in {time.perf_counter() - started:.1f} s")
    return {e.environment: e.dsn for e in built.environments}


def fresh_copy(admin: str, template: str, name: str) -> str:
    """A copy of ``template`` to apply to and roll back (the demo environments stay reusable)."""
    from psycopg2 import sql

    with pg.autocommit(admin) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cur.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
    return pg.dsn_for_database(admin, name)


def validation(admin: str, target: str, changeset: Any, config: Any, now: datetime) -> dict[str, Any]:
    """One rehearsal as the release gate runs it: copy the target, apply there, run the suites."""
    from gardien.validation import parse_validation_settings, rehearse
    from gardien.validation.bridge import engine_apply, summary_from_changeset

    settings = parse_validation_settings(config.validation, base_dir=Path(config.source_path).parent)
    started = time.perf_counter()
    result = rehearse(
        target,
        admin_dsn=admin,
        catalog=config.catalog,
        apply_fn=engine_apply(changeset, catalog=config.catalog, applied_at=now),
        label="bench",
        now=now,
        settings=settings,
        summary=summary_from_changeset(changeset, catalog=config.catalog),
        target_name="bench",
    )
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "phases": result.seconds,
        "ok": result.report.ok,
        "expectations": len(result.report.expectations),
        "failed": [e.name for e in result.report.expectations if not e.passed][:10],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="protocol lines (the largest table)")
    parser.add_argument("--quick", action="store_true", help="smoke run at ~50k rows")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (median and min)")
    parser.add_argument("--skip-reladiff", action="store_true")
    parser.add_argument("--skip-validation", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    parser.add_argument("--config", default=str(ROOT / "include" / "config" / "gardien.yaml"))
    parser.add_argument("--json-out", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = parser.parse_args()
    rows = 50_000 if args.quick else args.rows
    admin = pg.admin_dsn()
    config = load_config(args.config)
    catalog = config.catalog
    base = "gardien_bench_quick" if args.quick else "gardien_bench"
    prefixes = {"main": f"{base}_", "quarter": f"{base}_quarter_", "small": f"{base}_small_"}
    copies = {"main": f"{base}_apply", "small": f"{base}_small_apply"}
    report: dict[str, Any] = {"machine": machine(admin), "rows": rows, "repeat": args.repeat}
    sets = {
        "main": build(admin, prefix=prefixes["main"], rows=rows, changes=changes_for(rows)),
        "quarter": build(admin, prefix=prefixes["quarter"], rows=rows // 4, changes=changes_for(rows // 4)),
        "small": build(admin, prefix=prefixes["small"], rows=rows, changes=SMALL_CHANGES),
    }
    pairs = {name: (dsns["qualif"], dsns["prod"]) for name, dsns in sets.items()}
    columns = measure.managed_columns(pairs["main"][0], catalog)
    changesets = {
        name: diff(*pairs[name], catalog_config=catalog) for name in ("main", "small")
    }  # also warms caches
    report["changes"] = {n: c.counts() for n, c in changesets.items()}
    reladiff = None
    if not args.skip_reladiff and (reladiff := measure.reladiff_install(say)):
        measure.reladiff_prepare(pairs["main"])
    report["reladiff_available"] = bool(reladiff) or ("skipped" if args.skip_reladiff else False)
    runs: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {"main": [], "quarter": []}
    reladiff_rows: list[int] = []
    proven: list[bool] = []
    checkpoints: list[bool] = []
    when = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        for rep in range(args.repeat):
            say(f"repetition {rep + 1}/{args.repeat}")
            runs.setdefault("floor", []).append(
                measure.floor(pairs["main"], catalog.schema_, columns, concurrent=False)
            )
            runs.setdefault("floor_concurrent", []).append(
                measure.floor(pairs["main"], catalog.schema_, columns, concurrent=True)
            )
            for name in ("main", "quarter"):
                child = measure.diff_in_child(Path(args.config), *pairs[name])
                runs.setdefault(f"diff_{name}", []).append(child["seconds"])
                rss[name].append(child["peak_rss_mb"])
            if reladiff:
                seconds, found = measure.reladiff_run(reladiff, pairs["main"])
                runs.setdefault("reladiff", []).append(seconds)
                reladiff_rows.append(found)
            for name in ("main", "small"):
                target = fresh_copy(admin, f"{prefixes[name]}prod", copies[name])
                checkpoints.append(measure.checkpoint(admin))
                when += timedelta(minutes=1)
                apply_s, rollback_s, ok = measure.apply_rollback(
                    target, changesets[name], catalog=catalog, at=when
                )
                runs.setdefault(f"apply_{name}", []).append(apply_s)
                runs.setdefault(f"rollback_{name}", []).append(rollback_s)
                proven.append(ok)
        if not args.skip_validation:
            say("validation (one rehearsal at benchmark scale)")
            target = fresh_copy(admin, f"{prefixes['main']}prod", copies["main"])
            report["validation"] = validation(
                admin, target, changesets["main"], config, when + timedelta(hours=1)
            )
    finally:
        if reladiff:
            measure.reladiff_cleanup(pairs["main"])
        for name in copies.values():
            pg.drop_database(admin, name)
        if not args.keep:
            for prefix in prefixes.values():
                drop_environments(admin, prefix=prefix)
    figures = {name: measure.summary(values) for name, values in runs.items()}
    figures["diff_peak_rss_mb"] = {name: max(values) for name, values in rss.items()}
    report["figures"] = figures
    report["rollback_proven"] = all(proven)
    report["checkpoint_before_each_apply"] = all(checkpoints)
    report["reladiff_differences_reported"] = reladiff_rows[:1]
    report["ratios"] = ratios(figures, rows)
    text = json.dumps(report, indent=2)
    print(text)
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    return 0


def ratios(f: dict[str, Any], rows: int) -> dict[str, Any]:
    """Each target beside its measured value (medians) and whether it is met."""
    diff_s = f["diff_main"]["median"]
    out: dict[str, Any] = {
        "diff_over_floor": round(diff_s / f["floor"]["median"], 2),
        "diff_over_floor_concurrent": round(diff_s / f["floor_concurrent"]["median"], 2),
        "apply_main_s": f["apply_main"]["median"],
        "rollback_main_s": f["rollback_main"]["median"],
        "diff_peak_rss_mb": f["diff_peak_rss_mb"]["main"],
        "rss_growth_for_4x_rows": round(f["diff_peak_rss_mb"]["main"] / f["diff_peak_rss_mb"]["quarter"], 2),
    }
    if "reladiff" in f:
        out["reladiff_over_diff"] = round(f["reladiff"]["median"] / diff_s, 2)
    met = {
        "diff_over_floor": out["diff_over_floor"] <= TARGETS["diff_over_floor"],
        "apply": out["apply_main_s"] <= TARGETS["apply_s"],
        "rollback": out["rollback_main_s"] <= TARGETS["rollback_s"],
        "diff_rss": out["diff_peak_rss_mb"] <= TARGETS["diff_rss_mb"],
        "rss_sublinear": out["rss_growth_for_4x_rows"] < 4,
    }
    if "reladiff_over_diff" in out:
        met["reladiff_over_diff"] = out["reladiff_over_diff"] >= TARGETS["reladiff_over_diff"]
    out["targets"] = TARGETS
    out["met"] = met
    return out


if __name__ == "__main__":
    sys.exit(main())

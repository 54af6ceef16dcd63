"""`runs import` of a large seed database: points/s and peak memory, beside a raw sqlite3 read.

    python bench/seed_import.py            # 2 runs x 500,000 points (about the 73 MB file of issue 23)
    python bench/seed_import.py --quick    # 2 runs x 50,000 points
    python bench/seed_import.py --runs 1 --points 1000000

Builds a database with the seed notebook's schema in a temporary folder
(tests/seed_fixtures.write_many_points: per step four metrics with their epoch, at each
epoch's end an epoch-only val/loss and learning_rate). Then, each in its own child process (peak RSS: os.wait4's ru_maxrss of that child):
the raw read (sqlite3, fetchmany over the same rows) and the import (ExperimentDB.import_db
into a fresh workspace). Goal (issue 23 item 12): >= 50,000 points/s and <= ~200 MB peak for 1M points.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from tests.seed_fixtures import write_many_points  # noqa: E402

RAW = """
import json, sqlite3, sys, time
con = sqlite3.connect(sys.argv[1])
t0 = time.perf_counter(); n = 0
for (run_id,) in con.execute("SELECT run_id FROM runs ORDER BY rowid").fetchall():
    cur = con.execute("SELECT metric_name, value, step, epoch, timestamp FROM metrics WHERE run_id IN (?, ?, ?) "
                      "ORDER BY rowid", (run_id, float(run_id), str(run_id)))
    while rows := cur.fetchmany(20000):
        n += len(rows)
print(json.dumps({"points": n, "seconds": time.perf_counter() - t0}))
"""

IMPORT = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from utils.training.tracking.experiment_db import ExperimentDB
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with ExperimentDB(sys.argv[2]) as db:
    t0 = time.perf_counter()
    report = db.import_db(sys.argv[1])
    seconds = time.perf_counter() - t0
print(json.dumps({"points": report.rows_read, "stored": report.metrics, "seconds": seconds, "base_kb": base,
                  "runs": len(report.imported), "bad": len(report.bad_rows) + len(report.dropped)}))
"""


def child(code: str, *args: str) -> tuple[dict, float]:
    """Run `code` in a fresh interpreter -> (its JSON line, its peak RSS in MB)."""
    p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"child failed (exit {p.returncode})")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 runs x 50,000 points")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--points", type=int, default=None, help="metric rows per run (default 500,000)")
    args = ap.parse_args(argv)
    points = args.points or (50_000 if args.quick else 500_000)
    with tempfile.TemporaryDirectory(prefix="bench_seed_import_") as tmp:
        seed = Path(tmp) / "seed_experiments.db"
        t0 = time.perf_counter()
        write_many_points(seed, args.runs, points)
        size = seed.stat().st_size / 1e6
        print(f"seed database: {args.runs} runs x {points:,} points, {size:.1f} MB (built in "
              f"{time.perf_counter() - t0:.1f} s)")
        raw, raw_mb = child(RAW, str(seed))
        imp, imp_mb = child(IMPORT, str(seed), str(Path(tmp) / "ws" / "experiments.db"), str(ROOT))
        raw_rate, imp_rate = raw["points"] / raw["seconds"], imp["points"] / imp["seconds"]
        print(f"{'':18}{'points':>10}{'seconds':>10}{'points/s':>12}{'peak RSS MB':>13}")
        print(f"{'raw sqlite3 read':18}{raw['points']:>10,}{raw['seconds']:>10.2f}{raw_rate:>12,.0f}{raw_mb:>13.0f}")
        print(f"{'runs import':18}{imp['points']:>10,}{imp['seconds']:>10.2f}{imp_rate:>12,.0f}{imp_mb:>13.0f}")
        print(f"ratio import/raw: {imp_rate / raw_rate:.3f} x the points/s, {imp_mb / raw_mb:.1f} x the peak RSS "
              f"(import child after its imports, before reading: {imp['base_kb'] / 1024:.0f} MB)")
        print(f"stored {imp['stored']:,} points of {imp['runs']} runs ({imp['bad']} rows skipped or dropped); "
              f"goal: >= 50,000 points/s, <= ~200 MB peak for 1M points")
    return 0


if __name__ == "__main__":
    sys.exit(main())

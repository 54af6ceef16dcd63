"""Trials per minute of one study on PostgreSQL with 1 worker vs N workers.

    PYTHONPATH=. python bench/hpo_workers.py [--quick] [--workers 3] [--storage postgresql://...]

Each worker is its own `python -m utils.training hpo` process on one PostgreSQL URL,
exactly as on N machines (here they share this machine's cores). Without --storage a
throwaway server is started from Debian's binaries (tests/postgres_server.py) and
stopped at the end. Real trials: the smoke preset on the built-in corpus.

Two rates per setting, from the same run: the study's own clock (first trial start to
last trial end, from Optuna's timestamps: the search itself) and the wall clock of the
commands (with process start-up and imports). The ratio N-worker / 1-worker is the
speed-up; on a machine with fewer cores than workers it says how much the cores limit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def run_setting(url: str, workspace: Path, study: str, workers: int, n_trials: int, steps: int) -> dict:
    import optuna

    from utils.training.hpo.storage import open_storage

    cmd = [sys.executable, "-m", "utils.training", "hpo", "--workspace", str(workspace), "--study-name", study,
           "--storage", url, "--n-trials", str(n_trials), "--preset", "smoke", "--param",
           "learning_rate=1e-3:1e-2:log", "--param", "weight_decay=0.0:0.2", "--set", f"max_steps={steps}",
           "--set", "checkpoint_interval=1000", "--pruner", "none", "--no-results"]
    # Each worker gets its share of the cores, as --workers does on one machine.
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": threads}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(workers)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise SystemExit("a worker failed:\n" + "\n---\n".join(o[-2000:] for o in outs))
    trials = optuna.load_study(study_name=study, storage=open_storage(url)).get_trials()
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    span = (end - start).total_seconds()
    return {"workers": workers, "trials": len(trials), "study_s": span, "wall_s": wall,
            "per_min_study": 60 * len(trials) / span, "per_min_wall": 60 * len(trials) / wall,
            "threads": threads, "pids": len({t.user_attrs["worker_pid"] for t in trials})}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 trials of 10 steps per setting")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--trials", type=int, default=9)
    p.add_argument("--steps", type=int, default=30, help="training steps per trial (smoke preset)")
    p.add_argument("--storage", help="a PostgreSQL URL (default: a throwaway server)")
    p.add_argument("--workspace", type=Path, default=ROOT / "workspace" / "bench-hpo-workers")
    a = p.parse_args()
    if a.quick:
        a.trials, a.steps = 3, 10
    server = None
    if a.storage is None:
        from postgres_server import PostgresServer, unavailable_reason

        reason = unavailable_reason()
        if reason:
            print(f"skipped: {reason}")
            return 0
        server = PostgresServer().start()
    try:
        tag = time.strftime("%H%M%S")
        # Tokenize the corpus once, outside the measured runs.
        url0 = server.create_database("warm") if server else a.storage
        run_setting(url0, a.workspace, f"warm{tag}", 1, 1, 2)
        rows = []
        for workers in (1, a.workers):
            url = server.create_database(f"w{workers}") if server else a.storage
            rows.append(run_setting(url, a.workspace, f"w{workers}-{tag}", workers, a.trials, a.steps))
    finally:
        if server is not None:
            server.stop()
    print(f"{a.trials} trials of {a.steps} smoke steps per setting, PostgreSQL, {os.cpu_count()} CPU cores, no GPU")
    print(f"{'workers':>7} {'threads':>7} {'trials':>6} {'study s':>8} {'trials/min':>10} {'wall s':>7} "
          f"{'trials/min (wall)':>17}")
    for r in rows:
        print(f"{r['workers']:>7} {r['threads']:>7} {r['trials']:>6} {r['study_s']:>8.1f} {r['per_min_study']:>10.2f} "
              f"{r['wall_s']:>7.1f} {r['per_min_wall']:>17.2f}")
    one, many = rows
    print(f"ratio {many['workers']} workers / 1 worker: {many['per_min_study'] / one['per_min_study']:.2f}x "
          f"(study clock), {many['per_min_wall'] / one['per_min_wall']:.2f}x (wall clock)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

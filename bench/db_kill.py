"""SIGKILL a writer of the experiments database N times; count committed rows lost.

    python bench/db_kill.py            # 20 kills
    python bench/db_kill.py --quick    # 5 kills

The writer logs 5 metrics a step and prints, after each flush returns (= committed),
how many points it has committed. After each kill the database must hold at least
that many points of the run, and pass PRAGMA integrity_check.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from utils.training.tracking.experiment_db import ExperimentDB  # noqa: E402

WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from utils.training.tracking.experiment_db import ExperimentDB
    db = ExperimentDB(sys.argv[1], flush_rows=10**9, flush_s=1e9)  # flushes only when told
    run_id = db.log_run(sys.argv[2], {})
    print("READY", flush=True)
    step = committed = 0
    while True:
        for _ in range(20):
            step += 1
            db.log_metrics(run_id, {"train_loss": 1.0 / step, "lr": 1e-3, "grad_norm": 1.0,
                                    "step_time_ms": 5.0, "tokens_per_sec": 1e4}, step)
        db.flush()
        committed += 100
        print(committed, flush=True)
""")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="5 kills")
    a = p.parse_args(argv)
    kills = 5 if a.quick else a.kills
    rng = random.Random(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dbkill-"))
    path = tmp / "experiments.db"
    ExperimentDB(path).close()
    lost_total, acked_total = 0, 0
    try:
        for i in range(kills):
            proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"kill-{i}", str(ROOT)],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout.readline().strip() == "READY"
            deadline = time.monotonic() + rng.uniform(0.2, 1.5)  # s of writing before the kill
            acked = 0
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                acked = int(line)
            proc.send_signal(signal.SIGKILL)
            rest, _ = proc.communicate()
            for line in rest.split():  # commits acknowledged before the kill landed
                acked = int(line)
            with ExperimentDB(path) as db:
                found = db.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?",
                                        (db.find_run(f"kill-{i}"),)).fetchone()[0]
                ok = db.integrity_check()
            lost = max(0, acked - found)
            lost_total, acked_total = lost_total + lost, acked_total + acked
            print(f"kill {i + 1:2d}: committed {acked:6d} points, found {found:6d}, lost {lost}, integrity {ok}")
            if ok != "ok":
                print("integrity check FAILED")
                return 1
        print(f"{kills} SIGKILLs: {acked_total} committed points, {lost_total} lost, integrity ok")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if lost_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Metric ingest and read-back, side by side in one run; and what tracking costs a step.

    python bench/tracking.py            # 1M points per store (MLflow: 50k, it is slow)
    python bench/tracking.py --quick    # 200k points (MLflow 10k)

Stores: raw sqlite3 executemany (WAL, 1000 rows a commit: the floor), ExperimentDB,
MLflow's SQLite store (log_batch), W&B offline, TensorBoard. Optional ones are skipped
with a note when not installed (pip install -r requirements-bench.txt).
Goals (issue 5): ExperimentDB >= 300k points/s, reading a 1M-point run <= 0.2 s,
MetricsTracker + ExperimentDB <= 1% of a training step at default intervals.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository root first, and bench/ off the path: a script here must never shadow a package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from utils.training.tracking.db_sink import ExperimentDBSink  # noqa: E402
from utils.training.tracking.experiment_db import ExperimentDB  # noqa: E402

NAMES = [f"metric_{i}" for i in range(10)]  # 10 metrics a step, like a log dict


def bench_raw(tmp: Path, n_steps: int) -> float:
    conn = sqlite3.connect(str(tmp / "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE metrics (run_id INTEGER, name TEXT, step INTEGER, value REAL, wall_time REAL)")
    t0 = time.perf_counter()
    rows = []
    for step in range(n_steps):
        now = time.time()
        rows.extend((1, n, step, step * 0.5, now) for n in NAMES)
        if len(rows) >= 1000:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
            rows = []
    dt = time.perf_counter() - t0
    conn.close()
    return dt


def bench_db(tmp: Path, n_steps: int) -> tuple[float, ExperimentDB, int]:
    db = ExperimentDB(tmp / "experiments.db")
    run_id = db.log_run("bench", {})
    t0 = time.perf_counter()
    for step in range(n_steps):
        db.log_metrics(run_id, {n: step * 0.5 for n in NAMES}, step)
    db.flush()
    return time.perf_counter() - t0, db, run_id


def bench_read_raw(tmp: Path) -> float:
    conn = sqlite3.connect(str(tmp / "raw.db"))
    t0 = time.perf_counter()
    conn.execute("SELECT step, name, value, wall_time FROM metrics WHERE run_id = 1").fetchall()
    dt = time.perf_counter() - t0
    conn.close()
    return dt


def bench_mlflow(tmp: Path, n_steps: int) -> float | str:
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
    except ImportError:
        return "not installed (pip install mlflow-skinny sqlalchemy alembic)"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("bench")).info.run_id
    t0 = time.perf_counter()
    batch = []
    for step in range(n_steps):
        ts = int(time.time() * 1000)
        batch.extend(Metric(n, step * 0.5, ts, step) for n in NAMES)
        if len(batch) >= 1000:  # MLflow's limit for one log_batch
            client.log_batch(run_id, metrics=batch)
            batch = []
    return time.perf_counter() - t0


def bench_wandb(tmp: Path, n_steps: int) -> float | str:
    try:
        import wandb
    except ImportError:
        return "not installed"
    run = wandb.init(project="bench", mode="offline", dir=str(tmp), settings=wandb.Settings(silent=True))
    t0 = time.perf_counter()
    for step in range(n_steps):
        run.log({n: step * 0.5 for n in NAMES}, step=step)
    run.finish()
    return time.perf_counter() - t0


def bench_tensorboard(tmp: Path, n_steps: int) -> float | str:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return "not installed (pip install tensorboard)"
    writer = SummaryWriter(log_dir=str(tmp / "tb"))
    t0 = time.perf_counter()
    for step in range(n_steps):
        for n in NAMES:
            writer.add_scalar(n, step * 0.5, step)
    writer.close()
    return time.perf_counter() - t0


def bench_step_cost(tmp: Path, n_steps: int) -> tuple[float, float]:
    """(seconds of one real CPU training step of the smoke preset, tracking seconds per step)
    with the smoke preset's intervals (log every 5 steps, eval every 10)."""
    import torch

    from utils.training.config import TrainingConfig
    from utils.training.engine.callbacks import TrainerControl, TrainerState
    from utils.training.engine.models import build_model
    from utils.training.tracking.metrics import MetricsTracker

    cfg = TrainingConfig.preset("smoke")
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size))

    def step():
        out = model(input_ids=x, labels=x)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(5):
        step()
    step_s = (time.perf_counter() - t0) / 5

    sink = ExperimentDBSink(tmp / "tracker.db", "tracker", {})
    tracker = MetricsTracker([sink], flops_per_token=6e6)
    state, control = TrainerState(run_name="tracker"), TrainerControl()
    tracker.on_train_begin(state, control, run_info={"device": "cpu"})
    t0 = time.perf_counter()
    for s in range(1, n_steps + 1):
        state.step, state.tokens_seen = s, s * cfg.tokens_per_step
        tracker.on_step_end(state, control)
        if s % cfg.log_interval == 0:
            logs = {"train_loss": 2.0, "lr": 1e-3, "grad_norm": 1.0, "step_time_ms": 50.0,
                    "tokens_per_sec": 1e4, "elapsed_s": float(s), "train_accuracy": 0.3}
            tracker.on_log(state, control, logs=logs)
        if s % cfg.eval_interval == 0:
            tracker.on_evaluate(state, control, metrics={"step": s, "val_loss": 2.0, "val_accuracy": 0.3,
                                                         "val_bpb": 1.5})
    tracker.on_train_end(state, control, status="completed", error=None)
    return step_s, (time.perf_counter() - t0) / n_steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200k points instead of 1M")
    a = p.parse_args(argv)
    n_steps = 20_000 if a.quick else 100_000  # x 10 metrics
    slow_steps = 1_000 if a.quick else 5_000  # MLflow, W&B, TensorBoard: 10x-40x slower
    points, slow_points = n_steps * len(NAMES), slow_steps * len(NAMES)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    try:
        print(f"ingest, {points:,} points (MLflow/W&B/TensorBoard: {slow_points:,}), 10 metrics a step")
        raw = points / bench_raw(tmp, n_steps)
        db_s, db, run_id = bench_db(tmp, n_steps)
        ours = points / db_s
        rows = [("raw sqlite3 executemany (WAL, 1000 rows/commit)", raw), ("ExperimentDB", ours)]
        for label, fn in (("MLflow SQLite store log_batch", bench_mlflow), ("W&B offline", bench_wandb),
                          ("TensorBoard SummaryWriter", bench_tensorboard)):
            r = fn(tmp, slow_steps)
            rows.append((label, slow_points / r if isinstance(r, float) else r))
        for label, rate in rows:
            if isinstance(rate, str):
                print(f"  {label:<50} skipped: {rate}")
            else:
                print(f"  {label:<50} {rate:>12,.0f} points/s   ExperimentDB / this = {ours / rate:6.2f}x")
        print(f"  goal ExperimentDB >= 300,000 points/s: {'met' if ours >= 300_000 else 'NOT met'}")

        raw_read = bench_read_raw(tmp)
        t0 = time.perf_counter()
        df = db.get_metrics(run_id)
        read = time.perf_counter() - t0
        print(f"read back a {len(df):,}-point run: ExperimentDB.get_metrics {read:.3f} s, raw sqlite3 fetchall "
              f"{raw_read:.3f} s (ratio raw/ours {raw_read / read:.1f}x); goal <= 0.2 s "
              f"{'(scaled to 1M) ' if a.quick else ''}{'met' if read * 1e6 / len(df) <= 0.2 else 'NOT met'}")
        db.close()

        step_s, track_s = bench_step_cost(tmp, 2_000 if a.quick else 10_000)
        print(f"tracking cost per step (smoke preset intervals): {track_s * 1e6:.1f} us; one CPU training step "
              f"of the smoke preset {step_s * 1e3:.1f} ms -> {100 * track_s / step_s:.3f}% (goal <= 1%)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A database written with the seed notebook's schema (transformer-builder-colab-templates,
utils/training/tracking/experiment_db.py, its CREATE TABLE statements verbatim) and its way of
writing rows (CURRENT_TIMESTAMP defaults, epoch-level and step-level metrics)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

SEED_SCHEMA = [
    '''
                CREATE TABLE IF NOT EXISTS runs (
                    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_name TEXT NOT NULL,
                    config TEXT,
                    notes TEXT,
                    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                    status TEXT DEFAULT 'running',
                    sweep_id TEXT,
                    sweep_params TEXT
                )
            ''',
    '''
                CREATE TABLE IF NOT EXISTS metrics (
                    metric_id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id INTEGER NOT NULL,
                    metric_name TEXT NOT NULL,
                    value REAL NOT NULL,
                    step INTEGER,
                    epoch INTEGER,
                    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                    FOREIGN KEY (run_id) REFERENCES runs (run_id) ON DELETE CASCADE
                )
            ''',
    '''
                CREATE INDEX IF NOT EXISTS idx_metrics_run_name
                ON metrics (run_id, metric_name)
            ''',
    '''
                CREATE TABLE IF NOT EXISTS artifacts (
                    artifact_id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id INTEGER NOT NULL,
                    artifact_type TEXT NOT NULL,
                    filepath TEXT NOT NULL,
                    metadata TEXT,
                    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                    FOREIGN KEY (run_id) REFERENCES runs (run_id) ON DELETE CASCADE
                )
            ''',
    "ALTER TABLE runs ADD COLUMN gist_id TEXT",
    "ALTER TABLE runs ADD COLUMN gist_revision TEXT",
    "ALTER TABLE runs ADD COLUMN gist_sha256 TEXT",
]


def write_seed_db(path: Path) -> Path:
    """Three runs as the seed wrote them: 'baseline' twice (the seed allowed it), one with
    epoch-level metrics only, one with step-level batch losses plus epoch-level metrics,
    and one still 'running'; explicit timestamps so the import's conversion is checkable."""
    con = sqlite3.connect(path)
    for stmt in SEED_SCHEMA:
        con.execute(stmt)

    def run(name, cfg, notes, status, created):
        cur = con.execute("INSERT INTO runs (run_name, config, notes, status, sweep_id, sweep_params, gist_id, "
                          "gist_revision, gist_sha256, created_at) VALUES (?, ?, ?, ?, NULL, NULL, NULL, NULL, "
                          "NULL, ?)", (name, json.dumps(cfg, indent=2), notes, status, created))
        return cur.lastrowid

    def metric(run_id, name, value, step=None, epoch=None, ts="2025-01-15 14:30:00"):
        con.execute("INSERT INTO metrics (run_id, metric_name, value, step, epoch, timestamp) VALUES "
                    "(?, ?, ?, ?, ?, ?)", (run_id, name, value, step, epoch, ts))

    a = run("baseline", {"learning_rate": 5e-5, "batch_size": 4, "epochs": 3}, "first try", "completed",
            "2025-01-15 14:30:22")
    for e, (tl, vl) in enumerate([(3.0, 3.2), (2.5, 2.8), (2.2, 2.9)]):
        ts = f"2025-01-15 14:3{e + 1}:00"
        metric(a, "train/loss", tl, epoch=e, ts=ts)
        metric(a, "val/loss", vl, epoch=e, ts=ts)
        metric(a, "val/accuracy", 0.3 + 0.1 * e, epoch=e, ts=ts)
    b = run("baseline", {"learning_rate": 1e-4, "batch_size": 8, "epochs": 2}, "", "completed",
            "2025-01-16 09:00:00")
    for e in range(2):
        for i in range(5):
            metric(b, "train/batch_loss", 3.0 - 0.1 * (5 * e + i), step=5 * e + i, epoch=e)
        metric(b, "train/loss", 2.9 - 0.5 * e, epoch=e)
        metric(b, "val/loss", 2.95 - 0.4 * e, epoch=e)
    con.execute("INSERT INTO artifacts (run_id, artifact_type, filepath, metadata, created_at) VALUES "
                "(?, 'checkpoint', 'checkpoints/epoch_1.pt', ?, '2025-01-16 09:10:00')",
                (b, json.dumps({"epoch": 1, "val_loss": 2.55})))
    c = run("crashed", {"learning_rate": 1e-3}, "", "running", "2025-01-17 10:00:00")
    metric(c, "train/loss", 4.0, epoch=0)
    con.commit()
    con.close()
    return path


PER_STEP = ("train/loss", "train/learning_rate", "gradient_norm", "train/accuracy")
EPOCHS = 5


def write_many_points(path: Path, runs: int, points: int) -> Path:
    """`runs` runs of about `points` metric rows each (bench/seed_import.py, and the test of an
    import too large for a list per row): per step train/loss, train/learning_rate,
    gradient_norm and train/accuracy with their epoch (EPOCHS equal epochs) and a timestamp a
    second apart every 10 steps; at each epoch's end an epoch-only val/loss and learning_rate
    (which meets train/learning_rate at that step: kept under its seed name). With points
    >= 1,000, each run has 4 * ((points - 2 * EPOCHS) // 4) + 2 * EPOCHS rows."""
    con = sqlite3.connect(path)
    for stmt in SEED_SCHEMA:
        con.execute(stmt)
    t0 = datetime(2025, 1, 15, 14, 30, tzinfo=timezone.utc)
    for r in range(runs):
        run_id = con.execute("INSERT INTO runs (run_name, config, notes, status, created_at) VALUES (?, ?, '', "
                             "'completed', ?)", (f"bench-{r}", json.dumps({"learning_rate": 5e-5}),
                                                 t0.strftime("%Y-%m-%d %H:%M:%S"))).lastrowid
        epoch_rows = 2 * EPOCHS
        steps = (points - epoch_rows) // len(PER_STEP)
        per_epoch = -(-steps // EPOCHS)

        def rows(run_id=run_id, steps=steps, per_epoch=per_epoch):
            for s in range(steps):
                e, ts = s // per_epoch, (t0 + timedelta(seconds=s // 10)).strftime("%Y-%m-%d %H:%M:%S")
                for k, name in enumerate(PER_STEP):
                    yield run_id, name, 3.0 / (1 + s) + k, s, e, ts
                if (s + 1) % per_epoch == 0 or s == steps - 1:
                    yield run_id, "val/loss", 3.0 / (1 + s), None, e, ts
                    yield run_id, "learning_rate", 5e-5, None, e, ts

        con.executemany("INSERT INTO metrics (run_id, metric_name, value, step, epoch, timestamp) VALUES "
                        "(?, ?, ?, ?, ?, ?)", rows())
        con.commit()
    con.close()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def files_next_to(path: Path) -> list[str]:
    return sorted(p.name for p in Path(path).parent.iterdir())

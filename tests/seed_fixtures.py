"""A database written with the seed notebook's schema (transformer-builder-colab-templates,
utils/training/tracking/experiment_db.py, its CREATE TABLE statements verbatim) and its way of
writing rows (CURRENT_TIMESTAMP defaults, epoch-level and step-level metrics)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
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


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def files_next_to(path: Path) -> list[str]:
    return sorted(p.name for p in Path(path).parent.iterdir())

"""The experiments database's schema, its migrations, and how a connection is opened.

Concurrency and safety (every ExperimentDB connection is made by `connect`):
- WAL journal and `busy_timeout`: readers never block the writer, and a writer waits for
  another instead of failing at once.
- Every write in `Transaction` (BEGIN IMMEDIATE): a writer takes the lock up front, so two
  writers never deadlock on a read->write upgrade.
- `synchronous=NORMAL`: in WAL mode a committed transaction survives a killed process;
  only a power cut may roll back the last commits.

Storage of metric points (two tables, one transaction; see db_metrics.py, MetricStore):
- `metrics` long format (run_id, name, step, value, wall_time): the table to query with
  SQL. SQLite stores NaN as NULL, so a NULL value there means NaN. One row per (run,
  name, step) (schema v2), kept by the writer (a unique index would halve the ingest rate).
- `metric_blocks`: the same points of one flush packed per (run, name) as float64 / int64
  arrays; reads use these (a few thousand rows for a 1M-point run, NaN/inf bit-exact).
- v3 adds the seed notebook's column names as generated columns (SCHEMA_V3).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from utils.training.tracking.db_file import DatabaseFileError

SCHEMA_VERSION = 3
# Summary keys that have their own column on the run row; other keys go to summary_json.
SUMMARY_COLUMNS = ("best_val_loss", "best_step", "tokens_seen", "final_step", "final_train_loss",
                   "total_time", "wandb_run_id", "run_dir")
RUN_COLUMNS = ("run_id", "run_name", "status", "created_at", "updated_at", *SUMMARY_COLUMNS, "config_hash")
SORT_COLUMNS = ("run_id", "run_name", "status", "created_at", "updated_at", "best_val_loss", "tokens_seen",
                "final_step")
TRIAL_STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")

SCHEMA_V1 = """
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'running',
    created_at REAL NOT NULL,             -- unix seconds
    updated_at REAL NOT NULL,
    config_json TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    run_info_json TEXT,
    best_val_loss REAL, best_step INTEGER, tokens_seen INTEGER, final_step INTEGER,
    final_train_loss REAL, total_time REAL, -- s
    wandb_run_id TEXT, run_dir TEXT,
    summary_json TEXT
);
CREATE TABLE metrics (
    run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    step INTEGER NOT NULL,
    value REAL,                           -- NULL means NaN
    wall_time REAL NOT NULL               -- unix seconds
);  -- append-only, no index: an index would halve the ingest rate, reads use metric_blocks
CREATE TABLE metric_blocks (
    run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    first_step INTEGER NOT NULL, last_step INTEGER NOT NULL, n INTEGER NOT NULL,
    steps BLOB NOT NULL, vals BLOB NOT NULL, wall_times BLOB NOT NULL  -- int64 / float64 / float64
);
CREATE INDEX metric_blocks_run ON metric_blocks(run_id, name);
CREATE TABLE artifacts (
    artifact_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    kind TEXT NOT NULL, path TEXT NOT NULL, step INTEGER,
    created_at REAL NOT NULL, meta_json TEXT
);
CREATE INDEX artifacts_run ON artifacts(run_id);
CREATE TABLE trials (
    study_name TEXT NOT NULL, trial_number INTEGER NOT NULL,
    run_id INTEGER REFERENCES runs(run_id) ON DELETE SET NULL,
    state TEXT NOT NULL, value REAL, params_json TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (study_name, trial_number)
);
"""
# v2: one metrics row per (run, name, step) (kept by the writer, MetricStore.flush) and
# one artifact per (run, kind, step) (a unique index). An existing v1 database keeps
# its data: duplicates collapse to their last write (the value a reader already saw,
# get_metrics being last-write-wins). The whole migration is one transaction.
SCHEMA_V2 = """
DELETE FROM metrics WHERE rowid NOT IN (SELECT MAX(rowid) FROM metrics GROUP BY run_id, name, step);
DELETE FROM artifacts WHERE step IS NOT NULL AND artifact_id NOT IN
    (SELECT MAX(artifact_id) FROM artifacts WHERE step IS NOT NULL GROUP BY run_id, kind, step);
CREATE UNIQUE INDEX artifacts_point ON artifacts(run_id, kind, step);
"""
# v3: the seed notebook's column names as VIRTUAL generated columns over ours (computed on
# read: nothing stored, no cost to a write), so the raw SQL its users run reads this file:
# runs.config and runs.notes, metrics.metric_name, artifacts.artifact_type / filepath /
# metadata. The (run_id, name) index of the points takes the seed's name
# idx_metrics_run_name; it indexes metric_blocks, which the readers use: on the long
# `metrics` table an index halves the ingest rate (measured: 1.02M -> 0.48M rows/s).
SCHEMA_V3 = """
ALTER TABLE runs ADD COLUMN config TEXT GENERATED ALWAYS AS (config_json) VIRTUAL;
ALTER TABLE runs ADD COLUMN notes TEXT GENERATED ALWAYS AS
    (CASE WHEN json_valid(run_info_json) THEN json_extract(run_info_json, '$.notes') END) VIRTUAL;
ALTER TABLE metrics ADD COLUMN metric_name TEXT GENERATED ALWAYS AS (name) VIRTUAL;
ALTER TABLE artifacts ADD COLUMN artifact_type TEXT GENERATED ALWAYS AS (kind) VIRTUAL;
ALTER TABLE artifacts ADD COLUMN filepath TEXT GENERATED ALWAYS AS (path) VIRTUAL;
ALTER TABLE artifacts ADD COLUMN metadata TEXT GENERATED ALWAYS AS (meta_json) VIRTUAL;
DROP INDEX metric_blocks_run;
CREATE INDEX idx_metrics_run_name ON metric_blocks(run_id, name);
"""
# MIGRATIONS[v] brings a database from user_version v to v + 1.
MIGRATIONS = {0: SCHEMA_V1, 1: SCHEMA_V2, 2: SCHEMA_V3}


class Transaction:
    """`with Transaction(conn):` BEGIN IMMEDIATE ... COMMIT, rolled back on error. The
    connection must be in autocommit mode (isolation_level=None, as `connect` makes it)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to the database at `path` (already checked by db_file.check_database_file),
    with the pragmas above and the schema brought to SCHEMA_VERSION. Raises DatabaseFileError
    when the file or its folder cannot be written, RuntimeError when the file is newer."""
    # isolation_level=None: Transaction issues BEGIN IMMEDIATE / COMMIT itself.
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        from utils.training.tracking.db_fs import journal_mode_for

        mode, why = journal_mode_for(path)  # WAL on local disk; a rollback journal on Drive/NFS/FUSE
        if why:
            print(f"ExperimentDB: {why}")
        conn.execute(f"PRAGMA journal_mode = {mode.upper()}")
        conn.execute(f"PRAGMA synchronous = {'NORMAL' if mode == 'wal' else 'FULL'}")  # FULL: a journal's safe level
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path)
    except sqlite3.OperationalError as e:
        conn.close()
        if "readonly" in str(e) or "read-only" in str(e) or "unable to open" in str(e):
            raise DatabaseFileError(path, f"cannot be written ({e}; a read-only file or folder)",
                                    "Copy it to a writable folder and open the copy") from e
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION in one transaction (check_database_file has
    already refused any file that is not ours). RuntimeError for a newer database."""
    with Transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path} has schema version {version}; this code reads up to "
                               f"{SCHEMA_VERSION}. Update the project, or open a copy made by this version.")
        while version < SCHEMA_VERSION:
            for stmt in MIGRATIONS[version].split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            version += 1
            conn.execute(f"PRAGMA user_version = {int(version)}")

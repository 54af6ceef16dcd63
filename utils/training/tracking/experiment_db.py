"""SQLite run store: runs, their metrics, artifacts and Optuna trials. No torch import.

Concurrency and safety
- WAL journal, `busy_timeout`, every write in `BEGIN IMMEDIATE` (a writer takes the
  lock up front, so two writers never deadlock on a read->write upgrade).
- `synchronous=NORMAL`: in WAL mode a committed transaction survives a killed process;
  only a power cut may roll back the last commits.
- Every value is a bound parameter; column and sort names come from fixed lists.

Metrics are buffered in memory and written in one transaction per `flush()` (called
on evaluate and close, and automatically every `flush_rows` points or `flush_s`
seconds), so logging never waits on the disk during a step.

Storage of metric points (two tables, one transaction):
- `metrics` long format (run_id, name, step, value, wall_time): the table to query
  with SQL. SQLite stores NaN as NULL, so a NULL value there means NaN. One row per
  (run, name, step) (schema v2), kept by the writer: a step logged again (a resume,
  a re-run of a finished run) replaces its row, the last write wins. The writer, not
  a unique index: an index on this table halves the ingest rate.
- `metric_blocks`: the same points of one flush packed per (run, name) as float64 /
  int64 arrays. `get_metrics` reads these, so reading back a 1M-point run costs a
  few thousand rows instead of a million, and NaN/inf come back bit-exact.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from utils.training.contracts import RunStatus
from utils.training.tracking.db_file import SEED_TABLES, SQLITE_MAGIC, DatabaseFileError, check_database_file  # noqa: F401 - re-exported

SCHEMA_VERSION = 2
STATUSES = RunStatus.ALL  # the statuses a run row may hold
# Summary keys that have their own column on the run row; other keys go to summary_json.
SUMMARY_COLUMNS = ("best_val_loss", "best_step", "tokens_seen", "final_step", "final_train_loss",
                   "total_time", "wandb_run_id", "run_dir")
RUN_COLUMNS = ("run_id", "run_name", "status", "created_at", "updated_at", *SUMMARY_COLUMNS, "config_hash")
SORT_COLUMNS = ("run_id", "run_name", "status", "created_at", "updated_at", "best_val_loss", "tokens_seen",
                "final_step")
TRIAL_STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")

_SCHEMA_V1 = """
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
# v2: one metrics row per (run, name, step) (kept by the writer, ExperimentDB.flush) and
# one artifact per (run, kind, step) (a unique index). An existing v1 database keeps
# its data: duplicates collapse to their last write (the value a reader already saw,
# get_metrics being last-write-wins). The whole migration is one transaction.
_SCHEMA_V2 = """
DELETE FROM metrics WHERE rowid NOT IN (SELECT MAX(rowid) FROM metrics GROUP BY run_id, name, step);
DELETE FROM artifacts WHERE step IS NOT NULL AND artifact_id NOT IN
    (SELECT MAX(artifact_id) FROM artifacts WHERE step IS NOT NULL GROUP BY run_id, kind, step);
CREATE UNIQUE INDEX artifacts_point ON artifacts(run_id, kind, step);
"""
# MIGRATIONS[v] brings a database from user_version v to v + 1.
MIGRATIONS = {0: _SCHEMA_V1, 1: _SCHEMA_V2}


class RunExistsError(ValueError):
    """log_run was given a name that is already in the database."""


class RunNotFoundError(KeyError, ValueError):
    """No run with that id or name. A KeyError (our callers) and a ValueError (the seed's)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


def config_to_dict(config: Any) -> dict:
    """A mapping, a dataclass, or an object with to_dict(); anything else is an error."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    raise TypeError(f"config must be a dict, a dataclass or have to_dict(); got {type(config).__name__}")


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


class ExperimentDB:
    """The experiments database at `path` (created, or migrated, on open).

    A file that is not ours (another schema, the seed's included, a non-SQLite, truncated
    or read-only file, a directory) raises DatabaseFileError before anything is written.
    The seed notebook's calls work too (see seed_db.py): `db_path=`, `log_run(name, config,
    notes)`, `log_metric(..., step=None, epoch=None)`, `compare_runs([ids])`, ..."""

    def __init__(self, path: str | os.PathLike = "experiments.db", *, busy_timeout_s: float = 30.0,
                 flush_rows: int = 10_000, flush_s: float = 5.0, mirror_path: str | os.PathLike | None = None,
                 db_path: str | os.PathLike | None = None):
        self.path = Path(db_path if db_path is not None else path)  # db_path: the seed's keyword
        check_database_file(self.path, SCHEMA_VERSION)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.mirror_path = Path(mirror_path) if mirror_path else None
        self.flush_rows, self.flush_s = flush_rows, flush_s  # points; seconds
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None)
        # (run_id, step, wall_time, {name: value}) per log_metrics call; _buffered counts points.
        self._buffer: list[tuple[int, int, float, dict[str, float]]] = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._last_step: dict[int, int] = {}  # run_id -> highest step stored (see _logged_again)
        self._next_step: dict[tuple[int, str], int] = {}  # seed log_metric without step or epoch
        self._epoch_at: dict[tuple[int, int], int] = {}  # (run_id, step) -> epoch already stored
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.OperationalError as e:
            self.conn.close()
            self.conn = None
            if "readonly" in str(e) or "read-only" in str(e) or "unable to open" in str(e):
                raise DatabaseFileError(self.path, f"cannot be written ({e}; a read-only file or folder)",
                                        "Copy it to a writable folder and open the copy") from e
            raise

    # -- schema --------------------------------------------------------------
    def _migrate(self) -> None:
        # check_database_file (db_file.py) has already refused any file that is not ours.
        with self._write():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {version}; this code reads up to "
                                   f"{SCHEMA_VERSION}. Update the project, or open a copy made by this version.")
            while version < SCHEMA_VERSION:
                for stmt in MIGRATIONS[version].split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                version += 1
                self.conn.execute(f"PRAGMA user_version = {int(version)}")

    def _write(self) -> _Transaction:
        return _Transaction(self.conn)

    @property
    def db_path(self) -> Path:
        """The seed's name for `path`."""
        return self.path

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    # -- runs ------------------------------------------------------------------
    def log_run(self, run_name: str, config: Any = None, notes: str = "", *, run_dir: str | None = None,
                wandb_run_id: str | None = None, run_info: dict | None = None,
                on_duplicate: str = "error") -> int:
        """A new run row (status running); returns its run_id. Run names are unique: a name
        already used raises RunExistsError, or with on_duplicate="rename" the run gets the
        first free "NAME-2", "NAME-3", ... (printed). `notes` (the seed's) go to run_info."""
        if not isinstance(run_name, str) or not run_name.strip():
            raise ValueError(f"run_name must be a non-empty string, got {run_name!r}")
        if on_duplicate not in ("error", "rename"):
            raise ValueError(f"on_duplicate must be 'error' or 'rename', got {on_duplicate!r}")
        from utils.training.config import config_dict_hash  # no torch: config.py is plain Python

        if on_duplicate == "rename" and self.find_run(run_name) is not None:
            given, run_name = run_name, self.unique_run_name(run_name)
            print(f"ExperimentDB: a run named {given!r} exists in {self.path}; this one is {run_name!r}")
        if notes:
            run_info = {**(run_info or {}), "notes": str(notes)}
        as_dict = config_to_dict(config)
        cfg, config_hash = _json(as_dict), config_dict_hash(as_dict)
        now = time.time()
        try:
            with self._write():
                cur = self.conn.execute(
                    "INSERT INTO runs (run_name, status, created_at, updated_at, config_json, config_hash, "
                    "run_info_json, wandb_run_id, run_dir) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                    (run_name, now, now, cfg, config_hash,
                     _json(run_info) if run_info else None, wandb_run_id, None if run_dir is None else str(run_dir)))
        except sqlite3.IntegrityError as e:
            raise RunExistsError(f"a run named {run_name!r} is already in {self.path}; pick another name, "
                                 f"continue it with find_run({run_name!r}), or pass on_duplicate='rename' "
                                 f"to get the next free {run_name}-N") from e
        return int(cur.lastrowid)

    def unique_run_name(self, run_name: str) -> str:
        """`run_name`, or the first of NAME-2, NAME-3, ... not in the database."""
        name, k = run_name, 1
        while self.find_run(name) is not None:
            k += 1
            name = f"{run_name}-{k}"
        return name

    def find_run(self, run_name: str) -> int | None:
        row = self.conn.execute("SELECT run_id FROM runs WHERE run_name = ?", (run_name,)).fetchone()
        return None if row is None else int(row[0])

    def _resolve(self, run: int | str) -> int:
        if isinstance(run, (int, np.integer)) and not isinstance(run, bool):
            if self.conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (int(run),)).fetchone():
                return int(run)
        elif isinstance(run, str):
            run_id = self.find_run(run)
            if run_id is not None:
                return run_id
        raise RunNotFoundError(f"no run {run!r} in {self.path} (give a run_id or a run name; list_runs() shows "
                               f"them)")

    def get_run(self, run: int | str) -> dict:
        """The run row as a dict; `config`, `run_info` and `summary` parsed from JSON."""
        run_id = self._resolve(run)
        cur = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
        row["config"] = _loads(row.pop("config_json"))
        row["run_info"] = _loads(row.pop("run_info_json"))
        row["summary"] = _loads(row.pop("summary_json"))
        row["notes"] = row["run_info"].get("notes", "") if isinstance(row["run_info"], dict) else ""
        return row

    def update_run_status(self, run: int | str, status: str, **summary: Any) -> None:
        """Set status and summary values (own columns for SUMMARY_COLUMNS, the rest in summary_json)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self.flush()
        run_id = self._resolve(run)
        cols = {k: summary.pop(k) for k in SUMMARY_COLUMNS if k in summary}
        for k, v in cols.items():
            if isinstance(v, float) and math.isnan(v):
                cols[k] = None
        with self._write():
            sets = "".join(f", {k} = ?" for k in cols)  # names from SUMMARY_COLUMNS only
            self.conn.execute(f"UPDATE runs SET status = ?, updated_at = ?{sets} WHERE run_id = ?",
                              (status, time.time(), *cols.values(), run_id))
            if summary:
                old = self.conn.execute("SELECT summary_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
                merged = {**_loads(old), **summary}
                self.conn.execute("UPDATE runs SET summary_json = ? WHERE run_id = ?", (_json(merged), run_id))

    def list_runs(self, status: str | None = None, order_by: str = "created_at", descending: bool = True,
                  limit: int | None = None) -> pd.DataFrame:
        """Run rows, newest first; our columns plus the seed's `notes`. The seed's
        `list_runs(5)` (a limit as the first argument) works too."""
        if isinstance(status, int) and not isinstance(status, bool):
            status, limit = None, status  # the seed's positional limit
        if order_by not in SORT_COLUMNS:
            raise ValueError(f"order_by must be one of {SORT_COLUMNS}, got {order_by!r}")
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
        params: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        sql += f" ORDER BY {order_by} {'DESC' if descending else 'ASC'}, run_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self.conn.execute(sql.replace(" FROM runs", ", run_info_json FROM runs", 1), params).fetchall()
        df = pd.DataFrame([r[:-1] for r in rows], columns=list(RUN_COLUMNS))
        df["notes"] = [(_loads(r[-1]) or {}).get("notes", "") for r in rows]
        return df

    def delete_run(self, run: int | str) -> None:
        run_id = self._resolve(run)
        self._buffer = [e for e in self._buffer if e[0] != run_id]
        self._last_step.pop(run_id, None)
        self._buffered = sum(len(e[3]) for e in self._buffer)
        with self._write():
            self.conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    # -- metrics -----------------------------------------------------------------
    def log_metric(self, run_id: int, name: str, value: float, step: int | None = None,
                   epoch: int | None = None) -> None:
        """One point. The seed's forms work too: with `epoch` the epoch is stored as the
        metric "epoch" at the same step (step defaults to the epoch number); with neither,
        the step is this metric's previous step + 1."""
        if step is None:
            if epoch is not None:
                step = int(epoch)
            else:
                key = (int(run_id), name)
                if key not in self._next_step:
                    prev = self.get_metrics(run_id, name)["step"]
                    self._next_step[key] = int(prev.max()) + 1 if len(prev) else 0
                step = self._next_step[key]
        self._next_step[(int(run_id), name)] = int(step) + 1
        points = {name: value}
        if epoch is not None and self._epoch_at.get((int(run_id), int(step))) != int(epoch):
            points["epoch"] = int(epoch)  # once per step: several metrics of one epoch share it
            self._epoch_at[(int(run_id), int(step))] = int(epoch)
        self.log_metrics(run_id, points, step)

    def log_metrics(self, run_id: int, metrics: Mapping[str, float], step: int) -> None:
        """Buffer one step's values; written at the next flush. Non-numbers are an error."""
        try:
            values = {k: float(v) for k, v in metrics.items()}
        except (TypeError, ValueError) as e:
            bad = {k: v for k, v in metrics.items() if not _is_number(v)}
            raise TypeError(f"metric values must be numbers; got {bad!r}") from e
        for name in values:
            if not isinstance(name, str) or not name:
                raise ValueError(f"metric names must be non-empty strings, got {name!r}")
        if values:
            self._buffer.append((run_id, int(step), time.time(), values))
            self._buffered += len(values)
        if self._buffered >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write the buffered points in one transaction (long rows + one block per run and name)."""
        self._last_flush = time.monotonic()
        entries, self._buffer, self._buffered = self._buffer, [], 0
        if not entries:
            return
        rows = [(rid, n, s, v, w) for rid, s, w, d in entries for n, v in d.items()]
        again = self._logged_again(entries)  # {run_id: lowest step already in the table}, usually empty
        if again:
            rows = list({(r[0], r[1], r[2]): r for r in rows}.values())  # within this flush, the last write wins
        # Entries with the same run and the same names become one (steps x names) matrix.
        groups: dict[tuple, list] = {}
        for e in entries:
            groups.setdefault((e[0], tuple(e[3])), []).append(e)
        blocks = []
        for (run_id, names), g in groups.items():
            steps = np.array([e[1] for e in g], dtype=np.int64)
            walls = np.array([e[2] for e in g], dtype=np.float64).tobytes()
            vals = np.array([list(e[3].values()) for e in g], dtype=np.float64)
            first, last, sb = int(steps.min()), int(steps.max()), steps.tobytes()
            for j, name in enumerate(names):
                blocks.append((run_id, name, first, last, len(g), sb, vals[:, j].tobytes(), walls))
        try:
            with self._write():
                if again:  # a point logged again replaces its row: one row per (run, name, step)
                    self.conn.executemany("DELETE FROM metrics WHERE run_id = ? AND name = ? AND step = ?",
                                          [r[:3] for r in rows if r[2] <= again.get(r[0], -1)])
                self.conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", rows)
                self.conn.executemany("INSERT INTO metric_blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", blocks)
        except sqlite3.IntegrityError as e:
            missing = sorted({r[0] for r in entries})
            raise KeyError(f"metrics for run_id(s) {missing}, not all of which are in {self.path} "
                           f"(log_run first)") from e
        for rid, step, _, _ in entries:
            self._last_step[rid] = max(self._last_step.get(rid, -1), step)

    def _logged_again(self, entries: list) -> dict[int, int]:
        """The writer's half of "one row per (run, name, step)", at no cost for the usual
        flush: {run_id: the highest step already stored} for runs whose entries may write
        a (name, step) twice (a step at or below what the table holds, steps out of
        order, or one step given the same name twice), else {}. A unique index would
        enforce it too, at half the ingest rate (measured)."""
        again: dict[int, int] = {}
        seen: dict[int, tuple[int, set]] = {}  # run_id -> (last step, its names)
        for rid, step, _, d in entries:
            if rid not in seen and rid not in again:
                stored = self._stored_last_step(rid)
                if step <= stored:
                    again[rid] = stored
                    continue
                seen[rid] = (step, set(d))
                continue
            if rid in again:
                continue
            last, names = seen[rid]
            if step > last:
                seen[rid] = (step, set(d))
            elif step == last and names.isdisjoint(d):
                names.update(d)  # train and eval metrics of one step: different names
            else:
                again[rid] = self._stored_last_step(rid)
        return again

    def _stored_last_step(self, run_id: int) -> int:
        """The highest step of `run_id` in the table (-1: none), from the indexed blocks."""
        if run_id not in self._last_step:
            row = self.conn.execute("SELECT MAX(last_step) FROM metric_blocks WHERE run_id = ?", (run_id,)).fetchone()
            self._last_step[run_id] = -1 if row[0] is None else int(row[0])
        return self._last_step[run_id]

    def truncate_after(self, run: int | str, step: int) -> None:
        """Drop points and step artifacts after `step` (a run resumed from the checkpoint at
        `step` logs them again)."""
        run_id = self._resolve(run)
        self.flush()
        self._last_step.pop(run_id, None)
        with self._write():
            self.conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, int(step)))
            self.conn.execute("DELETE FROM artifacts WHERE run_id = ? AND step > ?", (run_id, int(step)))
            cut = self.conn.execute("SELECT rowid, name, steps, vals, wall_times FROM metric_blocks "
                                    "WHERE run_id = ? AND last_step > ?", (run_id, int(step))).fetchall()
            for rowid, name, s, v, w in cut:
                s, v, w = np.frombuffer(s, np.int64), np.frombuffer(v), np.frombuffer(w)
                keep = s <= step
                self.conn.execute("DELETE FROM metric_blocks WHERE rowid = ?", (rowid,))
                if keep.any():
                    self.conn.execute("INSERT INTO metric_blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                      (run_id, name, int(s[keep].min()), int(s[keep].max()), int(keep.sum()),
                                       s[keep].tobytes(), v[keep].tobytes(), w[keep].tobytes()))

    def get_metrics(self, run: int | str, name: str | None = None) -> pd.DataFrame:
        """Columns step, metric_name, value, wall_time, then the seed's metric_id, run_id,
        epoch (the "epoch" metric at that step, else NaN) and timestamp (UTC); sorted by
        metric_name then step. A seed name ("val/loss") with no points reads ours ("val_loss")."""
        from utils.training.tracking.seed_db import SEED_TO_OURS, add_seed_columns

        run_id = self._resolve(run)
        df = self._get_metrics(run_id, name)
        if name is not None and df.empty and name in SEED_TO_OURS:
            df = self._get_metrics(run_id, SEED_TO_OURS[name])
        epochs = self._get_metrics(run_id, "epoch") if name is not None else df[df["metric_name"] == "epoch"]
        return add_seed_columns(df, run_id, epochs)

    def _get_metrics(self, run_id: int, name: str | None = None) -> pd.DataFrame:
        """Columns step, metric_name, value, wall_time; sorted by metric_name then step."""
        self.flush()
        sql = "SELECT name, steps, vals, wall_times FROM metric_blocks WHERE run_id = ?"
        params: tuple = (run_id,)
        if name is not None:
            sql += " AND name = ?"
            params += (name,)
        per_name: dict[str, list] = {}
        for n, s, v, w in self.conn.execute(sql + " ORDER BY rowid", params):
            per_name.setdefault(n, []).append((s, v, w))
        frames = []
        for n in sorted(per_name):
            parts = per_name[n]
            s = np.frombuffer(b"".join(p[0] for p in parts), np.int64)
            v = np.frombuffer(b"".join(p[1] for p in parts))
            w = np.frombuffer(b"".join(p[2] for p in parts))
            if len(s) > 1 and not (np.diff(s) > 0).all():
                # A step written twice (log_metric again, or a resume): the last write wins.
                order = np.argsort(s, kind="stable")
                s, v, w = s[order], v[order], w[order]
                last = np.append(s[1:] != s[:-1], True)
                s, v, w = s[last], v[last], w[last]
            frames.append((n, s, v, w))
        if not frames:
            return pd.DataFrame({"step": pd.Series(dtype="int64"), "metric_name": pd.Series(dtype=object),
                                 "value": pd.Series(dtype="float64"), "wall_time": pd.Series(dtype="float64")})
        # metric_name as a categorical built from integer codes: a million-point run would
        # otherwise spend most of its read time making a million Python strings.
        codes = np.repeat(np.arange(len(frames), dtype=np.int32), [len(f[1]) for f in frames])
        return pd.DataFrame({"step": np.concatenate([f[1] for f in frames]),
                             "metric_name": pd.Categorical.from_codes(codes, categories=[f[0] for f in frames]),
                             "value": np.concatenate([f[2] for f in frames]),
                             "wall_time": np.concatenate([f[3] for f in frames])})

    def metric_names(self, run: int | str) -> list[str]:
        run_id = self._resolve(run)
        self.flush()
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT name FROM metric_blocks WHERE run_id = ? ORDER BY name", (run_id,))]

    def compare_runs(self, runs: Iterable[int | str], metric: str | None = None) -> pd.DataFrame:
        """One column per run (its name), indexed by step, holding `metric` (default val_loss).

        The seed's call form, a list of integer run ids and no metric, gives the seed's
        shape instead: one row per run (run_id, run_name, created_at, status,
        final_train_loss, final_val_loss, best_val_loss, best_epoch, total_epochs), unknown
        ids skipped."""
        runs = list(runs)
        if metric is None and runs and all(isinstance(r, (int, np.integer)) and not isinstance(r, bool)
                                           for r in runs):
            from utils.training.tracking.seed_db import seed_compare_runs

            return seed_compare_runs(self, runs)
        metric = metric or "val_loss"
        cols = {}
        for run in runs:
            run_id = self._resolve(run)
            name = self.conn.execute("SELECT run_name FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
            df = self.get_metrics(run_id, metric)
            cols[name] = pd.Series(df["value"].to_numpy(), index=df["step"].to_numpy())
        out = pd.DataFrame(cols)
        out.index.name = "step"
        return out

    def get_best_run(self, metric: str = "val_loss", mode: str = "min") -> dict:
        """The run with the lowest (mode="min") or highest ("max") value of `metric`.

        The run dict also carries best_value, best_step and (the seed's) best_epoch; a seed
        metric name ("val/loss") falls back to ours ("val_loss") when it has no points.
        Raises ValueError when no run logged `metric` (the seed API's contract)."""
        from utils.training.tracking.seed_db import SEED_TO_OURS

        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.flush()
        agg = "MIN" if mode == "min" else "MAX"  # from the fixed pair above
        row = None
        for name in (metric, SEED_TO_OURS.get(metric)):
            if name is None or row is not None:
                continue
            row = self.conn.execute(
                f"SELECT run_id, {agg}(value) AS best FROM metrics WHERE name = ? AND value IS NOT NULL "
                f"GROUP BY run_id ORDER BY best {'ASC' if mode == 'min' else 'DESC'}, run_id LIMIT 1",
                (name,)).fetchone()
            used = name
        if row is None:
            raise ValueError(f"no run in {self.path} logged the metric {metric!r}")
        run = self.get_run(row[0])
        run["best_value"] = row[1]
        at = self.get_metrics(row[0], used)
        at = at[at["value"] == row[1]]
        run["best_step"] = int(at["step"].iloc[0]) if len(at) else None
        epoch = at["epoch"].iloc[0] if len(at) else math.nan
        run["best_epoch"] = None if pd.isna(epoch) else int(epoch)
        return run

    # -- artifacts and trials ------------------------------------------------------
    def log_artifact(self, run: int | str, kind: str, path: str | os.PathLike, step: int | None = None,
                     **meta: Any) -> int:
        """One artifact per (run, kind, step): logging the same step again (a resumed or
        re-run run) replaces it. Artifacts without a step are all kept. `meta` keywords go to
        meta_json; the seed's `metadata` dict (4th argument or keyword) too."""
        if isinstance(step, Mapping):  # the seed's log_artifact(run_id, type, path, metadata)
            meta, step = {**step, **meta}, None
        if isinstance(meta.get("metadata"), Mapping):
            meta = {**meta.pop("metadata"), **meta}
        elif "metadata" in meta and meta["metadata"] is None:
            meta.pop("metadata")
        run_id = self._resolve(run)
        with self._write():
            cur = self.conn.execute(
                "INSERT INTO artifacts (run_id, kind, path, step, created_at, meta_json) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, kind, step) DO UPDATE SET path = excluded.path, "
                "created_at = excluded.created_at, meta_json = excluded.meta_json RETURNING artifact_id",
                (run_id, str(kind), str(path), None if step is None else int(step), time.time(),
                 _json(meta) if meta else None))
            artifact_id = cur.fetchone()[0]
        return int(artifact_id)

    def get_artifacts(self, run: int | str, kind: str | None = None) -> pd.DataFrame:
        run_id = self._resolve(run)
        sql, params = "SELECT artifact_id, kind, path, step, created_at, meta_json FROM artifacts WHERE run_id = ?", [
            run_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        cols = ["artifact_id", "kind", "path", "step", "created_at", "meta_json"]
        return pd.DataFrame(self.conn.execute(sql + " ORDER BY artifact_id", params).fetchall(), columns=cols)

    def log_trial(self, study_name: str, trial_number: int, *, state: str, value: float | None = None,
                  params: dict | None = None, run: int | str | None = None) -> None:
        """Insert or update an Optuna trial (state as Optuna names it: COMPLETE, PRUNED, ...)."""
        if state not in TRIAL_STATES:
            raise ValueError(f"trial state must be one of {TRIAL_STATES}, got {state!r}")
        run_id = None if run is None else self._resolve(run)
        now = time.time()
        value = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        with self._write():
            self.conn.execute(
                "INSERT INTO trials (study_name, trial_number, run_id, state, value, params_json, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (study_name, trial_number) DO UPDATE SET "
                "run_id = COALESCE(excluded.run_id, run_id), state = excluded.state, value = excluded.value, "
                "params_json = excluded.params_json, updated_at = excluded.updated_at",
                (study_name, int(trial_number), run_id, state, value, _json(params or {}), now, now))

    def get_trials(self, study_name: str | None = None) -> pd.DataFrame:
        cols = ["study_name", "trial_number", "run_id", "state", "value", "params_json", "created_at", "updated_at"]
        sql, params = f"SELECT {', '.join(cols)} FROM trials", []
        if study_name is not None:
            sql += " WHERE study_name = ?"
            params.append(study_name)
        df = pd.DataFrame(self.conn.execute(sql + " ORDER BY study_name, trial_number", params).fetchall(),
                          columns=cols)
        df["params"] = [json.loads(p) for p in df.pop("params_json")]
        return df

    def import_db(self, path: str | os.PathLike):
        """Copy the runs, metrics and artifacts of a seed notebook experiments.db into this
        database (the source is opened read-only and left byte-identical); see seed_db.py."""
        from utils.training.tracking.seed_db import import_seed_db

        return import_seed_db(self, path)

    # -- health, backup, lifetime ------------------------------------------------------
    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def backup_to(self, path: str | os.PathLike | None = None) -> Path:
        """Consistent copy via the SQLite backup API (never a file copy of a live WAL database)."""
        dest = Path(path) if path else self.mirror_path
        if dest is None:
            raise ValueError("backup_to needs a path (or open the database with mirror_path=...)")
        self.flush()
        _backup(self.conn, dest)
        return dest

    @classmethod
    def open_local(cls, local_path: str | os.PathLike, mirror_path: str | os.PathLike | None = None,
                   **kwargs: Any) -> ExperimentDB:
        """Open the live database on local disk; if it is missing and `mirror_path` (the Drive
        copy) exists, restore it from there first. close() backs up to the mirror."""
        local = Path(local_path)
        if mirror_path is not None and not local.exists() and Path(mirror_path).exists():
            src = sqlite3.connect(f"file:{Path(mirror_path)}?mode=ro", uri=True)
            try:
                _backup(src, local)
            finally:
                src.close()
            print(f"experiments database restored from {mirror_path}")
        return cls(local, mirror_path=mirror_path, **kwargs)

    def close(self) -> None:
        if self.conn is None:
            return
        try:
            self.flush()
            if self.mirror_path is not None:
                self.backup_to()
        finally:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> ExperimentDB:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _backup(src: sqlite3.Connection, dest: Path) -> None:
    """Copy through a temp file then rename, so `dest` is always a whole database."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    out = sqlite3.connect(str(tmp))
    try:
        src.backup(out)
    finally:
        out.close()
    os.replace(tmp, dest)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error."""

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


class ExperimentDBSink:
    """MetricsSink writing to an ExperimentDB (docs/ARCHITECTURE.md).

    start() creates the run row, or continues the one in run_info["tracking"]["db_run_id"]
    (resume) or `run_id`; it stores db_run_id in that tracking dict (the checkpoint's)."""

    def __init__(self, db: ExperimentDB | str | os.PathLike, run_name: str, config_dict: Any = None,
                 run_id: int | None = None):
        self._own = not isinstance(db, ExperimentDB)
        self.db = ExperimentDB(db) if self._own else db
        self.run_name, self.config, self.run_id = run_name, config_dict, run_id
        self.tracking: dict = {}  # set by start(): the checkpoint's ids (db_run_id, wandb_run_id)

    def start(self, run_info: dict) -> None:
        tracking = run_info.get("tracking")
        if tracking is None:
            tracking = {}
        run_id = self.run_id or tracking.get("db_run_id")
        resumed = run_info.get("resumed_from_step")
        if run_id is None:
            run_id = self._same_run_restarting()
            resumed = 0 if run_id is not None and resumed is None else resumed
        if run_id is not None:
            run_id = self.db._resolve(int(run_id))
            if resumed is not None:
                # Resumed from the checkpoint at step S (restarted from scratch: S = 0): what
                # the last process logged after S is logged again by this one.
                self.db.truncate_after(run_id, int(resumed))
            self.db.update_run_status(run_id, "running")
        else:
            info = {k: v for k, v in run_info.items() if k not in ("tracking", "config")}
            run_id = self.db.log_run(self.run_name, self.config if self.config is not None
                                     else run_info.get("config"), run_info=info,
                                     run_dir=run_info.get("run_dir"))
        self.run_id = run_id
        tracking["db_run_id"] = run_id
        self.tracking = tracking  # the checkpoint's ids; the W&B sink adds its id after this one starts

    def _same_run_restarting(self) -> int | None:
        """The row of this run when it starts again from step 0 (killed before its first
        checkpoint, or every checkpoint was unreadable): same name, same config. Another
        run under the same name is an error (RunExistsError from log_run)."""
        run_id = self.db.find_run(self.run_name)
        if run_id is None or self.config is None:
            return None
        from utils.training.config import config_dict_hash

        same = self.db.get_run(run_id)["config_hash"] == config_dict_hash(config_to_dict(self.config))
        return run_id if same else None

    def write(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        self.db.log_metrics(self.run_id, {k: v for k, v in metrics.items() if k != "step" and v is not None}, step)

    def add_samples(self, step: int, samples: list[dict]) -> None:
        self.db.log_artifact(self.run_id, "samples", f"samples@{int(step)}", step=step, samples=samples)

    def add_checkpoint(self, step: int, path: str) -> None:
        self.db.log_artifact(self.run_id, "checkpoint", path, step=step)

    def flush(self) -> None:
        self.db.flush()

    def sync(self) -> None:
        """Durable now (a committed WAL transaction survives a killed process)."""
        self.db.flush()

    def close(self, status: str, summary: dict) -> None:
        try:
            if self.run_id is not None:
                summary = dict(summary or {})
                wandb_id = self.tracking.get("wandb_run_id")
                if wandb_id and "wandb_run_id" not in summary:
                    summary["wandb_run_id"] = wandb_id  # so the database row links to the W&B run
                self.db.update_run_status(self.run_id, status, **summary)
        finally:
            if self._own:
                self.db.close()

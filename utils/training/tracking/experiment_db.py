"""The experiments database: runs, their metrics, artifacts and Optuna trials, in one
SQLite file. No torch import (`from utils.training import ExperimentDB` stays light).

ExperimentDB owns its parts, one noun each: the connection and schema (db_schema.py:
tables, migrations, WAL / busy-timeout / BEGIN IMMEDIATE), the metric points
(db_metrics.MetricStore: checked at the call, buffered, written per flush, read back);
this class keeps the runs, artifacts, trials and backups. A file that is not ours is
refused untouched (db_file.py). ExperimentDBSink (db_sink.py) writes a run here; the
seed notebook's ExperimentDB is compat/experiment_db.py. Every value is a bound
parameter; column and sort names come from fixed lists.
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
from utils.training.io import atomic_write_bytes
from utils.training.tracking.db_file import check_database_file
from utils.training.tracking.db_metrics import MetricStore, RunNotFoundError
from utils.training.tracking.db_schema import (
    RUN_COLUMNS,
    SCHEMA_VERSION,
    SORT_COLUMNS,
    SUMMARY_COLUMNS,
    TRIAL_STATES,
    Transaction,
    connect,
)

__all__ = ["ExperimentDB", "RunExistsError", "RunNotFoundError", "config_to_dict"]


class RunExistsError(ValueError):
    """log_run was given a name that is already in the database."""


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



def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


class ExperimentDB:
    """The experiments database at `path` (created, or migrated, on open).

    A file that is not ours (another schema, the seed's included, a non-SQLite, truncated
    or read-only file, a directory) raises DatabaseFileError before anything is written.
    `metrics` (a MetricStore) holds the points; the methods below are its public calls."""

    def __init__(self, path: str | os.PathLike = "experiments.db", *, busy_timeout_s: float = 30.0,
                 flush_rows: int = 10_000, flush_s: float = 5.0, mirror_path: str | os.PathLike | None = None,
                 read_only: bool = False):
        self.path = Path(path)
        check_database_file(self.path, SCHEMA_VERSION, writable=not read_only)
        self.mirror_path = Path(mirror_path) if mirror_path else None
        self.conn: sqlite3.Connection | None = None
        if read_only:  # the reading commands: mode=ro, pages checked (works on a read-only mount)
            from utils.training.tracking.db_access import connect_read_only

            self.conn = connect_read_only(self.path)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = connect(self.path, busy_timeout_s)
        self.metrics = MetricStore(self.conn, self.path, flush_rows, flush_s)  # points; seconds

    def transaction(self) -> Transaction:
        """`with db.transaction():` one BEGIN IMMEDIATE ... COMMIT on this connection (for
        writers outside this class, the seed import among them)."""
        return Transaction(self.conn)

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    # -- runs ------------------------------------------------------------------
    def log_run(self, run_name: str, config: Any = None, *, run_dir: str | None = None,
                wandb_run_id: str | None = None, run_info: dict | None = None,
                on_duplicate: str = "error") -> int:
        """A new run row (status running); returns its run_id. Run names are unique: a name
        already used raises RunExistsError, or with on_duplicate="rename" the run gets the
        first free "NAME-2", "NAME-3", ... (printed)."""
        if not isinstance(run_name, str) or not run_name.strip():
            raise ValueError(f"run_name must be a non-empty string, got {run_name!r}")
        if on_duplicate not in ("error", "rename"):
            raise ValueError(f"on_duplicate must be 'error' or 'rename', got {on_duplicate!r}")
        from utils.training.config import config_dict_hash  # no torch: config.py is plain Python

        if on_duplicate == "rename" and self.find_run(run_name) is not None:
            given, run_name = run_name, self.unique_run_name(run_name)
            print(f"ExperimentDB: a run named {given!r} exists in {self.path}; this one is {run_name!r}")
        as_dict = config_to_dict(config)
        cfg, config_hash = _json(as_dict), config_dict_hash(as_dict)
        now = time.time()
        try:
            with self.transaction():
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

    def resolve_run(self, run: int | str) -> int:
        """The run_id of `run` (a run_id or a run name); RunNotFoundError when there is none."""
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
        """The run row as a dict; `config`, `run_info` and `summary` parsed from JSON, `notes`
        (run_info's, "" when none)."""
        run_id = self.resolve_run(run)
        cur = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
        row["config"] = _loads(row.pop("config_json"))
        row["run_info"] = _loads(row.pop("run_info_json"))
        row["summary"] = _loads(row.pop("summary_json"))
        row["notes"] = row.get("notes") or ""
        return row

    def update_run_status(self, run: int | str, status: str, **summary: Any) -> None:
        """Set status and summary values (own columns for SUMMARY_COLUMNS, the rest in summary_json)."""
        if status not in RunStatus.ALL:
            raise ValueError(f"status must be one of {RunStatus.ALL}, got {status!r}")
        self.flush()
        run_id = self.resolve_run(run)
        cols = {k: summary.pop(k) for k in SUMMARY_COLUMNS if k in summary}
        for k, v in cols.items():
            if isinstance(v, float) and math.isnan(v):
                cols[k] = None
        with self.transaction():
            sets = "".join(f", {k} = ?" for k in cols)  # names from SUMMARY_COLUMNS only
            self.conn.execute(f"UPDATE runs SET status = ?, updated_at = ?{sets} WHERE run_id = ?",
                              (status, time.time(), *cols.values(), run_id))
            if summary:
                old = self.conn.execute("SELECT summary_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
                merged = {**_loads(old), **summary}
                self.conn.execute("UPDATE runs SET summary_json = ? WHERE run_id = ?", (_json(merged), run_id))

    def list_runs(self, status: str | None = None, order_by: str = "created_at", descending: bool = True,
                  limit: int | None = None) -> pd.DataFrame:
        """Run rows, newest first: RUN_COLUMNS and the run's `notes` ("" when none)."""
        if order_by not in SORT_COLUMNS:
            raise ValueError(f"order_by must be one of {SORT_COLUMNS}, got {order_by!r}")
        sql = f"SELECT {', '.join(RUN_COLUMNS)}, COALESCE(notes, '') FROM runs"
        params: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        sql += f" ORDER BY {order_by} {'DESC' if descending else 'ASC'}, run_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return pd.DataFrame(self.conn.execute(sql, params).fetchall(), columns=[*RUN_COLUMNS, "notes"])

    def delete_run(self, run: int | str) -> None:
        run_id = self.resolve_run(run)
        self.metrics.forget(run_id)
        with self.transaction():
            self.conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    # -- metric points (self.metrics) ---------------------------------------------------
    def log_metrics(self, run_id: int, metrics: Mapping[str, float], step: int, *,
                    wall_time: float | None = None) -> None:
        """Buffer one step's values; written at the next flush. A bad point raises here and is
        not kept: a run_id not in the file (RunNotFoundError), a step that is not an int in
        [0, 2**63 - 1], a value that is not a number. wall_time: unix seconds (default now)."""
        self.metrics.add(run_id, metrics, step, wall_time)

    def log_metric(self, run_id: int, name: str, value: float, step: int) -> None:
        """One point: log_metrics(run_id, {name: value}, step)."""
        self.metrics.add(run_id, {name: value}, step)

    def flush(self) -> None:
        """Write the buffered points now (one transaction)."""
        self.metrics.flush()

    def truncate_after(self, run: int | str, step: int) -> None:
        """Drop points and step artifacts after `step` (a run resumed from the checkpoint at
        `step` logs them again)."""
        self.metrics.truncate_after(self.resolve_run(run), step)

    def get_metrics(self, run: int | str, name: str | None = None) -> pd.DataFrame:
        """Columns step, metric_name, value, wall_time; sorted by metric_name then step."""
        return self.metrics.read(self.resolve_run(run), name)

    def metric_names(self, run: int | str) -> list[str]:
        return self.metrics.names(self.resolve_run(run))

    def compare_runs(self, runs: Iterable[int | str], metric: str = "val_loss") -> pd.DataFrame:
        """One column per run (its name), indexed by step, holding `metric`."""
        cols = {}
        for run in runs:
            run_id = self.resolve_run(run)
            name = self.conn.execute("SELECT run_name FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
            df = self.metrics.read(run_id, metric)
            cols[name] = pd.Series(df["value"].to_numpy(), index=df["step"].to_numpy())
        out = pd.DataFrame(cols)
        out.index.name = "step"
        return out

    def get_best_run(self, metric: str = "val_loss", mode: str = "min") -> dict:
        """The run (get_run's dict) with the lowest (mode="min") or highest ("max") value of
        `metric`, plus best_value and best_step. ValueError when no run logged `metric`."""
        best = self.metrics.best(metric, mode)
        if best is None:
            raise ValueError(f"no run in {self.path} logged the metric {metric!r}")
        run = self.get_run(best[0])
        run["best_value"], run["best_step"] = best[1], best[2]
        return run

    # -- artifacts and trials ------------------------------------------------------
    def log_artifact(self, run: int | str, kind: str, path: str | os.PathLike, step: int | None = None, *,
                     meta: Mapping[str, Any] | None = None, **more: Any) -> int:
        """One artifact per (run, kind, step): logging the same step again (a resumed or
        re-run run) replaces it. Artifacts without a step are all kept. `meta` and the other
        keywords go to meta_json (one JSON object)."""
        meta = {**(meta or {}), **more}
        run_id = self.resolve_run(run)
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO artifacts (run_id, kind, path, step, created_at, meta_json) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, kind, step) DO UPDATE SET path = excluded.path, "
                "created_at = excluded.created_at, meta_json = excluded.meta_json RETURNING artifact_id",
                (run_id, str(kind), str(path), None if step is None else int(step), time.time(),
                 _json(meta) if meta else None))
            artifact_id = cur.fetchone()[0]
        return int(artifact_id)

    def get_artifacts(self, run: int | str, kind: str | None = None) -> pd.DataFrame:
        run_id = self.resolve_run(run)
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
        run_id = None if run is None else self.resolve_run(run)
        now = time.time()
        value = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        with self.transaction():
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
        from utils.training.tracking.seed_import import import_seed_db

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
        """Write the buffered points (and the mirror), then close. If writing fails, the
        connection stays open with the points buffered: free the cause and close() again."""
        if self.conn is None:
            return
        self.flush()
        try:
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
    """A consistent copy of the database behind `src` (a snapshot read in one transaction,
    committed WAL pages included), written atomically and durably: `dest` is always a
    whole database. The copy is made in memory (one database's size)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, src.serialize())

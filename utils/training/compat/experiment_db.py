"""The seed notebook's ExperimentDB (transformer-builder-colab-templates,
utils/training/experiment_db.py) as a subclass of ours: its calls, arguments, result
shapes and errors, over our database file.

- `ExperimentDB(db_path)`, `db.db_path`; `log_run(name, config, notes)` (sweep and gist
  keywords kept in run_info); `log_metric(run_id, name, value, step=None, epoch=None)`:
  an epoch-only point is placed on the step axis by seed_db.EpochAxis, the rule
  `runs import` uses (the last step logged in that epoch), once its epoch has ended (a
  point of a later epoch, flush(), a read, close()), and its epoch is kept;
  neither step nor epoch: the metric's previous step + 1.
- `get_run(999)` -> ValueError "Run 999 not found"; `get_metrics(run_id[, name])` with the
  seed's columns, only the metrics the caller logged (not the bookkeeping series);
  `list_runs(limit=10)` with the seed's columns; `compare_runs([ids])` one row per run;
  `get_best_run(name, mode)` with best_epoch, ValueError "No runs found with metric";
  `log_artifact(run_id, type, path, metadata)`; `get_runs_for_sweep`; `import_db`.
- Seed metric names read ours where the caller logged none ("val/loss" finds our
  "val_loss"), so the seed's calls read runs of our Trainer.
Raw SQL: the schema's generated columns (db_schema.SCHEMA_V3) give the seed's names.
Times are the seed's text, 'YYYY-MM-DD HH:MM:SS' UTC.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from utils.training.contracts import RunStatus
from utils.training.tracking import experiment_db as core
from utils.training.tracking.db_file import SEED_TABLES, SQLITE_MAGIC, DatabaseFileError, check_database_file
from utils.training.tracking.db_metrics import RunNotFoundError, check_step
from utils.training.tracking.db_schema import (
    MIGRATIONS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    SORT_COLUMNS,
    SUMMARY_COLUMNS,
    TRIAL_STATES,
    Transaction,
    connect,
)
from utils.training.tracking.db_sink import ExperimentDBSink
from utils.training.tracking.experiment_db import RunExistsError, config_to_dict
from utils.training.tracking.seed_db import OURS_TO_SEED, SEED_TO_OURS, EpochAxis

__all__ = ["ExperimentDB", "ExperimentDBSink", "RunExistsError", "RunNotFoundError", "config_to_dict",
           "DatabaseFileError", "SEED_TABLES", "SQLITE_MAGIC", "check_database_file", "MIGRATIONS", "RUN_COLUMNS",
           "SCHEMA_VERSION", "SORT_COLUMNS", "STATUSES", "SUMMARY_COLUMNS", "TRIAL_STATES", "Transaction",
           "connect", "BOOKKEEPING"]

STATUSES = RunStatus.ALL
# Series the library writes next to the caller's points: the epoch of a step, and the
# seconds since the run started (runs import). get_metrics without a name leaves them out.
BOOKKEEPING = ("epoch", "elapsed_s")
SEED_METRIC_COLUMNS = ["metric_id", "run_id", "metric_name", "value", "step", "epoch", "timestamp"]
SEED_COMPARE_COLUMNS = ["run_id", "run_name", "created_at", "status", "final_train_loss", "final_val_loss",
                        "best_val_loss", "best_epoch", "total_epochs"]


def seed_time(t: float | None) -> str | None:
    """Unix seconds -> the seed's CURRENT_TIMESTAMP text (UTC)."""
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return None
    return datetime.fromtimestamp(float(t), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class ExperimentDB(core.ExperimentDB):
    """The seed's ExperimentDB over our store (module docstring: what differs from ours)."""

    def __init__(self, db_path: str | os.PathLike = "experiments.db", *, path: str | os.PathLike | None = None,
                 **kwargs: Any):
        super().__init__(path if path is not None else db_path, **kwargs)
        self._axes: dict[int, EpochAxis] = {}  # run_id -> where its epoch-only points go
        self._next_step: dict[tuple[int, str], int] = {}  # (run_id, name) -> step of a point with neither
        self._epoch_at: dict[tuple[int, int], int] = {}  # (run_id, step) -> epoch already logged there
        # run_id -> [(epoch, name, value, wall_time)]: epoch-only points until their epoch ends
        self._pending: dict[int, list[tuple[int, str, float, float]]] = {}

    @property
    def db_path(self):
        return self.path

    # -- runs ------------------------------------------------------------------------
    def log_run(self, run_name: str, config: Any = None, notes: str = "", *, sweep_id: str | None = None,
                sweep_params: dict | None = None, gist_id: str | None = None, gist_revision: str | None = None,
                gist_sha256: str | None = None, **ours: Any) -> int:
        """A new run; `notes` and the sweep / gist keywords are kept in run_info. A name
        already in the database raises RunExistsError (pass on_duplicate='rename')."""
        seed = {"notes": str(notes) if notes else None, "sweep_id": sweep_id,
                "sweep_params": json.dumps(sweep_params) if sweep_params else None, "gist_id": gist_id,
                "gist_revision": gist_revision, "gist_sha256": gist_sha256}
        info = {**(ours.pop("run_info", None) or {}), **{k: v for k, v in seed.items() if v is not None}}
        return super().log_run(run_name, config, run_info=info or None, **ours)

    def _run_id(self, run_id: Any) -> int:
        try:
            return self.resolve_run(run_id)
        except RunNotFoundError:
            raise RunNotFoundError(f"Run {run_id} not found in database {self.path}") from None

    def get_run(self, run_id: int | str) -> dict:
        """The run as a dict (config parsed, notes, created_at as the seed's text, and our
        columns). ValueError "Run N not found in database" when there is none."""
        run = super().get_run(self._run_id(run_id))
        run["created_at"] = seed_time(run["created_at"])
        return run

    def list_runs(self, limit: int = 10) -> pd.DataFrame:
        """The `limit` newest runs: run_id, run_name, created_at, status, notes."""
        rows = self.conn.execute("SELECT run_id, run_name, created_at, status, COALESCE(notes, '') FROM runs "
                                 "ORDER BY created_at DESC, run_id DESC LIMIT ?", (int(limit),)).fetchall()
        df = pd.DataFrame(rows, columns=["run_id", "run_name", "created_at", "status", "notes"])
        df["created_at"] = [seed_time(t) for t in df["created_at"]]
        return df

    def get_runs_for_sweep(self, sweep_id: str) -> pd.DataFrame:
        """Runs logged with this sweep_id, oldest first (the seed's columns and sweep_params)."""
        rows = self.conn.execute(
            "SELECT run_id, run_name, created_at, status, COALESCE(notes, ''), "
            "json_extract(run_info_json, '$.sweep_params') FROM runs WHERE json_valid(run_info_json) "
            "AND json_extract(run_info_json, '$.sweep_id') = ? ORDER BY created_at, run_id", (sweep_id,)).fetchall()
        df = pd.DataFrame(rows, columns=["run_id", "run_name", "created_at", "status", "notes", "sweep_params"])
        df["created_at"] = [seed_time(t) for t in df["created_at"]]
        return df

    def log_artifact(self, run_id: int | str, artifact_type: str, filepath: str | os.PathLike,
                     metadata: Mapping[str, Any] | None = None, *, step: int | None = None, **more: Any) -> int:
        """The seed's form (metadata a dict, the 4th argument); our `step=` works too."""
        if metadata is not None and not isinstance(metadata, Mapping):
            metadata = {"metadata": metadata}
        metadata = {**(metadata or {}), **(more.pop("meta", None) or {})}  # ours: meta=
        return super().log_artifact(self._run_id(run_id), artifact_type, filepath, step, meta=metadata, **more)

    # -- metric points -----------------------------------------------------------------
    def log_metric(self, run_id: int, metric_name: str, value: float, step: int | None = None,
                   epoch: int | None = None) -> None:
        """One point, checked here (run id, step, epoch, value: a bad one raises and is not
        kept). With `epoch` the epoch is stored too. With `epoch` and no step the point goes
        to the last step logged in that epoch (seed_db.EpochAxis, the rule of `runs import`):
        it is held until its epoch ends (a point of a later epoch, flush(), a read, close())
        because the seed's loops log an epoch's metrics before its batches. With neither,
        the point goes to this metric's previous step + 1."""
        run_id = self.metrics.check_run(run_id)
        if step is not None:
            step = check_step(step)
        if epoch is not None:
            epoch = check_step(epoch, "epoch")
            self._end_epochs(run_id, before=epoch)
        if step is None and epoch is not None:
            if not isinstance(metric_name, str) or not metric_name:
                raise ValueError(f"metric names must be non-empty strings, got {metric_name!r}")
            try:
                value = float(value)
            except (TypeError, ValueError) as e:
                raise TypeError(f"metric values must be numbers; got {{{metric_name!r}: {value!r}}}") from e
            self._pending.setdefault(run_id, []).append((epoch, metric_name, value, time.time()))
            self._axis(run_id).saw(None, epoch)
            return
        if step is None:
            self._end_epochs(run_id)  # the held points have a step before this one
            key = (run_id, metric_name)
            if key not in self._next_step:
                prev = self.metrics.read(run_id, metric_name)["step"]
                self._next_step[key] = int(prev.max()) + 1 if len(prev) else 0
            step = self._next_step[key]
        self._write(run_id, metric_name, value, step, epoch, None)
        self._axis(run_id).saw(step, epoch)

    def _write(self, run_id: int, name: str, value: float, step: int, epoch: int | None,
               wall_time: float | None) -> None:
        points = {name: value}
        if epoch is not None and self._epoch_at.get((run_id, step)) != epoch:
            points["epoch"] = epoch  # once per step: several metrics of one epoch share it
        self.metrics.add(run_id, points, step, wall_time)
        if "epoch" in points:
            self._epoch_at[(run_id, step)] = epoch
        self._next_step[(run_id, name)] = step + 1

    def _end_epochs(self, run_id: int, before: int | None = None) -> None:
        """Place the held epoch-only points of `run_id` (those of epochs < `before`; all
        when None) on the step axis and hand them to the metric store."""
        held = self._pending.get(run_id)
        if not held:
            return
        now = [p for p in held if before is None or p[0] < before]
        if not now:
            return
        self._pending[run_id] = [p for p in held if not (before is None or p[0] < before)]
        axis = self._axis(run_id)
        for epoch, name, value, wall in now:
            self._write(run_id, name, value, axis.step_for(epoch), epoch, wall)

    def flush(self) -> None:
        """Place every held epoch-only point, then write the buffered points."""
        for run_id in list(self._pending):
            self._end_epochs(run_id)
        super().flush()

    def delete_run(self, run: int | str) -> None:
        run_id = self._run_id(run)
        self._pending.pop(run_id, None)
        super().delete_run(run_id)

    def _axis(self, run_id: int) -> EpochAxis:
        """The run's EpochAxis, rebuilt from what the file holds the first time it is used."""
        if run_id not in self._axes:
            axis = EpochAxis()
            epochs = self.metrics.read(run_id, "epoch")
            for s, e in zip(epochs["step"].tolist(), epochs["value"].tolist()):
                if not math.isnan(e):
                    axis.saw(int(s), int(e))
            last = self.metrics.last_step(run_id)
            if last >= 0:
                axis.saw(last, None)
            self._axes[run_id] = axis
        return self._axes[run_id]

    def get_metrics(self, run_id: int | str, metric_name: str | None = None) -> pd.DataFrame:
        """Columns metric_id, run_id, metric_name, value, step, epoch, timestamp, in the order
        the points were logged. With no name: every metric the caller logged, not the
        bookkeeping series (BOOKKEEPING)."""
        run_id = self._run_id(run_id)
        self.flush()
        df = self.metrics.read(run_id, metric_name)
        if metric_name is not None and df.empty and metric_name in SEED_TO_OURS:
            df = self.metrics.read(run_id, SEED_TO_OURS[metric_name])
        if metric_name is None:
            df = df[~df["metric_name"].isin(BOOKKEEPING)]
        df = df.assign(metric_name=df["metric_name"].astype(str)).sort_values(["wall_time", "step"], kind="stable")
        epochs = self.metrics.read(run_id, "epoch")
        by_step = pd.Series(epochs["value"].to_numpy(), index=epochs["step"].to_numpy())
        df["epoch"] = by_step.reindex(df["step"].to_numpy()).to_numpy() if len(df) else np.full(0, np.nan)
        df["metric_id"] = np.arange(1, len(df) + 1, dtype=np.int64)
        df["run_id"] = np.full(len(df), run_id, dtype=np.int64)
        df["timestamp"] = pd.to_datetime(df["wall_time"], unit="s", utc=True).dt.strftime("%Y-%m-%d %H:%M:%S")
        return df[SEED_METRIC_COLUMNS].reset_index(drop=True)

    def compare_runs(self, run_ids: Iterable[int | str], metric: str | None = None) -> pd.DataFrame:
        """The seed's call (run ids, no metric): one row per run (SEED_COMPARE_COLUMNS),
        unknown ids skipped. With a metric: ours (one column per run, indexed by step)."""
        run_ids = list(run_ids)
        if metric is not None or not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool)
                                         for r in run_ids):
            return super().compare_runs(run_ids, metric or "val_loss")
        rows = []
        for run_id in run_ids:
            try:
                run = self.get_run(int(run_id))
            except RunNotFoundError:
                continue
            m = self.get_metrics(run["run_id"])
            train, val = _series(m, "train_loss"), _series(m, "val_loss")
            best_epoch = None
            if len(val):
                at = val["epoch"].iloc[int(np.argmin(val["value"].to_numpy()))]
                best_epoch = None if pd.isna(at) else int(at)
            ep = m["epoch"].dropna()
            rows.append({"run_id": run["run_id"], "run_name": run["run_name"], "created_at": run["created_at"],
                         "status": run["status"],
                         "final_train_loss": float(train["value"].iloc[-1]) if len(train) else None,
                         "final_val_loss": float(val["value"].iloc[-1]) if len(val) else None,
                         "best_val_loss": float(val["value"].min()) if len(val) else None,
                         "best_epoch": best_epoch, "total_epochs": int(ep.max()) + 1 if len(ep) else 0})
        return pd.DataFrame(rows, columns=SEED_COMPARE_COLUMNS)

    def get_best_run(self, metric_name: str = "val/loss", mode: str = "min") -> dict:
        """The run with the best value of `metric_name` (our name read where the seed's has no
        points): get_run's dict plus best_value, best_step and best_epoch. ValueError
        "No runs found with metric" when no run logged it."""
        self.flush()
        best = None
        for name in (metric_name, SEED_TO_OURS.get(metric_name)):
            if name is not None and best is None:
                best = self.metrics.best(name, mode)
        if best is None:
            raise ValueError(f"No runs found with metric '{metric_name}' in {self.path}")
        run_id, value, step = best
        run = self.get_run(run_id)
        epochs = self.metrics.read(run_id, "epoch")
        at = epochs["value"][epochs["step"] == step]
        run.update(best_value=value, best_step=step,
                   best_epoch=int(at.iloc[0]) if len(at) and not math.isnan(at.iloc[0]) else None)
        return run


def _series(m: pd.DataFrame, name: str) -> pd.DataFrame:
    """One metric's rows (our name, or the seed's name if only that was logged), in the
    order they were logged."""
    part = m[m["metric_name"] == name]
    if part.empty and name in OURS_TO_SEED:
        part = m[m["metric_name"] == OURS_TO_SEED[name]]
    return part

"""The seed notebook's experiments.db: its metric names, its result shapes, and its import.

The seed (transformer-builder-colab-templates) stored runs(run_id, run_name, config JSON,
notes, created_at 'YYYY-MM-DD HH:MM:SS' UTC, status, sweep_id, sweep_params, gist_*),
metrics(metric_id, run_id, metric_name, value, step, epoch, timestamp) with step or epoch
(or both) per point, and artifacts(artifact_id, run_id, artifact_type, filepath, metadata,
created_at). `import_seed_db` copies such a file into an ExperimentDB of ours:
- metric names become ours (SEED_TO_OURS), so runs list/plot/compare and the dashboard
  read them; names we do not know are kept as they are;
- a point with a step keeps it; an epoch-only point goes to the last step logged in that
  epoch (when the run logged steps with epochs), else to an even share of the run's steps
  (steps without epochs), else to the epoch number itself (an epoch-only run); the epoch is
  kept as the metric "epoch" at that step;
- timestamps become unix seconds (the seed's CURRENT_TIMESTAMP is UTC);
- run names already taken get "-2", "-3", ... and are reported; a run already imported
  from the same source (path, run_id and created_at) is skipped;
- the source is read from a copy (with its -wal): not a byte changes. Reading the copy,
  checking rows and writing runs is seed_import.py (`import_seed_db`, `ImportReport`,
  `read_seed_db` are importable from here too).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

# The seed's metric names -> ours (docs/ARCHITECTURE.md vocabulary).
SEED_TO_OURS = {
    "train/loss": "train_loss",
    "val/loss": "val_loss",
    "train/perplexity": "train_perplexity",
    "val/perplexity": "val_perplexity",
    "train/accuracy": "train_accuracy",
    "val/accuracy": "val_accuracy",
    "learning_rate": "lr",
    "train/learning_rate": "lr",
    "gradient_norm": "grad_norm",
    "epoch_duration": "epoch_time_s",
}
OURS_TO_SEED = {v: k for k, v in reversed(list(SEED_TO_OURS.items()))}  # first seed name wins
STATUS_MAP = {"running": "interrupted"}  # a seed run still "running" at import time never finished


def add_seed_columns(df: pd.DataFrame, run_id: int, epochs: pd.DataFrame) -> pd.DataFrame:
    """Our get_metrics frame plus the seed's columns: metric_id (1.. in row order), run_id,
    epoch (from the "epoch" points at the same step, else NaN), timestamp (UTC datetime)."""
    df = df.copy()
    df["metric_id"] = np.arange(1, len(df) + 1, dtype=np.int64)
    df["run_id"] = np.full(len(df), int(run_id), dtype=np.int64)
    if len(epochs) and len(df):
        by_step = pd.Series(epochs["value"].to_numpy(), index=epochs["step"].to_numpy())
        by_step = by_step[~by_step.index.duplicated(keep="last")]
        df["epoch"] = by_step.reindex(df["step"].to_numpy()).to_numpy()
    else:
        df["epoch"] = np.full(len(df), np.nan)
    df["timestamp"] = pd.to_datetime(df["wall_time"], unit="s", utc=True)
    return df


def seed_compare_runs(db, run_ids: list[int]) -> pd.DataFrame:
    """The seed's compare_runs: one row per known run id (unknown ids skipped)."""
    from utils.training.tracking.experiment_db import RunNotFoundError

    cols = ["run_id", "run_name", "created_at", "status", "final_train_loss", "final_val_loss", "best_val_loss",
            "best_epoch", "total_epochs"]
    rows = []
    for run_id in run_ids:
        try:
            run = db.get_run(int(run_id))
        except RunNotFoundError:
            continue
        m = db.get_metrics(run["run_id"])
        train = _series(m, "train_loss")
        val = _series(m, "val_loss")
        best_epoch = None
        if len(val):
            at = val.loc[val["value"].idxmin()]
            best_epoch = None if pd.isna(at["epoch"]) else int(at["epoch"])
        ep = m["epoch"].dropna()
        rows.append({"run_id": run["run_id"], "run_name": run["run_name"], "created_at": run["created_at"],
                     "status": run["status"],
                     "final_train_loss": float(train["value"].iloc[-1]) if len(train) else None,
                     "final_val_loss": float(val["value"].iloc[-1]) if len(val) else None,
                     "best_val_loss": float(val["value"].min()) if len(val) else None,
                     "best_epoch": best_epoch, "total_epochs": int(ep.max()) + 1 if len(ep) else 0})
    return pd.DataFrame(rows, columns=cols)


def _series(m: pd.DataFrame, name: str) -> pd.DataFrame:
    """One metric's rows (our name, or the seed's name if only that was logged), by step."""
    part = m[m["metric_name"] == name]
    if part.empty and name in OURS_TO_SEED:
        part = m[m["metric_name"] == OURS_TO_SEED[name]]
    return part.sort_values("step", kind="stable")


# ---------------------------------------------------------------------------------------
# Import (the reading and the row checks are in seed_import.py)
# ---------------------------------------------------------------------------------------
def timestamp(text: Any) -> float | None:
    """The seed's 'YYYY-MM-DD HH:MM:SS' (SQLite CURRENT_TIMESTAMP, UTC) or ISO text -> unix s."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    try:
        t = datetime.fromisoformat(str(text).strip())
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def place_on_steps(points: list[dict]) -> tuple[list[tuple[str, int, float, float, int | None]], int]:
    """One run's seed metric rows -> [(name, step, value, wall_time, epoch)], and how many
    epoch-only points were placed on the step axis (module docstring: the rule)."""
    stepped = [p for p in points if p.get("step") is not None]
    last_step_of_epoch: dict[int, int] = {}
    for p in stepped:
        if p.get("epoch") is not None:
            e = int(p["epoch"])
            last_step_of_epoch[e] = max(last_step_of_epoch.get(e, int(p["step"])), int(p["step"]))
    epochs = sorted({int(p["epoch"]) for p in points if p.get("epoch") is not None})
    max_step = max((int(p["step"]) for p in stepped), default=None)
    out, placed, counters = [], 0, {}
    for p in points:
        name = SEED_TO_OURS.get(p["metric_name"], p["metric_name"])
        epoch = None if p.get("epoch") is None else int(p["epoch"])
        wall = timestamp(p.get("timestamp"))
        if p.get("step") is not None:
            step = int(p["step"])
        elif epoch is not None:
            placed += 1
            if epoch in last_step_of_epoch:
                step = last_step_of_epoch[epoch]
            elif max_step is not None and not last_step_of_epoch:
                # Steps without epochs: epochs taken as equal shares of the run's steps.
                step = round((epochs.index(epoch) + 1) * (max_step + 1) / len(epochs)) - 1
            else:
                step = epoch
        else:
            step = counters.get(name, 0)  # neither: this metric's own sequence
        counters[name] = step + 1
        value = math.nan if p.get("value") is None else float(p["value"])
        out.append((name, step, value, wall if wall is not None else math.nan, epoch))
    return out, placed


def split_collisions(rows: list[tuple[str, int, float, float, int | None]], seed_names: list[str]
                     ) -> tuple[list[tuple[str, int, float, float, int | None]], list[str], int]:
    """Rows that meet at one (name, step) -> (rows to store, one per (name, step); the dropped
    ones described; how many were kept under their seed name). The first row keeps our name;
    a later one takes its seed name when that differs and is free at that step (the seed's
    learning_rate per epoch beside train/learning_rate per step); else it is dropped."""
    taken: set[tuple[str, int]] = set()
    kept, dropped, as_seed = [], [], 0
    for row, seed in zip(rows, seed_names):
        name, step = row[0], row[1]
        if (name, step) not in taken:
            taken.add((name, step))
            kept.append(row)
        elif seed != name and (seed, step) not in taken:
            taken.add((seed, step))
            kept.append((seed, *row[1:]))
            as_seed += 1
        else:
            first = next(r for r in kept if r[0] == name and r[1] == step)
            dropped.append(f"{seed} = {row[2]!r} at step {step}: {name} already has {first[2]!r} there")
    return kept, dropped, as_seed


def write_points(db, run_id: int, rows: list[tuple[str, int, float, float, int | None]],
                 extra: list[tuple[str, int, float, float, None]] = (), missing_wall: float = 0.0) -> int:
    """Write one run's points (one per name and step: split_collisions) with their own wall
    times, then the epoch of each step and the `extra` points (elapsed_s) where the run has
    no point of that name and step; returns how many rows were written. A point without a
    timestamp gets `missing_wall` (the run's creation time: the store needs one)."""
    points: dict[tuple[str, int], tuple[float, float]] = {
        (n, s): (v, missing_wall if math.isnan(w) else w) for n, s, v, w, _ in rows}
    for _, step, _, wall, epoch in rows:
        if epoch is not None:
            points.setdefault(("epoch", step), (float(epoch), missing_wall if math.isnan(wall) else wall))
    for name, step, value, wall, _ in extra:
        points.setdefault((name, step), (value, wall))
    by_step: dict[tuple[int, float], dict[str, float]] = {}
    for (name, step), (value, wall) in points.items():
        by_step.setdefault((step, wall), {})[name] = value
    db.flush()
    for (step, wall), values in sorted(by_step.items(), key=lambda kv: (kv[0][0], _nan_last(kv[0][1]))):
        db.log_metrics(run_id, values, step, wall_time=wall)
    db.flush()
    return len(points)


def elapsed(rows: list[tuple], start: float | None) -> list[tuple[str, int, float, float, None]]:
    """elapsed_s per step from the seed's timestamps (seconds since the run was created), so
    the wall-time panels of our figures have an axis; none when timestamps are missing."""
    walls: dict[int, float] = {}
    for _, step, _, wall, _ in rows:
        if not math.isnan(wall):
            walls[step] = max(walls.get(step, wall), wall)
    if not walls:
        return []
    t0 = min(start if start is not None else math.inf, *walls.values())
    return [("elapsed_s", step, wall - t0, wall, None) for step, wall in sorted(walls.items())]


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def summary(rows: list[tuple[str, int, float, float, int | None]]) -> dict[str, Any]:
    """The run-row summary runs list shows: best val loss and its step, final step and train loss."""
    val = [(v, s) for n, s, v, _, _ in rows if n == "val_loss" and not math.isnan(v)]
    train = sorted((s, v) for n, s, v, _, _ in rows if n == "train_loss")
    out: dict[str, Any] = {"final_step": max((s for _, s, _, _, _ in rows), default=None)}
    if val:
        best, step = min(val)
        out.update(best_val_loss=best, best_step=step)
    if train:
        out["final_train_loss"] = train[-1][1]
    return out


def __getattr__(name: str) -> Any:
    """The import moved to seed_import.py; its names keep working from here."""
    if name in ("import_seed_db", "read_seed_db", "ImportReport"):
        from utils.training.tracking import seed_import

        return getattr(seed_import, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The seed notebook's experiments.db: its metric names, its epoch axis, and `runs import`.

The seed (transformer-builder-colab-templates) stored runs(run_id, run_name, config JSON,
notes, created_at 'YYYY-MM-DD HH:MM:SS' UTC, status, sweep_id, sweep_params, gist_*),
metrics(metric_id, run_id, metric_name, value, step, epoch, timestamp) with step or epoch
(or both) per point, and artifacts(artifact_id, run_id, artifact_type, filepath, metadata,
created_at). `import_seed_db` copies such a file into an ExperimentDB of ours:
- metric names become ours (SEED_TO_OURS), so runs list/plot/compare and the dashboard
  read them; names we do not know are kept as they are;
- a point with a step keeps it; an epoch-only point goes where EpochAxis puts it (the
  last step logged in that epoch; the seed API's log_metric uses the same rule); the
  epoch is kept as the metric "epoch" at that step;
- timestamps become unix seconds (the seed's CURRENT_TIMESTAMP is UTC);
- run names already taken get "-2", "-3", ... and are reported; a run already imported
  from the same source (path, run_id and created_at) is skipped;
- the source is read from a copy (with its -wal): not a byte changes. Reading the copy,
  checking rows and writing runs is seed_import.py (`import_seed_db`, `ImportReport`,
  `read_seed_db` keep their old path here through the compat map); seed_points.py applies
  the rules below to a run's points as columns, streamed (place_on_steps, split_collisions,
  write_points, elapsed and summary here are their row-by-row statement, which
  tests/test_seed_points.py checks the import against).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

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


class EpochAxis:
    """Where the seed's epoch-only points go on our step axis, one rule for `runs import`
    (all of a run's points seen first) and the seed API's log_metric (the points so far):
    the last step logged in that epoch; when steps were logged without epochs, the end of
    the epoch's equal share of the steps; with no steps at all, the epoch number."""

    def __init__(self) -> None:
        self.last_of_epoch: dict[int, int] = {}  # epoch -> highest step logged with it
        self.epochs: set[int] = set()
        self.max_step: int | None = None

    def saw(self, step: int | None, epoch: int | None) -> None:
        if epoch is not None:
            self.epochs.add(epoch)
        if step is not None:
            self.max_step = step if self.max_step is None else max(self.max_step, step)
            if epoch is not None:
                self.last_of_epoch[epoch] = max(self.last_of_epoch.get(epoch, step), step)

    def step_for(self, epoch: int) -> int:
        if epoch in self.last_of_epoch:
            return self.last_of_epoch[epoch]
        if self.max_step is not None and not self.last_of_epoch:
            epochs = sorted(self.epochs | {epoch})
            return round((epochs.index(epoch) + 1) * (self.max_step + 1) / len(epochs)) - 1
        return epoch


# ---------------------------------------------------------------------------------------
# Import
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
    epoch-only points were placed on the step axis (EpochAxis: the rule)."""
    axis = EpochAxis()
    for p in points:
        axis.saw(None if p.get("step") is None else int(p["step"]), None if p.get("epoch") is None else int(p["epoch"]))
    out, placed, counters = [], 0, {}
    for p in points:
        name = SEED_TO_OURS.get(p["metric_name"], p["metric_name"])
        epoch = None if p.get("epoch") is None else int(p["epoch"])
        wall = timestamp(p.get("timestamp"))
        if p.get("step") is not None:
            step = int(p["step"])
        elif epoch is not None:
            placed += 1
            step = axis.step_for(epoch)
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

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
  from the same source file (same sha256 and run_id) is skipped;
- the source is read through an immutable read-only connection: not a byte changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from utils.training.contracts import RunStatus
from utils.training.tracking.db_file import SEED_TABLES, SQLITE_MAGIC, DatabaseFileError

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
@dataclass
class ImportReport:
    source: Path
    sha256: str
    imported: list[tuple[int, int, str]] = field(default_factory=list)  # (source run_id, our run_id, name)
    renamed: dict[int, tuple[str, str]] = field(default_factory=dict)  # source run_id -> (seed name, ours)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # already imported from this file
    metrics: int = 0  # points written
    epoch_placed: int = 0  # epoch-only points given a step
    artifacts: int = 0

    def __str__(self) -> str:
        lines = [f"imported {len(self.imported)} run(s), {self.metrics} metric points "
                 f"({self.epoch_placed} epoch-only placed on the step axis), {self.artifacts} artifacts "
                 f"from {self.source}"]
        for src, (old, new) in self.renamed.items():
            lines.append(f"  run {src} {old!r} renamed {new!r} (the name was taken)")
        for src, name in self.skipped:
            lines.append(f"  run {src} {name!r} skipped: already imported from this file")
        return "\n".join(lines)


def _timestamp(text: Any) -> float | None:
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


def _json_or_raw(text: str | None) -> Any:
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"raw": text}


def read_seed_db(path: str | Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(runs, metrics, artifacts) rows of a seed database, read without writing a byte."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseFileError(path, "does not exist or is not a file", "Give the path of the seed's experiments.db")
    with open(path, "rb") as f:
        if not f.read(16).startswith(SQLITE_MAGIC):
            raise DatabaseFileError(path, "is not a SQLite database", "Give the path of the seed's experiments.db")
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    con.row_factory = sqlite3.Row
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        cols = {t: {r[1] for r in con.execute(f'PRAGMA table_info("{t}")')} for t in tables if t in SEED_TABLES}
        if not all(need <= cols.get(t, set()) for t, need in SEED_TABLES.items()):
            if "metric_blocks" in tables:
                what = "is a database of this project, not the seed's (open it with ExperimentDB directly)"
            else:
                what = f"is not a seed experiments database (tables: {', '.join(sorted(tables)) or 'none'})"
            raise DatabaseFileError(path, what, "Give the path of the seed notebook's experiments.db")
        runs = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY run_id")]
        metrics = [dict(r) for r in con.execute("SELECT * FROM metrics ORDER BY run_id, metric_id")]
        artifacts = ([dict(r) for r in con.execute("SELECT * FROM artifacts ORDER BY run_id, artifact_id")]
                     if "artifacts" in tables else [])
    except sqlite3.DatabaseError as e:
        raise DatabaseFileError(path, f"could not be read ({e})", "Restore it from a backup") from e
    finally:
        con.close()
    return runs, metrics, artifacts


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
        wall = _timestamp(p.get("timestamp"))
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


def import_seed_db(db, path: str | Path) -> ImportReport:
    """Copy a seed experiments.db into `db` (an ExperimentDB of ours); see the module docstring."""
    path = Path(path)
    if path.resolve() == db.path.resolve():
        raise ValueError(f"{path} is this database itself; import from the seed's file at another path")
    sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    runs, metrics, artifacts = read_seed_db(path)
    report = ImportReport(source=path, sha256=sha)
    done = _already_imported(db, sha)
    by_run: dict[int, list[dict]] = {}
    for m in metrics:
        by_run.setdefault(int(m["run_id"]), []).append(m)
    arts: dict[int, list[dict]] = {}
    for a in artifacts:
        arts.setdefault(int(a["run_id"]), []).append(a)
    created: list[int] = []
    try:
        for run in runs:
            src_id, name = int(run["run_id"]), str(run.get("run_name") or f"seed-run-{run['run_id']}")
            if src_id in done:
                report.skipped.append((src_id, name))
                continue
            ours = db.unique_run_name(name)
            if ours != name:
                report.renamed[src_id] = (name, ours)
            info = {"imported_from": str(path.resolve()), "source_sha256": sha, "source_run_id": src_id,
                    "notes": run.get("notes") or "",
                    **{k: run[k] for k in ("sweep_id", "sweep_params", "gist_id", "gist_revision", "gist_sha256")
                       if run.get(k) is not None}}
            run_id = db.log_run(ours, _json_or_raw(run.get("config")), run_info=info)
            created.append(run_id)
            status = STATUS_MAP.get(run.get("status"), run.get("status"))
            status = status if status in RunStatus.ALL else RunStatus.FAILED
            rows, placed = place_on_steps(by_run.get(src_id, []))
            report.epoch_placed += placed
            report.metrics += len(rows)
            _write_points(db, run_id, rows + _elapsed(rows, _timestamp(run.get("created_at"))))
            for a in arts.get(src_id, []):
                meta = _json_or_raw(a.get("metadata"))
                db.log_artifact(run_id, a.get("artifact_type") or "artifact", a.get("filepath") or "",
                                meta=meta if isinstance(meta, dict) else {"metadata": meta})
                report.artifacts += 1
            when = _timestamp(run.get("created_at"))
            with db.transaction():
                db.conn.execute("UPDATE runs SET created_at = ?, updated_at = ? WHERE run_id = ?",
                                (when or 0.0, when or 0.0, run_id))
                # Artifacts keep the seed's times too (log_artifact stamped them now).
                for a, (art_id,) in zip(arts.get(src_id, []), db.conn.execute(
                        "SELECT artifact_id FROM artifacts WHERE run_id = ? ORDER BY artifact_id", (run_id,))):
                    t = _timestamp(a.get("created_at"))
                    if t is not None:
                        db.conn.execute("UPDATE artifacts SET created_at = ? WHERE artifact_id = ?", (t, art_id))
            db.update_run_status(run_id, status, **_summary(rows), **(
                {"seed_status": run.get("status")} if run.get("status") != status else {}))
            report.imported.append((src_id, run_id, ours))
    except BaseException:
        for run_id in created:  # all or nothing: a failed import leaves no half-imported runs
            db.delete_run(run_id)
        raise
    return report


def _write_points(db, run_id: int, rows: list[tuple[str, int, float, float, int | None]]) -> int:
    """Write one run's points with their own wall times (last write wins per name and step);
    returns how many seed rows they came from."""
    last: dict[tuple[str, int], tuple[float, float]] = {}
    for name, step, value, wall, epoch in rows:
        last[(name, step)] = (value, wall)
        if epoch is not None:
            last[("epoch", step)] = (float(epoch), wall)
    by_step: dict[tuple[int, float], dict[str, float]] = {}
    for (name, step), (value, wall) in last.items():
        by_step.setdefault((step, wall), {})[name] = value
    db.flush()
    for (step, wall), values in sorted(by_step.items(), key=lambda kv: (kv[0][0], _nan_last(kv[0][1]))):
        db.log_metrics(run_id, values, step, wall_time=wall)
    db.flush()
    return len(rows)


def _elapsed(rows: list[tuple], start: float | None) -> list[tuple[str, int, float, float, None]]:
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


def _summary(rows: list[tuple[str, int, float, float, int | None]]) -> dict[str, Any]:
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


def _already_imported(db, sha: str) -> set[int]:
    """Source run ids already imported from a file with this sha256."""
    if not sha:
        return set()
    out = set()
    for (info,) in db.conn.execute("SELECT run_info_json FROM runs WHERE run_info_json LIKE ?", (f"%{sha}%",)):
        d = json.loads(info) if info else {}
        if d.get("source_sha256") == sha and d.get("source_run_id") is not None:
            out.add(int(d["source_run_id"]))
    return out

"""The metric points of the experiments database: the buffered writer and the readers.

A mixin of ExperimentDB (experiment_db.py), which supplies `conn`, `path`, `resolve_run`
and the buffer attributes. Metrics are buffered in memory and written in one transaction
per `flush()` (called on evaluate, before each checkpoint and on close, and automatically
every `flush_rows` points or `flush_s` seconds), so logging never waits on the disk.

Each flush writes both tables of db_schema.py: the long `metrics` rows (one per run, name
and step: the writer replaces a point logged again, the last write wins) and one
`metric_blocks` row per (run, name) with the points packed as arrays, which `get_metrics`
reads.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from utils.training.tracking.db_schema import Transaction


def _is_number(v: object) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


class MetricPoints:
    """log_metric(s) / flush / truncate_after / get_metrics / compare_runs / get_best_run."""

    conn: sqlite3.Connection
    flush_rows: int  # points buffered before a flush
    flush_s: float  # seconds between automatic flushes

    def _init_metric_points(self, flush_rows: int, flush_s: float) -> None:
        self.flush_rows, self.flush_s = flush_rows, flush_s
        # (run_id, step, wall_time, {name: value}) per log_metrics call; _buffered counts points.
        self._buffer: list[tuple[int, int, float, dict[str, float]]] = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._last_step: dict[int, int] = {}  # run_id -> highest step stored (see _logged_again)
        self._next_step: dict[tuple[int, str], int] = {}  # seed log_metric without step or epoch
        self._epoch_at: dict[tuple[int, int], int] = {}  # (run_id, step) -> epoch already stored

    def _forget_buffered(self, run_id: int) -> None:
        """Drop the unflushed points of a run being deleted."""
        self._buffer = [e for e in self._buffer if e[0] != run_id]
        self._last_step.pop(run_id, None)
        self._buffered = sum(len(e[3]) for e in self._buffer)

    # -- writing -------------------------------------------------------------------
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

    def log_metrics(self, run_id: int, metrics: Mapping[str, float], step: int, *,
                    wall_time: float | None = None) -> None:
        """Buffer one step's values; written at the next flush. Non-numbers are an error.
        wall_time: unix seconds of the points (default now; an import keeps the source's)."""
        try:
            values = {k: float(v) for k, v in metrics.items()}
        except (TypeError, ValueError) as e:
            bad = {k: v for k, v in metrics.items() if not _is_number(v)}
            raise TypeError(f"metric values must be numbers; got {bad!r}") from e
        for name in values:
            if not isinstance(name, str) or not name:
                raise ValueError(f"metric names must be non-empty strings, got {name!r}")
        if values:
            self._buffer.append((run_id, int(step), time.time() if wall_time is None else wall_time, values))
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
            with Transaction(self.conn):
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
        run_id = self.resolve_run(run)
        self.flush()
        self._last_step.pop(run_id, None)
        with Transaction(self.conn):
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

    # -- reading -------------------------------------------------------------------
    def get_metrics(self, run: int | str, name: str | None = None) -> pd.DataFrame:
        """Columns step, metric_name, value, wall_time, then the seed's metric_id, run_id,
        epoch (the "epoch" metric at that step, else NaN) and timestamp (UTC); sorted by
        metric_name then step. A seed name ("val/loss") with no points reads ours ("val_loss")."""
        from utils.training.tracking.seed_db import SEED_TO_OURS, add_seed_columns

        run_id = self.resolve_run(run)
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
        run_id = self.resolve_run(run)
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
            run_id = self.resolve_run(run)
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

"""MetricStore: the metric points of one experiments database, owned by ExperimentDB.

Points are checked when they are logged (run id, step, value: a bad point raises at its
call, naming what is wrong, and is not kept), buffered in memory and written in one
transaction per `flush()` (called on evaluate, before each checkpoint and on close, and
automatically every `flush_rows` points or `flush_s` seconds), so logging never waits on
the disk. A flush that fails keeps its points in the buffer: the next flush writes them.

Each flush writes both tables of db_schema.py: the long `metrics` rows (one per run, name
and step: the writer replaces a point logged again, the last write wins) and one
`metric_blocks` row per (run, name) with the points packed as arrays, which `read` uses.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from utils.training.tracking.db_schema import Transaction

MAX_STEP = 2**63 - 1  # SQLite INTEGER and our int64 step arrays


class RunNotFoundError(KeyError, ValueError):
    """No run with that id or name (a KeyError for lookups, a ValueError for bad input)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


def check_step(step: object, what: str = "step") -> int:
    """`step` as an int in [0, 2**63 - 1]; TypeError / ValueError naming `what` otherwise."""
    if type(step) is int and 0 <= step <= MAX_STEP:  # the usual case, first
        return step
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"{what} must be a whole number (int), got {step!r} ({type(step).__name__}); "
                        "a float, NaN or inf is refused")
    if not 0 <= int(step) <= MAX_STEP:
        raise ValueError(f"{what} must be in [0, 2**63 - 1], got {int(step)}")
    return int(step)


def _is_number(v: object) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


class MetricStore:
    """add / flush / forget / truncate_after / read / names / best for one connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path, flush_rows: int, flush_s: float):
        self.conn, self.path = conn, path
        self.flush_rows, self.flush_s = flush_rows, flush_s  # points; seconds
        # (run_id, step, wall_time, {name: value}) per add call; _buffered counts points.
        self._buffer: list[tuple[int, int, float, dict[str, float]]] = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._last_step: dict[int, int] = {}  # run_id -> highest step stored (see _logged_again)
        self._runs: set[int] = set()  # run ids known to be in the runs table

    # -- writing -------------------------------------------------------------------
    def check_run(self, run_id: object) -> int:
        """`run_id` as an int naming a run of this database; RunNotFoundError otherwise."""
        if run_id in self._runs and type(run_id) is int:
            return run_id
        if isinstance(run_id, bool) or not isinstance(run_id, (int, np.integer)):
            raise RunNotFoundError(f"run_id must be an int (from log_run), got {run_id!r} "
                                   f"({type(run_id).__name__})")
        if self.conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (int(run_id),)).fetchone() is None:
            raise RunNotFoundError(f"no run {int(run_id)} in {self.path} (log_run first; list_runs() shows "
                                   f"the runs)")
        self._runs.add(int(run_id))
        return int(run_id)

    def add(self, run_id: int, metrics: Mapping[str, float], step: int, wall_time: float | None = None) -> None:
        """Buffer one step's values after checking them; written at the next flush."""
        if type(run_id) is not int or run_id not in self._runs:  # the usual case costs two tests
            run_id = self.check_run(run_id)
        if type(step) is not int or not 0 <= step <= MAX_STEP:
            step = check_step(step)
        try:
            values = {k: float(v) for k, v in metrics.items()}
        except (TypeError, ValueError) as e:
            bad = {k: v for k, v in metrics.items() if not _is_number(v)}
            raise TypeError(f"metric values must be numbers; got {bad!r}") from e
        for name in values:
            if not isinstance(name, str) or not name:
                raise ValueError(f"metric names must be non-empty strings, got {name!r}")
        if values:
            self._buffer.append((run_id, step, time.time() if wall_time is None else float(wall_time), values))
            self._buffered += len(values)
        if self._buffered >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write the buffered points in one transaction (long rows + one block per run and name).
        On an error the points stay buffered, except those of a run deleted meanwhile (by
        another connection), which are dropped and named in the KeyError raised."""
        self._last_flush = time.monotonic()
        entries, self._buffer, self._buffered = self._buffer, [], 0
        if not entries:
            return
        try:
            self._write(entries)
        except sqlite3.IntegrityError as e:
            gone = {rid for rid in {en[0] for en in entries}
                    if self.conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (rid,)).fetchone() is None}
            kept = [en for en in entries if en[0] not in gone]
            self._keep(kept)
            if not gone:
                raise
            self._runs -= gone
            dropped = sum(len(en[3]) for en in entries) - sum(len(en[3]) for en in kept)
            self.flush()
            raise RunNotFoundError(f"{dropped} metric point(s) of run_id(s) {sorted(gone)} not written: the "
                                   f"run(s) were deleted from {self.path} after the points were logged") from e
        except BaseException:
            self._keep(entries)
            raise
        for rid, step, _, _ in entries:
            self._last_step[rid] = max(self._last_step.get(rid, -1), step)

    def _keep(self, entries: list) -> None:
        """Put `entries` back at the head of the buffer (a flush that could not write them)."""
        self._buffer[:0] = entries
        self._buffered = sum(len(en[3]) for en in self._buffer)

    def _write(self, entries: list) -> None:
        rows = [(rid, n, s, v, w) for rid, s, w, d in entries for n, v in d.items()]
        again = self._logged_again(entries)  # {run_id: highest step already in the table}, usually empty
        if again:
            rows = list({(r[0], r[1], r[2]): r for r in rows}.values())  # within this flush, the last write wins
        # Entries with the same run and the same names become one (steps x names) matrix.
        groups: dict[tuple, list] = {}
        for en in entries:
            groups.setdefault((en[0], tuple(en[3])), []).append(en)
        blocks = []
        for (run_id, names), g in groups.items():
            steps = np.array([en[1] for en in g], dtype=np.int64)
            walls = np.array([en[2] for en in g], dtype=np.float64).tobytes()
            vals = np.array([list(en[3].values()) for en in g], dtype=np.float64)
            first, last, sb = int(steps.min()), int(steps.max()), steps.tobytes()
            for j, name in enumerate(names):
                blocks.append((run_id, name, first, last, len(g), sb, vals[:, j].tobytes(), walls))
        with Transaction(self.conn):
            if again:  # a point logged again replaces its row: one row per (run, name, step)
                self.conn.executemany("DELETE FROM metrics WHERE run_id = ? AND name = ? AND step = ?",
                                      [r[:3] for r in rows if r[2] <= again.get(r[0], -1)])
            self.conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", rows)
            self.conn.executemany("INSERT INTO metric_blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", blocks)

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
                stored = self.last_step(rid)
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
                again[rid] = self.last_step(rid)
        return again

    def last_step(self, run_id: int) -> int:
        """The highest step of `run_id` in the table (-1: none), from the indexed blocks."""
        if run_id not in self._last_step:
            row = self.conn.execute("SELECT MAX(last_step) FROM metric_blocks WHERE run_id = ?", (run_id,)).fetchone()
            self._last_step[run_id] = -1 if row[0] is None else int(row[0])
        return self._last_step[run_id]

    def forget(self, run_id: int) -> None:
        """Drop the unflushed points of a run being deleted."""
        self._buffer = [en for en in self._buffer if en[0] != run_id]
        self._buffered = sum(len(en[3]) for en in self._buffer)
        self._last_step.pop(run_id, None)
        self._runs.discard(run_id)

    def truncate_after(self, run_id: int, step: int) -> None:
        """Drop the points and step artifacts of `run_id` after `step` (a run resumed from
        the checkpoint at `step` logs them again)."""
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
    def read(self, run_id: int, name: str | None = None) -> pd.DataFrame:
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
                # A step written twice (logged again, or a resume): the last write wins.
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

    def names(self, run_id: int) -> list[str]:
        self.flush()
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT name FROM metric_blocks WHERE run_id = ? ORDER BY name", (run_id,))]

    def best(self, name: str, mode: str) -> tuple[int, float, int] | None:
        """(run_id, best value, its first step) over the runs that logged `name` (lowest for
        mode "min", highest for "max"; ties: the lowest run_id), or None when none did."""
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.flush()
        agg, order = ("MIN", "ASC") if mode == "min" else ("MAX", "DESC")  # from the fixed pair above
        row = self.conn.execute(
            f"SELECT run_id, {agg}(value) AS best FROM metrics WHERE name = ? AND value IS NOT NULL "
            f"GROUP BY run_id ORDER BY best {order}, run_id LIMIT 1", (name,)).fetchone()
        if row is None:
            return None
        at = self.read(row[0], name)
        steps = at["step"][at["value"] == row[1]]
        return int(row[0]), float(row[1]), int(steps.iloc[0]) if len(steps) else -1

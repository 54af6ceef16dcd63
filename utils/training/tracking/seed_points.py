"""One seed run's metric points as columns: the streaming half of `runs import`.

The rules are seed_db.py's (EpochAxis, place_on_steps, split_collisions, write_points,
elapsed, summary); this module applies them to a whole run without a Python object per
point, so a run of 500,000 points costs tens of MB, not the ~1 KB per point of a list of
row dicts. The run's rows are read from a cursor in chunks (fetchmany) into typed arrays
(8 bytes per column and point), placed on the step axis and split at collisions with
numpy, and written through ExperimentDB.log_metrics in step order, one slice at a time.
"""

from __future__ import annotations

import math
import sqlite3
from array import array
from dataclasses import dataclass, field

import numpy as np

from utils.training.tracking import seed_db
from utils.training.tracking.seed_db import SEED_TO_OURS

CHUNK = 5_000  # rows per fetchmany (a chunk of rows as tuples: ~1.5 MB)
WINDOW = 50_000  # points gathered and sorted at a time when writing (a few MB)


@dataclass
class RunPoints:
    """The good metric rows of one seed run, in the source's row order. step and epoch are -1
    where the row had none; wall is NaN where its timestamp was missing or unreadable."""

    names: list[str] = field(default_factory=list)  # code -> metric name (seed names and ours)
    seed: array = field(default_factory=lambda: array("q"))  # code of the seed's name
    step: array = field(default_factory=lambda: array("q"))
    epoch: array = field(default_factory=lambda: array("q"))
    value: array = field(default_factory=lambda: array("d"))
    wall: array = field(default_factory=lambda: array("d"))  # unix s
    rows_read: int = 0
    bad: list[str] = field(default_factory=list)  # rows skipped, each with why
    _codes: dict[str, int] = field(default_factory=dict)

    def code(self, name: str) -> int:
        if name not in self._codes:
            self._codes[name] = len(self.names)
            self.names.append(name)
        return self._codes[name]

    def __len__(self) -> int:
        return len(self.step)


def read_points(cur: sqlite3.Cursor, check, chunk: int = CHUNK) -> RunPoints:
    """Rows (metric_name, value, step, epoch, timestamp) of an executed cursor -> RunPoints.
    `check` is seed_import.check_point: rows the fast path does not take go through it, so a
    bad row is skipped with its words."""
    pts = RunPoints()
    limit = 2**62
    good_names: dict[str, int] = {}  # name -> its code, for names already checked
    last_ts, last_wall = object(), math.nan
    seed, step_a, epoch_a, value_a, wall_a = pts.seed, pts.step, pts.epoch, pts.value, pts.wall
    while rows := cur.fetchmany(chunk):
        pts.rows_read += len(rows)
        for name, value, step, epoch, ts in rows:
            code = good_names.get(name) if type(name) is str else None
            if (code is None or not (step is None or (type(step) is int and 0 <= step < limit))
                    or not (epoch is None or (type(epoch) is int and 0 <= epoch < limit))
                    or not (value is None or type(value) is float)):
                p, why = check({"metric_name": name, "value": value, "step": step, "epoch": epoch})
                if p is None:
                    pts.bad.append(why)
                    continue
                code = good_names[name] = pts.code(name)
                value, step, epoch = p["value"], p["step"], p["epoch"]
            if ts != last_ts:
                t = seed_db.timestamp(ts)
                last_ts, last_wall = ts, math.nan if t is None else t
            seed.append(code)
            step_a.append(-1 if step is None else step)
            epoch_a.append(-1 if epoch is None else epoch)
            value_a.append(math.nan if value is None else value)
            wall_a.append(last_wall)
    return pts


@dataclass
class PlacedRun:
    """A run's points after placement and collisions: the rows kept (one per name and step)."""

    names: list[str]
    code: np.ndarray  # our name's code (or the seed's, where ours was taken at that step)
    step: np.ndarray
    value: np.ndarray
    wall: np.ndarray
    epoch: np.ndarray
    placed: int  # epoch-only points given a step
    as_seed: int  # kept under the seed's name
    dropped: list[str]


def place(pts: RunPoints) -> PlacedRun:
    """place_on_steps then split_collisions (seed_db.py), on columns."""
    seed, step, epoch = _col(pts.seed, np.int64), _col(pts.step, np.int64).copy(), _col(pts.epoch, np.int64)
    ours_of = np.array([pts.code(SEED_TO_OURS.get(n, n)) for n in list(pts.names)], dtype=np.int64)
    ours = ours_of[seed] if len(seed) else seed
    names = pts.names
    # EpochAxis from aggregates: the highest step of each epoch, the epochs, the highest step.
    axis = seed_db.EpochAxis()
    has_step, has_epoch = step >= 0, epoch >= 0
    both = has_step & has_epoch
    if both.any():
        e, s = epoch[both], step[both]
        if e.max() < 2**20:  # the usual epochs: one slot each, no sort
            last = np.full(int(e.max()) + 1, -1, dtype=np.int64)
            np.maximum.at(last, e, s)
            for ep in np.nonzero(last >= 0)[0].tolist():
                axis.saw(int(last[ep]), ep)
        else:
            order = np.lexsort((s, e))
            e, s = e[order], s[order]
            end = np.r_[e[1:] != e[:-1], True]
            for ep, st in zip(e[end].tolist(), s[end].tolist()):
                axis.saw(st, ep)
        del e, s
    for ep in np.unique(epoch[has_epoch]).tolist():
        axis.saw(None, ep)
    if has_step.any():
        axis.saw(int(step[has_step].max()), None)
    only_epoch = ~has_step & has_epoch
    placed = int(only_epoch.sum())
    if placed:
        eps, inv = np.unique(epoch[only_epoch], return_inverse=True)
        step[only_epoch] = np.array([axis.step_for(ep) for ep in eps.tolist()], dtype=np.int64)[inv]
    if (~has_step & ~has_epoch).any():  # neither: this metric's own sequence (rare: a loop in Python)
        counters: dict[int, int] = {}
        for i, (c, s) in enumerate(zip(ours.tolist(), step.tolist())):
            if s < 0:
                s = step[i] = counters.get(c, 0)
            counters[c] = s + 1
    value, wall = _col(pts.value, np.float64), _col(pts.wall, np.float64)
    final, as_seed, dropped = _split_collisions(names, seed, ours, step, value)
    if not dropped:  # the usual run: views of the columns read, no copy
        return PlacedRun(names, final, step, value, wall, epoch, placed, as_seed, dropped)
    keep = final >= 0
    return PlacedRun(names, final[keep], step[keep], value[keep], wall[keep], epoch[keep], placed, as_seed, dropped)


def _col(a: array, dtype) -> np.ndarray:
    return np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype)


def _split_collisions(names, seed, ours, step, value) -> tuple[np.ndarray, int, list[str]]:
    """seed_db.split_collisions' rule -> (the code each row is kept under, -1: dropped; how
    many kept under the seed name; the dropped ones described). Rows whose (name, step) is
    met by no other row, and is no other row's fallback, keep their name: only the rows of
    the keys that meet (and their fallbacks, to a fixed point) go through the rule in order."""
    if not len(step):
        return ours, 0, []
    width = int(step.max()) + 1
    if (int(ours.max()) + 1) * width < 2**62:  # (name, step) as one int64: one sort of 8 bytes a row
        k = ours * width + step
        k.sort()
        dup = k[1:] == k[:-1]
        keys = set(zip((k[1:][dup] // width).tolist(), (k[1:][dup] % width).tolist()))
        del k
    else:
        order = np.lexsort((step, ours))
        c, s = ours[order], step[order]
        del order
        dup = (c[1:] == c[:-1]) & (s[1:] == s[:-1])
        keys = set(zip(c[1:][dup].tolist(), s[1:][dup].tolist()))
    if not keys:
        return ours, 0, []
    final = ours.copy()
    while True:
        rows = _rows_of(keys, ours, step)
        fallback = rows & (seed != ours)
        more = set(zip(seed[fallback].tolist(), step[fallback].tolist())) - keys
        if not more:
            break
        keys |= more
    taken: dict[tuple[int, int], float] = {}  # key -> value of the row kept there
    as_seed, dropped = 0, []
    for i in np.nonzero(rows)[0].tolist():
        name, sd, st, v = int(ours[i]), int(seed[i]), int(step[i]), float(value[i])
        if (name, st) not in taken:
            taken[(name, st)] = v
        elif sd != name and (sd, st) not in taken:
            taken[(sd, st)] = v
            final[i] = sd
            as_seed += 1
        else:
            final[i] = -1
            dropped.append(f"{names[sd]} = {v!r} at step {st}: {names[name]} already has {taken[(name, st)]!r} there")
    return final, as_seed, dropped


def _rows_of(keys: set[tuple[int, int]], code: np.ndarray, step: np.ndarray) -> np.ndarray:
    mask = np.zeros(len(step), dtype=bool)
    by_code: dict[int, list[int]] = {}
    for c, s in keys:
        by_code.setdefault(c, []).append(s)
    for c, steps in by_code.items():
        mask |= (code == c) & np.isin(step, np.array(steps, dtype=np.int64))
    return mask


def write(db, run_id: int, run: PlacedRun, start: float | None, window: int | None = None) -> int:
    """seed_db.write_points(rows, seed_db.elapsed(rows, start), missing_wall=start or 0.0) on
    columns: the kept points, the epoch of each step and elapsed_s where the run has no point
    of that name and step, logged in (step, wall) order; returns how many points.
    A window of steps at a time (about `window` points, default WINDOW): what is per step
    (the epoch, elapsed_s, the order) is worked out on that window's points alone."""
    window = window or WINDOW
    names = list(run.names)
    code_of = {n: i for i, n in enumerate(names)}
    logged_epoch, logged_elapsed = code_of.get("epoch", -1), code_of.get("elapsed_s", -1)
    ec, xc = _code(names, code_of, "epoch"), _code(names, code_of, "elapsed_s")
    firsts = np.sort(run.step)[::window]
    cuts = np.unique(firsts).tolist()
    del firsts
    spans = list(zip(cuts, [*cuts[1:], None]))
    t0 = start if start is not None else math.inf  # elapsed_s counts from the run's start or
    for lo, hi in spans:  # the earliest step's latest wall time, whichever is first
        latest = _latest(*_window(run, lo, hi, ("step", "wall")))[1]
        if len(latest):
            t0 = min(t0, float(latest.min()))
    db.flush()
    group: dict[str, float] = {}
    at: tuple[int, float] | None = None
    written = 0
    for lo, hi in spans:
        code, step, value, wall, epoch = _window(run, lo, hi, ("code", "step", "value", "wall", "epoch"))
        wall_raw, wall = wall, np.where(np.isnan(wall), start or 0.0, wall)
        parts = [(code, step, value, wall)]
        with_epoch = epoch >= 0
        if with_epoch.any():  # the first point's epoch at each step, unless the run logged "epoch" there
            steps, first = np.unique(step[with_epoch], return_index=True)
            free = ~np.isin(steps, step[code == logged_epoch])
            parts.append((np.full(int(free.sum()), ec), steps[free], epoch[with_epoch][first][free].astype(np.float64),
                          wall[with_epoch][first][free]))
        steps, latest = _latest(step, wall_raw)
        if len(steps):  # elapsed_s: the step's latest wall time since t0
            free = ~np.isin(steps, step[code == logged_elapsed])
            parts.append((np.full(int(free.sum()), xc), steps[free], latest[free] - t0, latest[free]))
        code, step, value, wall = (np.concatenate([p[k] for p in parts]) for k in range(4))
        order = np.lexsort((wall, step))  # stable: a step's points keep their order
        written += len(order)
        for c, s, v, w in zip(code[order].tolist(), step[order].tolist(), value[order].tolist(),
                              wall[order].tolist()):
            if (s, w) != at:
                if group:
                    db.log_metrics(run_id, group, at[0], wall_time=at[1])
                group, at = {}, (s, w)
            group[names[c]] = v
    if group:
        db.log_metrics(run_id, group, at[0], wall_time=at[1])
    db.flush()
    return written


def _window(run: PlacedRun, lo: int, hi: int | None, columns: tuple[str, ...]) -> list[np.ndarray]:
    """The columns of the points with lo <= step < hi (hi None: no upper end)."""
    idx = np.flatnonzero((run.step >= lo) & (run.step < hi) if hi is not None else run.step >= lo)
    return [getattr(run, c)[idx] for c in columns]


def _latest(step: np.ndarray, wall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(steps, the latest wall time at each) of the points with a wall time."""
    timed = ~np.isnan(wall)
    steps, inv = np.unique(step[timed], return_inverse=True)
    latest = np.full(len(steps), -np.inf)
    np.maximum.at(latest, inv, wall[timed])
    return steps, latest


def _code(names: list[str], code_of: dict[str, int], name: str) -> int:
    if name not in code_of:
        code_of[name] = len(names)
        names.append(name)
    return code_of[name]


def summary(run: PlacedRun) -> dict:
    """seed_db.summary on columns: final step, best val loss and its step, final train loss."""
    out: dict = {"final_step": int(run.step.max()) if len(run.step) else None}
    codes = {n: i for i, n in enumerate(run.names)}
    val = (run.code == codes.get("val_loss", -1)) & ~np.isnan(run.value)
    if val.any():
        best = float(run.value[val].min())
        out.update(best_val_loss=best, best_step=int(run.step[val][run.value[val] == best].min()))
    train = run.code == codes.get("train_loss", -1)
    if train.any():
        out["final_train_loss"] = float(run.value[train][np.argmax(run.step[train])])
    return out

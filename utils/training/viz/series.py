"""What a panel plots, read from one `RunRecord` (tracking/run_log.py): a metric's points,
the perplexity (stored, else exp(loss): the one fallback), moving averages over windows the
run really has, the clipping threshold, the wall time. No drawing here (panels.py draws).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from utils.training.throughput import run_throughput
from utils.training.tracking.run_record import RunRecord

MA_WINDOW = 50  # steps in the moving average of loss and accuracy (when the run is long enough)
# exp(50) ~ 5e21: a loss past 50 nats/token is a diverged run; its perplexity is drawn at that cap.
PERPLEXITY_MAX_LOSS = 50.0


def points(rec: RunRecord, column: str, frame: str = "train") -> tuple[pd.Series, pd.Series] | None:
    """(steps, values) of one metric with its unmeasured rows dropped; None when never measured."""
    if rec.col(column, frame) is None:
        return None
    d = getattr(rec, frame).dropna(subset=[column])
    return d["step"], d[column]


def derived_note(rec: RunRecord, column: str) -> str:
    """' (derived)' for a column the reader computed rather than the run measured."""
    return " (derived)" if column in rec.derived else ""


def run_seconds(rec: RunRecord) -> float | None:
    """The run's wall time: the trainer's total (database/run log summary), else the last
    logged elapsed_s. The printed summary line, the progress bar, the dashboard and the
    comparison all show this one number."""
    total = rec.summary.get("total_time")
    if total is not None and total == total:
        return float(total)
    elapsed = rec.col("elapsed_s")
    return float(elapsed.dropna().iloc[-1]) if elapsed is not None else None


def perplexity(loss: float, stored: float | None = math.nan) -> float:
    """The perplexity to show: the value the run stored (the metrics tracker logs
    train_perplexity and val_perplexity), else exp(loss), capped at PERPLEXITY_MAX_LOSS.
    The one fallback, for runs that did not store it (older logs, a hand-driven loop)."""
    if stored is not None and stored == stored:
        return float(stored)
    if loss is None or loss != loss:
        return math.nan
    return math.exp(min(float(loss), PERPLEXITY_MAX_LOSS))


def perplexity_points(rec: RunRecord, frame: str = "train") -> tuple[pd.Series, pd.Series] | None:
    """(steps, perplexity) of the train or eval frame (see `perplexity`); None without loss or perplexity."""
    prefix = "train" if frame == "train" else "val"
    df = getattr(rec, frame)
    if rec.col(f"{prefix}_loss", frame) is None and rec.col(f"{prefix}_perplexity", frame) is None:
        return None
    nan = pd.Series(math.nan, index=df.index)
    loss, stored = df.get(f"{prefix}_loss", nan), df.get(f"{prefix}_perplexity", nan)
    ppl = pd.Series([perplexity(lo, st) for lo, st in zip(loss, stored)], index=df.index, dtype=float)
    keep = ppl.notna()
    return df["step"][keep], ppl[keep]


# -- moving averages that exist in the run -------------------------------------------

def moving_average(steps, values, window_steps: int = MA_WINDOW) -> np.ndarray:
    """Mean of the values logged in the last `window_steps` steps (a step window, not a record window)."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    # Prefix sums of the non-NaN values and their counts; steps are ascending, so each
    # window is the index range (first step > s - window, this record]: O(n log n), not O(n^2).
    ok = ~np.isnan(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    lo = np.searchsorted(steps, steps - window_steps, side="right")
    hi = np.searchsorted(steps, steps, side="right")
    n = counts[hi] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[hi] - sums[lo]) / np.maximum(n, 1), np.nan)


def ma_window(steps, window_steps: int = MA_WINDOW) -> int:
    """The moving-average window this run really has: MA_WINDOW steps when the run spans at
    least twice that, else a quarter of its span; 0 (not drawn) when that holds fewer than
    3 logged points."""
    steps = np.asarray(steps, float)
    if steps.size < 3:
        return 0
    span = float(steps[-1] - steps[0])
    gap = float(np.median(np.diff(steps))) or 1.0
    window = window_steps if span >= 2 * window_steps else int(span // 4)
    return window if window >= 3 * gap else 0


def record_throughput(rec) -> float:
    """run_throughput of a RunRecord: its last tokens_seen over its wall time (series.run_seconds)."""
    tokens = rec.col("tokens_seen")
    seen = rec.summary.get("tokens_seen")
    if seen is None and tokens is not None and len(tokens.dropna()):
        seen = float(tokens.dropna().iloc[-1])
    return run_throughput(seen, run_seconds(rec))

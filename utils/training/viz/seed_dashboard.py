"""TrainingDashboard.plot for the seed notebook's metrics frame (MetricsTracker.get_summary():
one row per epoch, columns epoch, train/loss, val/loss, train/accuracy, val/accuracy,
learning_rate, gradient_norm, epoch_duration, system/gpu_memory_mb, ...).

The frame becomes a run record on an epoch axis (names mapped as in seed_db.SEED_TO_OURS)
and is drawn by the same six panels as every run; where accuracy was logged and throughput
was not, the throughput panel shows accuracy."""

from __future__ import annotations

import pandas as pd

from utils.training.tracking.seed_db import SEED_TO_OURS
from utils.training.viz.style import PALETTE


def plot_frame(dash, df: pd.DataFrame, config: dict | None, title: str | None):
    from utils.training.viz.dashboard import TrainingDashboard

    if not isinstance(df, pd.DataFrame) or df.empty:
        raise ValueError("plot() needs a non-empty DataFrame (MetricsTracker.get_summary(), or a frame with "
                         "a step column)")
    by_epoch = "step" not in df.columns
    if by_epoch:
        if "epoch" not in df.columns:
            raise ValueError(f"plot() needs an 'epoch' or 'step' column; the frame has {list(df.columns)}")
        df = df.rename(columns={**SEED_TO_OURS, "epoch": "step"})
        if "system/gpu_memory_mb" in df:
            df["memory_peak_gb"] = df.pop("system/gpu_memory_mb") / 1024.0
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    built = TrainingDashboard.from_dataframe(df, config=cfg, name=title or cfg.get("run_name") or "run")
    dash.record = built.record
    fig = dash.figure()
    if dash.figsize:
        fig.set_size_inches(*dash.figsize)
    if by_epoch:  # the header names the run (title), and counts epochs, not steps
        fig.suptitle(dash.header().replace(" at step ", " at epoch ").replace(
            f" · {int(df['step'].max())} steps ·", f" · {len(df)} epochs ·"), fontsize=11)
    axes = fig.axes
    rec = dash.record
    has_acc = rec.col("train_accuracy") is not None or rec.col("val_accuracy", "eval") is not None
    if has_acc and rec.col("tokens_per_sec") is None:
        ax = axes[4]
        ax.clear()
        ax.set_title("Accuracy")
        if rec.col("train_accuracy") is not None:
            d = rec.train.dropna(subset=["train_accuracy"])
            ax.plot(d["step"], d["train_accuracy"], color=PALETTE["train"], label="train")
        if rec.col("val_accuracy", "eval") is not None:
            d = rec.eval.dropna(subset=["val_accuracy"])
            ax.plot(d["step"], d["val_accuracy"], "o-", color=PALETTE["val"], ms=4, label="val")
        ax.set_ylabel("next-token accuracy")
        ax.set_xlabel("step")
        ax.legend(loc="lower right")
    if by_epoch:
        for ax in axes:
            if ax.get_xlabel() == "step":
                ax.set_xlabel("epoch")
                ax.xaxis.get_major_locator().set_params(integer=True)
    return fig

"""Metrics frames as run records, for TrainingDashboard.from_dataframe and the seed
notebook's `TrainingDashboard.plot(metrics_df, config, title)`.

The seed's frame is MetricsTracker.get_summary(): one row per epoch, columns epoch,
train/loss, val/loss, train/accuracy, val/accuracy, learning_rate, gradient_norm,
epoch_duration, system/gpu_memory_mb, ... It becomes a run record on an epoch axis (names
mapped as in seed_db.SEED_TO_OURS) and is drawn by the same six panels as every run."""

from __future__ import annotations

import pandas as pd

from utils.training.tracking.run_record import RunRecord
from utils.training.tracking.seed_db import SEED_TO_OURS
from utils.training.viz.panels import epoch_axes


def record_from_frame(df: pd.DataFrame, eval_df: pd.DataFrame | None = None, config: dict | None = None,
                      name: str = "run") -> RunRecord:
    """Wide frame with a `step` column; val_* columns (or `eval_df`) become the eval points."""
    df = df.sort_values("step").reset_index(drop=True)
    if eval_df is None:
        val_cols = [c for c in df.columns if c.startswith("val_")]
        eval_df = df[["step", *val_cols]].dropna(subset=val_cols, how="all") if val_cols else pd.DataFrame()
        df = df.drop(columns=val_cols)
    cfg = dict(config or {})
    return RunRecord(name=name, source="dataframe", config=cfg, train=df, eval=eval_df.reset_index(drop=True),
                     warmup_steps=cfg.get("warmup_steps") or cfg.get("warmup_iters"),
                     # this is the frame's reader: our name, or the seed's / llm-foundry's grad_clip
                     max_grad_norm=cfg["max_grad_norm"] if cfg.get("max_grad_norm") is not None else cfg.get("grad_clip"))


def plot_frame(dash, df: pd.DataFrame, config: dict | None, title: str | None):
    """Draw `dash` (a TrainingDashboard) from a metrics frame; returns the figure."""
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise ValueError("plot() needs a non-empty DataFrame (MetricsTracker.get_summary(), or a frame with "
                         "a step column)")
    by_epoch = "step" not in df.columns
    if by_epoch:
        if "epoch" not in df.columns:
            raise ValueError(f"plot() needs an 'epoch' or 'step' column; the frame has {list(df.columns)}")
        df = df.rename(columns={**SEED_TO_OURS, "epoch": "step"})
        if "system/gpu_memory_mb" in df:
            df["memory_peak_gb"] = df.pop("system/gpu_memory_mb") / 1024.0  # MiB -> GiB
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    dash.record = record_from_frame(df, config=cfg, name=title or cfg.get("run_name") or "run")
    fig = dash.figure()
    if dash.figsize:
        fig.set_size_inches(*dash.figsize)
    if by_epoch:  # the header names the run (title), and counts epochs, not steps
        fig.suptitle(dash.header().replace(" at step ", " at epoch ").replace(
            f" · {int(df['step'].max())} steps ·", f" · {len(df)} epochs ·"), fontsize=11)
        epoch_axes(fig.axes)
    return fig

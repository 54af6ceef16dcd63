"""The seed notebook's dashboard (utils.training.dashboard) over ours.

    dashboard = TrainingDashboard(figsize=(18, 12))
    fig = dashboard.plot(tracker.get_summary(), config=cfg, title="run")   # one row per epoch
    dashboard.save("training_dashboard.png", dpi=150)

`plot(df)` draws the seed's layout: a summary card (config, best epoch, best metrics, total
time) over six panels, Loss Curves, Perplexity (lower is better), Accuracy, Learning Rate
Schedule, Gradient Norms and Training Time per Epoch; a panel whose column the frame lacks
is titled "<title> (N/A)" with its axis off. The panels are the shared ones (viz/panels.py)
on an epoch axis, so a seed frame reads like every other figure here. The class is our
TrainingDashboard, so from_run / from_db / from_dataframe and figure() still draw ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from utils.training.tracking.run_record import RunRecord
from utils.training.tracking.seed_db import SEED_TO_OURS
from utils.training.viz import dashboard as _core
from utils.training.viz.dashboard import record_from_frame
from utils.training.viz.panels import (
    accuracy_panel,
    epoch_axes,
    grad_norm_panel,
    legend,
    loss_panel,
    lr_panel,
    mean_panel,
    perplexity_panel,
)
from utils.training.viz.style import PALETTE, new_figure, no_data, place_legends, save_figure

SEED_FIGSIZE = (18, 12)
REQUIRED_COLUMNS = ["epoch", "train/loss", "val/loss"]
FORMATS = (".png", ".pdf", ".svg")
GRAD_WARNING = 5.0  # the seed's gradient-explosion warning level (global L2 norm)
# Frame column -> our series name. The seed's tracker logs the pre-clip norm as
# gradients/pre_clip_norm (its dashboard's name) or gradient_norm (its log_epoch argument).
FRAME_COLUMNS = {**SEED_TO_OURS, "gradients/pre_clip_norm": "grad_norm", "epoch": "step"}
# panel title -> the frame columns that feed it (any one present: drawn; none: "(N/A)")
PANEL_COLUMNS = {
    "Loss Curves": ("train/loss", "val/loss"),
    "Perplexity (lower is better)": ("train/loss", "val/loss", "train/perplexity", "val/perplexity"),
    "Accuracy": ("train/accuracy", "val/accuracy"),
    "Learning Rate Schedule": ("learning_rate", "train/learning_rate"),
    "Gradient Norms": ("gradients/pre_clip_norm", "gradient_norm"),
    "Training Time per Epoch": ("epoch_duration",),
}


class NotPlottedError(RuntimeError, ValueError):
    """save() before plot(): the seed raised RuntimeError; a ValueError too, as ours did."""


def config_value(config: Any, name: str) -> Any:
    """`name` of a config given as a dict, an object with to_dict(), or any object (by
    attribute); 'N/A' where it has none."""
    if isinstance(config, Mapping):
        return config.get(name, "N/A")
    if callable(getattr(config, "to_dict", None)):
        return config.to_dict().get(name, "N/A")
    return getattr(config, name, "N/A")


def _as_dict(config: Any) -> dict:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    if callable(getattr(config, "to_dict", None)):
        return dict(config.to_dict())
    return {k: v for k, v in vars(config).items() if not k.startswith("_")} if hasattr(config, "__dict__") else {}


def _present(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and bool(df[column].notna().any())


def check_frame(df: Any) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"plot() takes a pandas DataFrame (MetricsTracker.get_summary()), got {type(df).__name__}")
    if df.empty:
        raise ValueError("DataFrame is empty: plot() needs one row per epoch (MetricsTracker.get_summary())")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"Missing required columns: {missing}. DataFrame must contain: {REQUIRED_COLUMNS}; "
                         f"it has {list(df.columns)}")


def record_from_epochs(df: pd.DataFrame, config: Any = None, name: str = "run") -> RunRecord:
    """The per-epoch frame as a run record whose step axis counts epochs."""
    # One series per name: a column with no value gives way to another of the same meaning.
    df = df.drop(columns=[c for c in df.columns if c in FRAME_COLUMNS and not _present(df, c)])
    if _present(df, "gradients/pre_clip_norm"):
        df = df.drop(columns=[c for c in ("gradient_norm",) if c in df.columns])
    ours = df.rename(columns=FRAME_COLUMNS)
    ours = ours.loc[:, ~ours.columns.duplicated()]
    if "system/gpu_memory_mb" in ours:
        ours["memory_peak_gb"] = ours.pop("system/gpu_memory_mb") / 1024.0  # MiB -> GiB
    cfg = {k: v for k, v in _as_dict(config).items() if k not in ("warmup_steps", "warmup_iters")}  # steps, not epochs
    return record_from_frame(ours, config=cfg, name=name)


def summary_text(df: pd.DataFrame, config: Any) -> str:
    """The seed's summary card: config, best epoch, the best epoch's metrics, total time."""
    parts = []
    if config is not None:
        parts.append(f"Config: lr={config_value(config, 'learning_rate')}, batch={config_value(config, 'batch_size')}, "
                     f"epochs={len(df)}")
    if not _present(df, "val/loss"):
        parts.append("Best Epoch: n/a (no val_loss logged)")
        return " | ".join(parts)
    best = df["val/loss"].idxmin()
    parts.append(f"Best Epoch: {int(df.loc[best, 'epoch'])} (val_loss={df.loc[best, 'val/loss']:.4f})")
    metrics = []
    if _present(df, "val/perplexity"):
        metrics.append(f"ppl={df.loc[best, 'val/perplexity']:.2f}")
    if _present(df, "val/accuracy"):
        metrics.append(f"acc={df.loc[best, 'val/accuracy']:.2%}")
    if metrics:
        parts.append(f"Best Metrics: {', '.join(metrics)}")
    if _present(df, "epoch_duration"):
        total = float(df["epoch_duration"].sum())
        parts.append(f"Total Time: {int(total // 3600)}h {int(total % 3600 // 60)}m")
    return " | ".join(parts)


def _not_available(ax, title: str) -> None:
    ax.set_title(f"{title} (N/A)")
    no_data(ax, "not tracked")
    ax.axis("off")


def _grad_panel(ax, rec: RunRecord, title: str) -> None:
    """Our gradient-norm panel, with the seed's warning band from GRAD_WARNING up when a norm exceeds it."""
    grad_norm_panel(ax, rec, title=title)
    top = float(rec.train["grad_norm"].max())
    if top > GRAD_WARNING:
        ax.axhspan(GRAD_WARNING, top * 1.1, color=PALETTE["best"], alpha=0.12, label=f"norm > {GRAD_WARNING:g}")
        legend(ax, loc="upper right")


def _time_panel(ax, rec: RunRecord, title: str) -> None:
    mean_panel(ax, rec, "epoch_time_s", PALETTE["step_time"], "seconds per epoch", "s", "epoch time not logged", title)
    ax.set_title(title)  # the average is in the legend


PANELS = {
    "Loss Curves": lambda ax, rec, title: loss_panel(ax, rec, title=title),
    "Perplexity (lower is better)": lambda ax, rec, title: perplexity_panel(ax, rec, title=title),
    "Accuracy": lambda ax, rec, title: accuracy_panel(ax, rec, title=title),
    "Learning Rate Schedule": lambda ax, rec, title: lr_panel(ax, rec, title=title),
    "Gradient Norms": _grad_panel,
    "Training Time per Epoch": _time_panel,
}


class TrainingDashboard(_core.TrainingDashboard):
    """Our TrainingDashboard with the seed's constructor, plot(df) and save() (module docstring)."""

    def __init__(self, figsize: tuple[int, int] = SEED_FIGSIZE, record: RunRecord | None = None):
        if isinstance(figsize, RunRecord):  # ours: TrainingDashboard(record[, figsize]), as from_run() calls it
            figsize, record = (record if record is not None else SEED_FIGSIZE), figsize
        if (not isinstance(figsize, (tuple, list)) or len(figsize) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in figsize)):
            raise ValueError(f"figsize must be tuple of 2 ints, got {figsize}")
        if figsize[0] <= 0 or figsize[1] <= 0:
            raise ValueError(f"figsize dimensions must be positive, got {figsize}")
        super().__init__(record, tuple(figsize))
        self.fig = None  # what plot() drew; save() writes it

    def plot(self, metrics_df: pd.DataFrame, config: Any = None, title: str = "Training Dashboard"):
        """The seed's figure of a per-epoch frame (module docstring); returns it."""
        check_frame(metrics_df)
        df = metrics_df.sort_values("epoch").reset_index(drop=True)
        rec = record_from_epochs(df, config, name=title)
        fig = new_figure(self.figsize)
        fig.suptitle(title, fontsize=14, fontweight="bold")
        grid = fig.add_gridspec(3, 3, height_ratios=(0.28, 1, 1))
        card = fig.add_subplot(grid[0, :])
        card.axis("off")
        card.text(0.5, 0.5, summary_text(df, config), ha="center", va="center", fontsize=11, wrap=True,
                  bbox={"boxstyle": "round", "facecolor": "#f2f2f2", "edgecolor": "#bbbbbb"})
        for i, (panel_title, draw) in enumerate(PANELS.items()):
            ax = fig.add_subplot(grid[1 + i // 3, i % 3])
            if any(_present(df, c) for c in PANEL_COLUMNS[panel_title]):
                draw(ax, rec, panel_title)
            else:
                _not_available(ax, panel_title)
        epoch_axes(fig.axes)
        place_legends(fig)
        self.fig = fig
        return fig

    def save(self, filepath="training_dashboard.png", dpi: int = 150):
        """The figure plot() drew, as PNG, PDF or SVG by suffix; returns the path. Built
        from a run (from_run, from_db, from_dataframe) and not plotted: our figure."""
        if self.fig is None and self.record is None:
            raise NotPlottedError("Must call plot() before save()")
        suffix = Path(filepath).suffix
        if suffix.lower() not in FORMATS:
            raise ValueError(f"Unsupported format {suffix or '(none)'} in {filepath}: use one of {', '.join(FORMATS)}")
        if self.fig is None:
            return super().save(filepath, dpi=dpi)
        return save_figure(self.fig, filepath, dpi=dpi)


__all__ = ["TrainingDashboard", "NotPlottedError", "record_from_frame", "record_from_epochs"]

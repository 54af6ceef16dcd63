"""The seven-panel training dashboard: a summary header over loss, perplexity, lr,
gradient norm, throughput/step time, memory and the system sampler's readings. Built from a RunRecord, an
ExperimentDB run or a DataFrame; saved as PNG, PDF or SVG."""

from __future__ import annotations

import math

import pandas as pd

from utils.training.tracking.readers import load_run
from utils.training.tracking.run_record import RunRecord
from utils.training.viz.panels import (
    WIDE_RANGE,  # noqa: F401 - re-exported: the loss axis rule lives in panels.py now
    accuracy_panel,
    grad_norm_panel,
    loss_panel,
    lr_panel,
    memory_panel,
    perplexity_panel,
    system_panel,
    throughput_panel,
)
from utils.training.viz.seed_dashboard import plot_frame, record_from_frame
from utils.training.viz.series import run_seconds
from utils.training.viz.style import (
    EXPORT_DPI,
    duration,
    human,
    new_figure,
    place_legends,
    save_figure,
    with_caveat,
)

PANEL_TITLES = ("Loss", "Perplexity", "Learning rate", "Gradient norm (pre-clip)", "Throughput and step time", "Memory",
                "System")


class TrainingDashboard:
    """from_run / from_db / from_dataframe, then figure() or save(). The seed notebook's form
    works too: `TrainingDashboard(figsize=(18, 12)).plot(tracker.get_summary())` then save()."""

    def __init__(self, record: RunRecord | None = None, figsize: tuple[float, float] | None = None):
        if isinstance(record, tuple):  # the seed's TrainingDashboard((18, 12))
            record, figsize = None, record
        self.record = record
        self.figsize = figsize
        self._fig = None  # the figure plot() drew; save() writes it

    @classmethod
    def from_run(cls, record) -> TrainingDashboard:
        """A RunRecord, or anything `load_run` reads (run.json, run folder, llm-foundry log)."""
        return cls(record if isinstance(record, RunRecord) else load_run(record))

    @classmethod
    def from_db(cls, db, run) -> TrainingDashboard:
        return cls(load_run(f"db:{run}", db=db))

    @classmethod
    def from_dataframe(cls, df: pd.DataFrame, eval_df: pd.DataFrame | None = None, config: dict | None = None,
                       name: str = "run") -> TrainingDashboard:
        """Wide frame with a `step` column; val_* columns (or `eval_df`) become the eval points."""
        return cls(record_from_frame(df, eval_df, config, name))

    # -- drawing -------------------------------------------------------------
    def header(self) -> str:
        rec, cfg = self.record, self.record.config
        best, best_step = rec.best_val()
        tr = rec.train
        tokens = rec.col("tokens_seen")
        seconds = run_seconds(rec)
        keys = [k for k in ("batch_size", "block_size", "learning_rate", "max_steps", "steps", "max_iters",
                            "n_layer", "n_embd", "grad_clip") if cfg.get(k) is not None]
        cfg_line = ", ".join(f"{k}={cfg[k]}" for k in keys) or "config not recorded"
        parts = [
            f"{rec.label} ({rec.status})" + (f" · {human(rec.n_params)} params" if not math.isnan(rec.n_params) else ""),
            f"best val loss {best:.4f} at step {best_step}" if best_step is not None else "no eval",
            f"{int(tr['step'].max()) if len(tr) else 0} steps",
            f"{human(float(tokens.dropna().iloc[-1]))} tokens" if tokens is not None else "tokens n/a",
            f"wall time {duration(seconds)}" if seconds is not None else "wall time n/a",
        ]
        return with_caveat(" · ".join(parts) + "\n" + cfg_line, rec.caveat)

    def figure(self):
        if self.record is None:
            raise ValueError("this TrainingDashboard has no run yet: call plot(metrics_df), or build it with "
                             "from_run(path), from_db(db, run) or from_dataframe(df)")
        rec = self.record
        fig = new_figure((17, 8))
        axes = fig.subplots(2, 4).ravel()
        axes[7].remove()  # seven panels
        fig.suptitle(self.header(), fontsize=11)
        loss_panel(axes[0], rec, title=PANEL_TITLES[0])
        perplexity_panel(axes[1], rec, title=PANEL_TITLES[1])
        lr_panel(axes[2], rec, title=PANEL_TITLES[2])
        grad_norm_panel(axes[3], rec, title=PANEL_TITLES[3])
        has_acc = rec.col("train_accuracy") is not None or rec.col("val_accuracy", "eval") is not None
        if has_acc and rec.col("tokens_per_sec") is None:  # a hand-driven loop: accuracy, not an empty panel
            accuracy_panel(axes[4], rec)
        else:
            throughput_panel(axes[4], rec, step_time=True)
        memory_panel(axes[5], rec, title=PANEL_TITLES[5])
        system_panel(axes[6], rec, title=PANEL_TITLES[6])
        place_legends(fig)
        return fig

    def save(self, path, dpi: int = EXPORT_DPI):
        """PNG, PDF or SVG by suffix; 300 dpi by default (export). After plot(), that figure."""
        return save_figure(self._fig if self._fig is not None else self.figure(), path, dpi=dpi)

    def plot(self, metrics_df: pd.DataFrame, config: dict | None = None, title: str | None = None):
        """The seed's call: the dashboard of a metrics frame (seed_dashboard.py: the seed's
        per-epoch get_summary() frame, or our wide frame with a `step` column); returns the figure."""
        self._fig = plot_frame(self, metrics_df, config, title)
        return self._fig

"""The seven-panel training dashboard: a summary header over loss, perplexity, lr,
gradient norm, throughput/step time, memory and the system sampler's readings. Built from a RunRecord, an
ExperimentDB run or a DataFrame; saved as PNG, PDF or SVG."""

from __future__ import annotations

import math

import pandas as pd

from utils.training.text import duration, human, with_caveat
from utils.training.throughput import DEFINITION, short
from utils.training.tracking.readers import load_run
from utils.training.tracking.run_record import RunRecord
from utils.training.viz.panels import (
    accuracy_panel,
    grad_norm_panel,
    loss_panel,
    lr_panel,
    memory_panel,
    perplexity_panel,
    system_panel,
    throughput_panel,
)
from utils.training.viz.series import record_throughput, run_seconds
from utils.training.viz.style import EXPORT_DPI, new_figure, notebook_dpi, place_legends, save_figure

PANEL_TITLES = ("Loss", "Perplexity", "Learning rate", "Gradient norm (pre-clip)", "Throughput and step time", "Memory",
                "System")


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
                     # this is the frame's reader: our name, or llm-foundry's grad_clip
                     max_grad_norm=cfg["max_grad_norm"] if cfg.get("max_grad_norm") is not None else cfg.get("grad_clip"))


def lr_keys(cfg: dict) -> tuple[str, ...]:
    """The learning rates a run trained at: a Muon run's muon_lr and AdamW part's lr, and
    embedding_lr where it is set (learning_rate then reaches no parameter of a Muon run)."""
    own = cfg.get("embedding_lr") not in (None, "auto")
    if cfg.get("optimizer") == "muon":
        return ("muon_lr", "embedding_lr") if own else ("muon_lr", "learning_rate")
    return ("learning_rate", "embedding_lr") if own else ("learning_rate",)


class TrainingDashboard:
    """from_run / from_db / from_dataframe, then figure() or save(). `figsize` in inches;
    None: the layout's."""

    def __init__(self, record: RunRecord | None = None, figsize: tuple[float, float] | None = None):
        self.record = record
        self.figsize = figsize

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
        keys = [k for k in ("batch_size", "block_size", *lr_keys(cfg), "max_steps", "steps", "max_iters",
                            "n_layer", "n_embd", "grad_clip") if cfg.get(k) is not None]
        cfg_line = ", ".join(f"{k}={cfg[k]}" for k in keys) or "config not recorded"
        parts = [
            f"{rec.label} ({rec.status})" + (f" · {human(rec.n_params)} params" if not math.isnan(rec.n_params) else ""),
            f"best val loss {best:.4f} at step {best_step}" if best_step is not None else "no eval",
            f"{int(tr['step'].max()) if len(tr) else 0} steps",
            f"{human(float(tokens.dropna().iloc[-1]))} tokens" if tokens is not None else "tokens n/a",
            f"wall time {duration(seconds)}" if seconds is not None else "wall time n/a",
            f"{short(record_throughput(rec))} ({DEFINITION})",
        ]
        return with_caveat(" · ".join(parts[:2]) + "\n" + " · ".join(parts[2:]) + "\n" + cfg_line, rec.caveat)

    def figure(self):
        if self.record is None:
            raise ValueError("this TrainingDashboard has no run yet: build it with from_run(path), "
                             "from_db(db, run) or from_dataframe(df)")
        rec = self.record
        # Two panels a row, 9.5 inches wide: shown 750 px wide (JupyterLab with its file browser
        # open) 9-point ticks are ~9.6 px tall (text.DISPLAY_WIDTH_PX); three a row needed 13.
        fig = new_figure(self.figsize or (9.5, 13.5))
        axes = fig.subplots(4, 2).ravel()
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
        """PNG, PDF or SVG by suffix; 300 dpi by default (export)."""
        return save_figure(self.figure(), path, dpi=dpi)

    def show(self, path, dpi: int = EXPORT_DPI) -> tuple:
        """Save the full-resolution file at `path` (300 dpi: papers, slides) and beside it
        PATH_notebook.png at about twice the notebook display width, and show that copy
        in the notebook: a 3934-px export embedded in the notebook was most of its bytes.
        -> (full path, shown path)."""
        from IPython.display import Image, display

        fig = self.figure()
        full = save_figure(fig, path, dpi=dpi)
        shown = save_figure(fig, full.with_name(f"{full.stem}_notebook.png"), dpi=notebook_dpi(fig))
        display(Image(filename=str(shown)))
        return full, shown

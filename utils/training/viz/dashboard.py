"""The six-panel training dashboard: a summary header over loss, perplexity, lr,
gradient norm, throughput/step time and memory. Built from a RunRecord, an
ExperimentDB run or a DataFrame; saved as PNG, PDF or SVG."""

from __future__ import annotations

import math

import pandas as pd

from utils.training.tracking.readers import load_run
from utils.training.tracking.run_log import _first
from utils.training.tracking.run_record import RunRecord
from utils.training.viz.analysis import run_seconds
from utils.training.viz.style import (
    EXPORT_DPI,
    PALETTE,
    duration,
    human,
    new_figure,
    no_data,
    place_legends,
    save_figure,
    with_caveat,
)

PANEL_TITLES = ("Loss", "Perplexity", "Learning rate", "Gradient norm (pre-clip)", "Throughput and step time", "Memory")
WIDE_RANGE = 20.0  # max/min loss ratio above which the loss axis goes log




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
        df = df.sort_values("step").reset_index(drop=True)
        if eval_df is None:
            val_cols = [c for c in df.columns if c.startswith("val_")]
            eval_df = df[["step", *val_cols]].dropna(subset=val_cols, how="all") if val_cols else pd.DataFrame()
            df = df.drop(columns=val_cols)
        cfg = dict(config or {})
        return cls(RunRecord(name=name, source="dataframe", config=cfg, train=df, eval=eval_df.reset_index(drop=True),
                             warmup_steps=cfg.get("warmup_steps") or cfg.get("warmup_iters")))

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
        rec, tr, ev = self.record, self.record.train, self.record.eval
        fig = new_figure((13, 8))
        axes = fig.subplots(2, 3).ravel()
        fig.suptitle(self.header(), fontsize=11)
        best, best_step = rec.best_val()

        ax = axes[0]
        ax.set_title(PANEL_TITLES[0])
        losses = []
        if rec.col("train_loss") is not None:
            ax.plot(tr["step"], tr["train_loss"], color=PALETTE["train"], label="train")
            losses.append(tr["train_loss"].dropna())
        if rec.col("val_loss", "eval") is not None:
            ax.plot(ev["step"], ev["val_loss"], "o-", color=PALETTE["val"], ms=4, label="val")
            losses.append(ev["val_loss"].dropna())
        if best_step is not None:
            ax.plot([best_step], [best], "*", color=PALETTE["best"], ms=14, label=f"best {best:.3f} @ {best_step}")
        if losses:
            lo, hi = min(s.min() for s in losses), max(s.max() for s in losses)
            if lo > 0 and hi / lo > WIDE_RANGE:
                ax.set_yscale("log")
            ax.legend(loc="upper right")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)" + (", log" if ax.get_yscale() == "log" else ""))

        ax = axes[1]
        ax.set_title(PANEL_TITLES[1])
        if rec.col("train_loss") is not None:
            ax.plot(tr["step"], tr["train_loss"].map(math.exp), color=PALETTE["train"], label="train")
            if rec.col("val_loss", "eval") is not None:
                ax.plot(ev["step"], ev["val_loss"].map(math.exp), "o-", color=PALETTE["val"], ms=4, label="val")
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel("perplexity (log)")
            ax.legend(loc="upper right")
        else:
            no_data(ax, "no loss logged")

        ax = axes[2]
        ax.set_title(PANEL_TITLES[2] + (" (derived from config)" if rec.lr_derived else ""))
        if rec.col("lr") is not None:
            ax.plot(tr["step"], tr["lr"], color=PALETTE["lr"], label="lr")
            if rec.warmup_steps:
                ax.axvspan(0, rec.warmup_steps, color=PALETTE["lr"], alpha=0.12, label=f"warmup ({rec.warmup_steps} steps)")
            ax.set_xlabel("step")
            ax.set_ylabel("learning rate")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            ax.legend(loc="upper right")
        else:
            no_data(ax, "lr not logged")

        ax = axes[3]
        ax.set_title(PANEL_TITLES[3])
        if rec.col("grad_norm") is not None:
            d = tr.dropna(subset=["grad_norm"])
            ax.plot(d["step"], d["grad_norm"], color=PALETTE["grad"], label="grad norm")
            clip = _first(rec.config, "max_grad_norm", "grad_clip")  # ours, or llm-foundry's
            if clip:
                ax.axhline(float(clip), color=PALETTE["best"], ls="--", lw=1.2, label=f"clip at {clip}")
                lo, hi = ax.get_ylim()  # keep the threshold inside the frame, not on its edge
                ax.set_ylim(min(lo, 0.9 * float(clip)), max(hi, 1.1 * float(clip)))
            ax.set_xlabel("step")
            ax.set_ylabel("global L2 norm")
            ax.legend(loc="upper right")
        else:
            no_data(ax, "grad_norm not logged")

        ax = axes[4]
        ax.set_title(PANEL_TITLES[4])
        if rec.col("tokens_per_sec") is not None:
            d = tr.dropna(subset=["tokens_per_sec"])
            ax.plot(d["step"], d["tokens_per_sec"], color=PALETTE["throughput"], label="tokens/s")
            ax.set_ylabel("tokens/s (all GPUs)")
            ax.set_xlabel("step")
            ax.set_ylim(0, float(d["tokens_per_sec"].max()) * 1.1)
            handles = ax.get_lines()
            if rec.col("step_time_ms") is not None:
                ax2 = ax.twinx()
                d2 = tr.dropna(subset=["step_time_ms"])
                ax2.plot(d2["step"], d2["step_time_ms"], color=PALETTE["step_time"], lw=1, label="step time")
                ax2.set_ylabel("step time (ms)")
                ax2.set_ylim(0, float(d2["step_time_ms"].max()) * 1.1)
                ax2.grid(False)
                handles = handles + ax2.get_lines()
            ax.legend(handles=handles, loc="best")
        else:
            no_data(ax, "throughput not logged")

        ax = axes[5]
        ax.set_title(PANEL_TITLES[5])
        from utils.training.viz.analysis import memory_panel  # one memory panel for both figures

        memory_panel(ax, rec)
        place_legends(fig)
        return fig

    def save(self, path, dpi: int = EXPORT_DPI):
        """PNG, PDF or SVG by suffix; 300 dpi by default (export). After plot(), that figure."""
        return save_figure(self._fig if self._fig is not None else self.figure(), path, dpi=dpi)

    def plot(self, metrics_df: pd.DataFrame, config: dict | None = None, title: str | None = None):
        """The seed's call: the dashboard of a metrics frame (seed_dashboard.py: the seed's
        per-epoch get_summary() frame, or our wide frame with a `step` column); returns the figure."""
        from utils.training.viz.seed_dashboard import plot_frame

        self._fig = plot_frame(self, metrics_df, config, title)
        return self._fig

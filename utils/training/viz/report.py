"""The seven-chart training report (the seed scripts' VisualizationManager), as a callback.

Events append to in-memory lists. Every `viz_interval` steps (at the first log
event at or after it) and at the end it writes, under run_dir:
  viz/step_NNNNNN.png, viz/latest.png   the seven charts
  metrics_history.json                  the logged train and eval metrics
  text_samples.json                     every sample batch (prompt, output, accuracy)
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from utils.training.engine.callbacks import TrainerCallback
from utils.training.viz.style import (
    PALETTE,
    new_figure,
    no_data,
    place_legends,
    preload,
    save_figure,
    with_caveat,
)

REPORT_TITLES = ("Loss", "Token accuracy", "Throughput", "Learning rate", "Loss vs accuracy", "Recent window",
                 "Latest text samples")
MA_WINDOW = 50  # steps in the moving average of loss and accuracy
RECENT = 200  # steps in the recent-window chart


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


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class TrainingReport(TrainerCallback):
    def __init__(self, run_dir, viz_interval: int = 500, max_samples_shown: int = 4, caveat: str = ""):
        self.run_dir = Path(run_dir)
        self.caveat = caveat  # "smoke preset: not a result" (style.caveat), in the title
        self.viz_interval = int(viz_interval)
        self.max_samples_shown = max_samples_shown
        self.history = {"train": [], "eval": []}
        self.samples: list[dict] = []
        self._next_viz = self.viz_interval
        self.written: list[Path] = []
        self._rendered_step: int | None = None
        self._rendered_counts = (0, 0, 0)

    # -- events ----------------------------------------------------------------
    def on_train_begin(self, state, control, **kwargs) -> None:
        preload()  # not at the first log step, where a Ctrl-C would land in the import
        self._next_viz = (state.step // self.viz_interval + 1) * self.viz_interval  # after a resume too

    def on_log(self, state, control, logs=None, **kwargs) -> None:
        self.history["train"].append({"step": state.step, **{k: float(v) for k, v in (logs or {}).items()
                                                             if isinstance(v, (int, float))}})
        if state.step >= self._next_viz:
            self.render(state.step)
            self._next_viz = (state.step // self.viz_interval + 1) * self.viz_interval

    def on_evaluate(self, state, control, metrics=None, **kwargs) -> None:
        self.history["eval"].append({"step": state.step, **{k: float(v) for k, v in (metrics or {}).items()}})

    def on_sample(self, state, control, samples=None, **kwargs) -> None:
        for s in samples or []:
            self.samples.append({"step": state.step, "prompt": s.get("prompt"), "output": s.get("output"),
                                 "accuracy": s.get("accuracy")})

    def on_train_end(self, state, control, **kwargs) -> None:
        seen = (len(self.history["train"]), len(self.history["eval"]), len(self.samples))
        if self.history["train"] and (self._rendered_step != state.step or seen != self._rendered_counts):
            self.render(state.step)

    # -- output ----------------------------------------------------------------
    def render(self, step: int) -> Path:
        viz = self.run_dir / "viz"
        viz.mkdir(parents=True, exist_ok=True)
        path = save_figure(self.figure(), viz / f"step_{step:06d}.png")
        shutil.copyfile(path, viz / ".latest.png.tmp")
        os.replace(viz / ".latest.png.tmp", viz / "latest.png")
        _write_json(self.run_dir / "metrics_history.json", self.history)
        _write_json(self.run_dir / "text_samples.json", self.samples)
        self.written.append(path)
        self._rendered_step = step
        self._rendered_counts = (len(self.history["train"]), len(self.history["eval"]), len(self.samples))
        return path

    def _series(self, key: str):
        rows = [r for r in self.history["train"] if key in r and not math.isnan(r[key])]
        return np.array([r["step"] for r in rows], float), np.array([r[key] for r in rows], float)

    def figure(self):
        fig = new_figure((14, 10))
        gs = fig.add_gridspec(3, 3, height_ratios=[1, 1, 0.55])
        axes = [fig.add_subplot(gs[i // 3, i % 3]) for i in range(6)] + [fig.add_subplot(gs[2, :])]
        last = int(self.history["train"][-1]["step"]) if self.history["train"] else 0
        fig.suptitle(with_caveat(f"Training report at step {last}", self.caveat), fontsize=12)
        for ax, title in zip(axes, REPORT_TITLES):
            ax.set_title(title)

        def with_ma(ax, key, color, ylabel):
            s, v = self._series(key)
            if not s.size:
                no_data(ax, f"{key} not logged")
                return
            window = ma_window(s)
            ax.plot(s, v, color=color, alpha=0.45 if window else 1.0, lw=1, label=key)
            if window:  # only a window the run really has (see ma_window)
                ax.plot(s, moving_average(s, v, window), color=color, lw=2, label=f"{window}-step moving average")
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.legend(loc="best")

        with_ma(axes[0], "train_loss", PALETTE["train"], "loss (nats/token)")
        ev = [r for r in self.history["eval"] if "val_loss" in r]
        if ev and axes[0].lines:
            axes[0].plot([r["step"] for r in ev], [r["val_loss"] for r in ev], "o", color=PALETTE["val"], label="val")
            axes[0].legend(loc="best")
        with_ma(axes[1], "train_accuracy", PALETTE["accuracy"], "next-token accuracy (fraction)")

        for ax, key, color, ylabel, log in ((axes[2], "tokens_per_sec", PALETTE["throughput"], "tokens/s (all GPUs)", False),
                                            (axes[3], "lr", PALETTE["lr"], "learning rate (log)", True)):
            s, v = self._series(key)
            if not s.size:
                no_data(ax, f"{key} not logged")
                continue
            ax.plot(s, v, color=color)
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            if log:
                ax.set_yscale("log")
            else:
                ax.set_ylim(0, v.max() * 1.1)

        ax = axes[4]
        rows = [r for r in self.history["train"] if "train_loss" in r and "train_accuracy" in r]
        if rows:
            sc = ax.scatter([r["train_accuracy"] for r in rows], [r["train_loss"] for r in rows],
                            c=[r["step"] for r in rows], cmap="viridis", s=18)
            fig.colorbar(sc, ax=ax, label="step")
            ax.set_xlabel("next-token accuracy (fraction)")
            ax.set_ylabel("loss (nats/token)")
        else:
            no_data(ax, "needs train_loss and train_accuracy")

        ax = axes[5]
        s, v = self._series("train_loss")
        g_steps, g = self._series("grad_norm")
        if s.size and s[-1] - s[0] <= RECENT:
            # The run is no longer than the window: the loss panel already shows all of it,
            # so this panel shows something else that was measured.
            if g_steps.size:
                ax.set_title("Gradient norm (pre-clip)")
                ax.plot(g_steps, g, color=PALETTE["grad"])
                ax.set_xlabel("step")
                ax.set_ylabel("global L2 norm")
            else:
                no_data(ax, f"run shorter than the {RECENT}-step recent window")
        elif s.size:
            keep = s > s[-1] - RECENT
            ax.plot(s[keep], v[keep], color=PALETTE["train"], label="loss")
            ax.set_xlabel(f"step (last {RECENT})")
            ax.set_ylabel("loss (nats/token)", color=PALETTE["train"])
            sa, va = self._series("train_accuracy")
            if sa.size:
                ax2 = ax.twinx()
                k2 = sa > sa[-1] - RECENT
                ax2.plot(sa[k2], va[k2], color=PALETTE["accuracy"], label="accuracy")
                ax2.set_ylabel("accuracy (fraction)", color=PALETTE["accuracy"])
                ax2.grid(False)
        else:
            no_data(ax, "train_loss not logged")

        ax = axes[6]
        ax.axis("off")
        shown = self.samples[-self.max_samples_shown:]
        if shown:
            cell = [[str(r["step"]), _clip(r["prompt"], 45), _clip(r["output"], 70),
                     "n/a" if r["accuracy"] is None else f"{r['accuracy']:.2f}"] for r in shown]
            table = ax.table(cellText=cell, colLabels=["step", "prompt", "output", "accuracy"], loc="upper center",
                             cellLoc="left", colWidths=[0.06, 0.34, 0.5, 0.08])
            table.auto_set_font_size(False)
            table.set_fontsize(10)
            table.scale(1, 1.5)
        else:
            no_data(ax, "no samples yet")
        place_legends(fig)
        return fig


def _clip(text, n: int) -> str:
    text = " ".join(str(text or "").split())  # newlines would break the table rows
    return text if len(text) <= n else text[: n - 1] + "…"

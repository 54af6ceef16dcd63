"""The seven-chart training report (the seed scripts' VisualizationManager), as a callback.

Events append to in-memory lists. Every `viz_interval` steps (at the first log
event at or after it) and at the end it writes, under run_dir:
  viz/step_NNNNNN.png, viz/latest.png   the seven charts
  metrics_history.json                  the logged train and eval metrics
  text_samples.json                     every sample batch (prompt, output, accuracy)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from utils.training.engine.callbacks import TrainerCallback
from utils.training.io import atomic_copy, atomic_write_json
from utils.training.text import with_caveat
from utils.training.throughput import hardware_of
from utils.training.tracking.run_record import RunRecord
from utils.training.viz.panels import accuracy_panel, grad_norm_panel, loss_panel, lr_panel, throughput_panel
from utils.training.viz.series import (  # noqa: F401 - MA_WINDOW, ma_window, moving_average: re-exported
    MA_WINDOW,
    ma_window,
    moving_average,
    points,
)
from utils.training.viz.style import PALETTE, new_figure, no_data, place_legends, preload, save_figure

REPORT_TITLES = ("Loss", "Token accuracy", "Throughput", "Learning rate", "Loss vs accuracy", "Recent window",
                 "Latest text samples")
RECENT = 200  # steps in the recent-window chart


class TrainingReport(TrainerCallback):
    def __init__(self, run_dir, viz_interval: int = 500, max_samples_shown: int = 4, caveat: str = ""):
        self.run_dir = Path(run_dir)
        self.caveat = caveat  # "smoke preset: not a result" (style.caveat), in the title
        self.viz_interval = int(viz_interval)
        self.max_samples_shown = max_samples_shown
        self.history = {"train": [], "eval": []}
        self.samples: list[dict] = []
        self.config: dict = {}
        self.hardware: dict = {}
        self._due: int | None = None  # a render due at this step, waiting for its evaluation/samples
        self._next_viz = self.viz_interval
        self.written: list[Path] = []
        self._rendered_step: int | None = None
        self._rendered_counts = (0, 0, 0)

    # -- events ----------------------------------------------------------------
    def on_train_begin(self, state, control, **kwargs) -> None:
        preload()  # not at the first log step, where a Ctrl-C would land in the import
        config = kwargs.get("config")  # for the clipping threshold on the gradient-norm chart
        self.config = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
        self.hardware = hardware_of(kwargs.get("run_info"))  # the throughput axis names the device
        self._next_viz = (state.step // self.viz_interval + 1) * self.viz_interval  # after a resume too

    def on_log(self, state, control, logs=None, **kwargs) -> None:
        self.history["train"].append({"step": state.step, **{k: float(v) for k, v in (logs or {}).items()
                                                             if isinstance(v, (int, float))}})
        if state.step >= self._next_viz:
            self._next_viz = (state.step // self.viz_interval + 1) * self.viz_interval
            # The trainer evaluates and samples after this event at the same step: the report
            # waits for them, so the step's val point and samples are in it.
            self._due = state.step
            self._render_when_done(state, control, "log")

    def _render_when_done(self, state, control, event: str) -> None:
        later = {"log": ("should_evaluate", "should_sample"), "evaluate": ("should_sample",), "sample": ()}[event]
        if self._due is not None and not any(getattr(control, flag, False) for flag in later):
            self._due = None
            self.render(state.step)

    def on_evaluate(self, state, control, metrics=None, **kwargs) -> None:
        self.history["eval"].append({"step": state.step, **{k: float(v) for k, v in (metrics or {}).items()}})
        self._render_when_done(state, control, "evaluate")

    def on_sample(self, state, control, samples=None, **kwargs) -> None:
        for s in samples or []:
            self.samples.append({"step": state.step, "prompt": s.get("prompt"), "output": s.get("output"),
                                 "accuracy": s.get("accuracy")})
        self._render_when_done(state, control, "sample")

    def on_step_end(self, state, control, **kwargs) -> None:
        if self._due is not None:  # an evaluation or sample batch announced but not delivered
            due, self._due = self._due, None
            self.render(due)

    def on_train_end(self, state, control, **kwargs) -> None:
        self._due = None
        seen = (len(self.history["train"]), len(self.history["eval"]), len(self.samples))
        if self.history["train"] and (self._rendered_step != state.step or seen != self._rendered_counts):
            self.render(state.step)

    # -- output ----------------------------------------------------------------
    def render(self, step: int) -> Path:
        viz = self.run_dir / "viz"
        viz.mkdir(parents=True, exist_ok=True)
        path = save_figure(self.figure(), viz / f"step_{step:06d}.png")
        # Figures and their JSON are redrawn from memory at the next render: not fsynced.
        atomic_copy(path, viz / "latest.png", durable=False)
        atomic_write_json(self.run_dir / "metrics_history.json", self.history, durable=False, indent=1)
        atomic_write_json(self.run_dir / "text_samples.json", self.samples, durable=False, indent=1)
        self.written.append(path)
        self._rendered_step = step
        self._rendered_counts = (len(self.history["train"]), len(self.history["eval"]), len(self.samples))
        return path

    def record(self) -> RunRecord:
        """The history so far as a run record, for the shared panels."""
        def frame(rows):
            return pd.DataFrame(rows) if rows else pd.DataFrame({"step": pd.Series(dtype="int64")})

        return RunRecord(name="report", source="report", config=self.config, hardware=self.hardware,
                         train=frame(self.history["train"]),
                         eval=frame(self.history["eval"]), caveat=self.caveat)

    def figure(self):
        # Two charts a row: readable 750 px wide (style.DISPLAY_WIDTH_PX). The samples row only
        # once there are samples: an empty third of the figure said "no samples yet" until step 300.
        shown = self.samples[-self.max_samples_shown:]
        fig = new_figure((9.5, 12.5 if shown else 10.5))
        gs = fig.add_gridspec(4 if shown else 3, 2, height_ratios=[1, 1, 1, 0.7] if shown else [1, 1, 1])
        axes = [fig.add_subplot(gs[i // 2, i % 2]) for i in range(6)] + ([fig.add_subplot(gs[3, :])] if shown else [])
        rec = self.record()
        last = int(rec.train["step"].iloc[-1]) if len(rec.train) else 0
        fig.suptitle(with_caveat(f"Training report at step {last}", self.caveat), fontsize=12)
        loss_panel(axes[0], rec, smooth=True, title=REPORT_TITLES[0])
        accuracy_panel(axes[1], rec, smooth=True, title=REPORT_TITLES[1])
        throughput_panel(axes[2], rec, title=REPORT_TITLES[2])
        lr_panel(axes[3], rec, title=REPORT_TITLES[3])
        loss_accuracy_panel(axes[4], rec, title=REPORT_TITLES[4])
        recent_panel(axes[5], rec, title=REPORT_TITLES[5])
        if shown:
            samples_panel(axes[6], shown, title=REPORT_TITLES[6])
        place_legends(fig)
        return fig


# -- the report's own panels (drawn by no other figure) -----------------------------

def loss_accuracy_panel(ax, rec: RunRecord, title: str = "Loss vs accuracy") -> None:
    """Train loss against train accuracy, coloured by step."""
    ax.set_title(title)
    cols = ["train_loss", "train_accuracy"]
    if rec.col(cols[0]) is None or rec.col(cols[1]) is None:
        no_data(ax, "needs train_loss and train_accuracy")
        return
    d = rec.train.dropna(subset=cols)
    sc = ax.scatter(d["train_accuracy"], d["train_loss"], c=d["step"], cmap="viridis", s=18)
    ax.figure.colorbar(sc, ax=ax, label="step")
    ax.set_xlabel("next-token accuracy (fraction)")
    ax.set_ylabel("loss (nats/token)")


def recent_panel(ax, rec: RunRecord, title: str = "Recent window") -> None:
    """Loss (and accuracy) over the last RECENT steps; a run no longer than that is all in
    the loss panel already, so the space shows the gradient norm instead."""
    ax.set_title(title)
    loss = points(rec, "train_loss")
    if loss is None:
        no_data(ax, "train_loss not logged")
        return
    steps, v = loss
    if float(steps.iloc[-1] - steps.iloc[0]) <= RECENT:
        if rec.col("grad_norm") is not None:
            grad_norm_panel(ax, rec)
        else:
            no_data(ax, f"run shorter than the {RECENT}-step recent window")
        return
    keep = steps > steps.iloc[-1] - RECENT
    ax.plot(steps[keep], v[keep], color=PALETTE["train"], label="loss")
    ax.set_xlabel(f"step (last {RECENT})")
    ax.set_ylabel("loss (nats/token)", color=PALETTE["train"])
    acc = points(rec, "train_accuracy")
    if acc is not None:
        sa, va = acc
        k2 = sa > sa.iloc[-1] - RECENT
        ax2 = ax.twinx()
        ax2.plot(sa[k2], va[k2], color=PALETTE["accuracy"], label="accuracy")
        ax2.set_ylabel("accuracy (fraction)", color=PALETTE["accuracy"])
        ax2.grid(False)


def samples_panel(ax, shown: list[dict], title: str = "Latest text samples") -> None:
    """The latest sample batch as a table: step, prompt, output, accuracy."""
    ax.set_title(title)
    ax.axis("off")
    if not shown:
        no_data(ax, "no samples yet")
        return
    cell = [[str(r["step"]), _clip(r["prompt"], 30), _clip(r["output"], 46),
             "n/a" if r["accuracy"] is None else f"{r['accuracy']:.0%}"] for r in shown]
    table = ax.table(cellText=cell, colLabels=["step", "prompt", "output (greedy)", "match*"], loc="upper center",
                     cellLoc="left", colWidths=[0.07, 0.33, 0.49, 0.11])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.4)
    for c in table.get_celld().values():
        c.PAD = 0.02  # matplotlib's 10% of the cell width indented the wide columns' text
    ax.text(0, 0, "* match: share of the generated tokens equal to the reference text's tokens",
            transform=ax.transAxes, fontsize=9, va="top", color="#555555")


def _clip(text, n: int) -> str:
    text = " ".join(str(text or "").split())  # newlines would break the table rows
    return text if len(text) <= n else text[: n - 1] + "…"

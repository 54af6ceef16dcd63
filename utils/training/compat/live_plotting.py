"""The seed notebook's live plots (utils.training.live_plotting) over our LivePlotter.

Driven by hand from any loop, one point per epoch:

    plotter = LivePlotter(metrics=["loss", "perplexity", "accuracy"], figsize=(12, 6))
    plotter.update(epoch, {"loss": 2.3, "accuracy": 0.4}, {"loss": 2.5})   # keys m, train/m, val/m
    plotter.save("training_curves.png", dpi=150)
    CompactLivePlotter(figsize=(10, 4)).update(epoch, train_loss, val_loss)  # one loss panel

These are our LivePlotter (a Trainer callback too: every argument and event of ours
works), so the figure is drawn by the shared panels under the same redraw budget, on an
epoch axis. `style` is accepted and ignored: every figure uses viz/style.py.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

from utils.training.tracking.run_record import RunRecord
from utils.training.viz import live_plotting as _core
from utils.training.viz.live_plotting import COMPACT_TITLES, FULL_TITLES
from utils.training.viz.panels import accuracy_panel, epoch_axes

SEED_METRICS = ["loss", "perplexity", "accuracy"]  # the seed's default panels


def _value(metrics: dict | None, prefix: str, name: str) -> float:
    """`name`, `prefix/name` or `prefix_name` from a metrics dict; NaN when absent."""
    d = metrics or {}
    v = d.get(name, d.get(f"{prefix}/{name}", d.get(f"{prefix}_{name}")))
    return math.nan if v is None else float(v)


class LivePlotter(_core.LivePlotter):
    """Our LivePlotter plus the seed's calls (module docstring). With 'accuracy' in `metrics`
    and no throughput logged, the fourth panel shows accuracy instead of throughput."""

    panels = {**_core.PANELS, "Accuracy": accuracy_panel}

    def __init__(self, metrics=None, figsize=None, style=None, **kwargs):
        if isinstance(metrics, (int, float)) and not isinstance(metrics, bool):
            kwargs["min_interval_s"], metrics = metrics, None  # ours: LivePlotter(min_interval_s)
        super().__init__(figsize=figsize, **kwargs)
        self.metrics = list(metrics) if metrics is not None else list(SEED_METRICS)
        self.style = style

    def update(self, epoch: int, train_metrics: dict | None = None, val_metrics: dict | None = None) -> None:
        """Add one epoch (x axis: epoch) and redraw under the same budget as the callback."""
        if self.x_label != "epoch":
            self.x_label = "epoch"
            self._resolve_mode()
            if not self.train["step"]:
                self._t_begin = self._last_draw = time.monotonic() - self.min_interval_s  # draw the first epoch
        row = {"step": int(epoch), "train_loss": _value(train_metrics, "train", "loss"),
               "lr": _value(train_metrics, "train", "learning_rate"),
               "tokens_per_sec": _value(train_metrics, "train", "tokens_per_sec"),
               "train_accuracy": _value(train_metrics, "train", "accuracy"),
               "train_perplexity": _value(train_metrics, "train", "perplexity")}
        for key, column in self.train.items():  # every column the core keeps, NaN where the seed has none
            column.append(row.get(key, math.nan))
        val_loss = _value(val_metrics, "val", "loss")
        if math.isnan(val_loss):
            self._maybe_draw()
            return
        self.on_evaluate(SimpleNamespace(step=int(epoch)), None, metrics={
            "step": int(epoch), "val_loss": val_loss, "val_accuracy": _value(val_metrics, "val", "accuracy"),
            "val_perplexity": _value(val_metrics, "val", "perplexity")})

    def save(self, filepath="training_curves.png", dpi: int = 150):
        """The current figure as PNG, PDF or SVG (by suffix); returns the path. In text mode
        the figure is built for the file only, not displayed."""
        from utils.training.viz.style import save_figure

        if self.fig is None or self.mode == "text":
            mode, self.mode = self.mode, "file"
            try:
                self._draw_figure(final=True)
            finally:
                self.mode = mode
        return save_figure(self.fig, filepath, dpi=dpi)

    def _panels(self) -> tuple[str, ...]:
        if self.compact:
            return ("Loss",) if self.x_label == "epoch" else COMPACT_TITLES
        if "accuracy" in self.metrics and not any(not math.isnan(x) for x in self.train["tokens_per_sec"]):
            return (*FULL_TITLES[:3], "Accuracy")
        return FULL_TITLES

    def _draw_panels(self, rec: RunRecord) -> None:
        super()._draw_panels(rec)
        if self.x_label == "epoch":
            epoch_axes(self.axes.values())


class CompactLivePlotter(LivePlotter):
    """The seed's one-panel loss plot: `CompactLivePlotter(figsize).update(epoch, train_loss, val_loss)`."""

    def __init__(self, figsize=(10, 4), **kwargs):
        super().__init__(metrics=["loss"], figsize=figsize, compact=True, **kwargs)

    def update(self, epoch: int, train_loss: float | None = None, val_loss: float | None = None) -> None:
        super().update(epoch, {"loss": train_loss}, {"loss": val_loss})


__all__ = ["LivePlotter", "CompactLivePlotter"]

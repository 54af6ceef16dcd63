"""A live figure that updates in place in Jupyter and Colab, or a text table elsewhere.

Events only append to lists (cheap). A redraw happens at a log or eval event when
at least `min_interval_s` seconds have passed since the last one, and never more
often than keeps drawing under `max_overhead` of wall time (a slow draw stretches
the interval). The figure goes out through one IPython display handle, first with
display(..., display_id=True) then handle.update(...), so the cell shows one image
that changes, and an executed notebook embeds it once.
"""

from __future__ import annotations

import math
import sys
import time

import pandas as pd

from utils.training.engine.callbacks import TrainerCallback
from utils.training.throughput import hardware_of
from utils.training.tracking.run_record import RunRecord
from utils.training.tracking.system_monitor import SYSTEM_KEYS
from utils.training.viz.panels import loss_panel, lr_panel, perplexity_panel, system_panel, throughput_panel
from utils.training.viz.series import perplexity
from utils.training.viz.style import figure_png, new_figure, place_legends

FULL_TITLES = ("Loss", "Perplexity", "Learning rate", "Throughput", "System")
COMPACT_TITLES = ("Loss", "Throughput")
PANELS = {"Loss": loss_panel, "Perplexity": perplexity_panel, "Learning rate": lr_panel,
          "Throughput": throughput_panel, "System": system_panel}  # panel title -> its drawing (panels.py)
# kept from each log (the system sampler's readings: tracking/system_monitor.py)
TRAIN_KEYS = ("train_loss", "train_perplexity", "lr", "tokens_per_sec", "train_accuracy", *SYSTEM_KEYS)
EVAL_KEYS = ("val_loss", "val_perplexity", "val_accuracy")
LIVE_DPI = 80  # low dpi keeps a redraw cheap; the final figure is saved at the style's dpi
# Seconds the first draw is expected to take, before any was measured, when no evaluation
# came first (the first evaluation draws the first frame whatever the budget: a smoke Run
# all showed only the bar until its end). The real first draw (imports, building the
# figure, one render) took ~2.9 s on 2 CPU cores and later ones ~0.4 s; the frames after
# the first wait out what it overdrew of the budget.
FIRST_DRAW_S = 1.0


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")  # Jupyter and Colab kernels; not terminal IPython


def _display(obj):
    """Show `obj` in a new output with a display id; returns its handle."""
    from IPython.display import display

    return display(obj, display_id=True)


def _png_image(png: bytes):
    from IPython.display import Image

    return Image(data=png, format="png")


def _empty(ax) -> None:
    """Remove what a panel drew (data, legend, labels, scales) and keep the axes' tick artists."""
    for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts]:
        artist.remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.set_xscale("linear")  # also back to the default locators (style.no_data fixes them empty)
    ax.set_yscale("linear")
    ax.set_title("")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.relim()
    ax.autoscale()


class LivePlotter(TrainerCallback):
    """A Trainer callback: the run's loss, perplexity, lr and throughput (compact: loss and
    throughput), redrawn in place under a time budget. `figsize` in inches; None: the layout's."""

    panels = PANELS

    def __init__(self, min_interval_s: float = 2.0, compact: bool = False, save_path=None, mode: str = "auto",
                 max_overhead: float = 0.01, stream=None, caveat: str = "", *, figsize=None):
        if mode not in ("auto", "figure", "text"):
            raise ValueError(f"mode must be auto, figure or text, not {mode!r}")
        self.min_interval_s = float(min_interval_s)  # s between two redraws at least
        self.max_overhead = float(max_overhead)  # fraction of wall time drawing may take
        self.compact, self.save_path, self.mode, self.stream = compact, save_path, mode, stream
        self.caveat = caveat  # "smoke preset: not a result" (style.caveat): the figure's title says it
        self.figsize = figsize
        self.x_label = "step"  # what the x axis counts
        self.config: dict = {}  # the run's config (on_train_begin), for the panels
        self.hardware: dict = {}  # device, gpu_name, n_gpus (on_train_begin's run_info)
        self.train = {k: [] for k in ("step", *TRAIN_KEYS)}
        self.val = {k: [] for k in ("step", *EVAL_KEYS)}
        self.best = (math.inf, None)  # (val_loss, step)
        self.handle = None
        self.fig = None
        self._frozen = False  # layout solved once and kept for the live frames
        self.redraws = 0
        self.draw_s = 0.0  # total seconds spent drawing
        self._last_draw = -math.inf
        self._last_cost = 0.0
        self._t_begin = time.monotonic()
        self._header_done = False

    # -- events ----------------------------------------------------------------
    def on_train_begin(self, state, control, **kwargs) -> None:
        config = kwargs.get("config")
        self.config = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
        self.hardware = hardware_of(kwargs.get("run_info"))  # the throughput axis names the device
        self._resolve_mode()
        self._t_begin = self._last_draw = time.monotonic()  # first redraw one interval in, not at step 1

    def _resolve_mode(self) -> None:
        if self.mode == "auto":
            try:
                import matplotlib  # noqa: F401

                self.mode = "figure" if _in_notebook() else "text"
            except ImportError:
                self.mode = "text"
        if self.mode == "figure":
            from utils.training.viz.style import preload

            preload()  # before training: a Ctrl-C must not land in matplotlib's first import

    def on_log(self, state, control, logs=None, **kwargs) -> None:
        logs = logs or {}
        self.train["step"].append(state.step)
        for k in TRAIN_KEYS:
            self.train[k].append(float(logs.get(k, math.nan)))
        self._maybe_draw()

    def on_evaluate(self, state, control, metrics=None, **kwargs) -> None:
        metrics = metrics or {}
        if "val_loss" not in metrics:
            return
        step, loss = int(metrics.get("step", state.step)), float(metrics["val_loss"])
        self.val["step"].append(step)
        self.val["val_loss"].append(loss)
        for k in EVAL_KEYS[1:]:
            self.val[k].append(float(metrics.get(k, math.nan)))
        if loss < self.best[0]:
            self.best = (loss, step)
        if self.redraws == 0:  # the first frame at the first evaluation, outside the budget: a
            self.draw()         # short run showed only the bar until its end (the first frame ~100 s in)
        else:
            self._maybe_draw()

    def on_train_end(self, state, control, **kwargs) -> None:
        self.draw(final=True)
        if self.save_path is not None:
            try:
                from utils.training.viz.style import save_figure

                if self.fig is None or self.mode == "text":
                    self._draw_figure(final=True)  # in text mode: built for the file only, not shown
                save_figure(self.fig, self.save_path)
            except ImportError:
                print(f"LivePlotter: matplotlib not installed, {self.save_path} not written", file=self.stream or sys.stdout)

    def _panels(self) -> tuple[str, ...]:
        return COMPACT_TITLES if self.compact else FULL_TITLES

    # -- drawing ----------------------------------------------------------------
    def _maybe_draw(self) -> None:
        """Redraw when `min_interval_s` has passed AND the time spent drawing so far plus
        the next draw's expected cost stays within `max_overhead` of the time since train
        begin: a budget, not just a throttle, so plotting never costs more than its share
        of the run (the progress bar shows every step meanwhile). Before the first draw the
        cost is unknown and taken as FIRST_DRAW_S (building the figure included)."""
        now = time.monotonic()
        if now - self._last_draw < self.min_interval_s:
            return
        expected = self._last_cost if self.redraws else (FIRST_DRAW_S if self.mode == "figure" else 0.0)
        if self.max_overhead <= 0 or self.draw_s + expected <= self.max_overhead * (now - self._t_begin):
            self.draw()

    def draw(self, final: bool = False) -> None:
        t0 = time.perf_counter()
        if self.mode == "figure":
            self._draw_figure(final)
        else:
            self._draw_text(final)
        self._last_cost = time.perf_counter() - t0
        self.draw_s += self._last_cost
        self._last_draw = time.monotonic()
        self.redraws += 1

    def record(self) -> RunRecord:
        """What was logged so far as a run record, for the shared panels."""
        return RunRecord(name="live", source="live", config=self.config, hardware=self.hardware,
                         train=pd.DataFrame(self.train), eval=pd.DataFrame(self.val), caveat=self.caveat)

    def _build(self) -> None:
        titles = self._panels()
        if self.compact:
            self.fig = new_figure(self.figsize or (10, 3.2))
            axes = list(self.fig.subplots(1, len(titles), squeeze=False).ravel())
        else:
            # Two panels a row, 9.5 inches wide: readable shown 750 px wide (text.DISPLAY_WIDTH_PX).
            rows = math.ceil(len(titles) / 2)
            self.fig = new_figure(self.figsize or (9.5, 3.2 * rows))
            axes = list(self.fig.subplots(rows, 2).ravel())
            for spare in axes[len(titles):]:  # an odd number of panels
                spare.remove()
        self.axes = dict(zip(titles, axes))
        if self.caveat:
            self.fig.suptitle(self.caveat)

    def _draw_figure(self, final: bool) -> None:
        if self.fig is None:
            self._build()
        self._draw_panels(self.record())
        if final:
            if self._frozen:  # the layout was frozen for the live frames; the kept figure is laid out anew
                self.fig.set_layout_engine("constrained")
                self._frozen = False
            place_legends(self.fig)  # once: it measures where the data lies
        if self.mode == "figure":
            # Live frames skip the tight bounding box (a second render); the final one keeps it.
            image = _png_image(figure_png(self.fig, dpi=None if final else LIVE_DPI, tight=final))
            if not final and not self._frozen:
                self.fig.set_layout_engine("none")  # laid out once; re-solving it each frame costs ~40%
                self._frozen = True
            if self.handle is None:
                self.handle = _display(image)
            else:
                self.handle.update(image)

    def _draw_panels(self, rec: RunRecord) -> None:
        """Each frame redraws the shared panels from the record into the same axes (they keep
        their place: the layout is solved once), emptied of the last frame's data but not
        cleared: ax.clear() also drops the tick artists, and re-creating them cost ~20% of
        a frame."""
        for title, ax in self.axes.items():
            _empty(ax)
            self.panels[title](ax, rec)
        if self.best[1] is not None:
            self.axes["Loss"].set_title(f"Loss (best val {self.best[0]:.3f} at {self.x_label} {self.best[1]})")

    def _row(self) -> str:
        t = self.train
        step = t["step"][-1] if t["step"] else 0
        loss = t["train_loss"][-1] if t["train_loss"] else math.nan
        val = self.val["val_loss"][-1] if self.val["val_loss"] else math.nan
        lr = t["lr"][-1] if t["lr"] else math.nan
        tps = t["tokens_per_sec"][-1] if t["tokens_per_sec"] else math.nan
        ppl = perplexity(loss, t["train_perplexity"][-1] if t["train_perplexity"] else math.nan)
        return f"{step:>8d} {loss:>10.4f} {val:>10.4f} {ppl:>10.2f} {lr:>10.2e} {tps:>12,.0f}"

    def _draw_text(self, final: bool) -> None:
        out = self.stream or sys.stdout
        if not self._header_done:
            print(f"{'step':>8} {'train_loss':>10} {'val_loss':>10} {'perplexity':>10} {'lr':>10} {'tokens/s':>12}",
                  file=out)
            self._header_done = True
        if self.train["step"]:
            print(self._row(), file=out)
        if final and self.best[1] is not None:
            print(f"best val loss {self.best[0]:.4f} at step {self.best[1]}", file=out)

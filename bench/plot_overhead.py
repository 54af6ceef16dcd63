"""Tracking + live plotting overhead in a real smoke training run, as a share of wall time.

The run is the real thing: TrainingSession on the built-in corpus, the Trainer, and
the default callbacks (MetricsTracker with its ExperimentDB and JSON run-log sinks)
plus a LivePlotter in figure mode at its default throttle (its display handle is a
no-op so it renders headless). Every callback is wrapped in a timer, so the time spent
inside them is measured directly (no subtraction of two noisy runs) and printed
against the training wall time, at the preset's default log and eval intervals.
Goal: <= 1%. The system sampler (tracking/system_monitor.py, a thread outside the
callbacks) is timed apart: the wall time of its readings against the training's wall
time and against the step time. Goal: < 0.5%.

    .venv/bin/python bench/plot_overhead.py [--steps 300] [--preset smoke]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.training.config import TrainingConfig  # noqa: E402
from utils.training.engine.callbacks import EVENTS, TrainerCallback  # noqa: E402
from utils.training.session import ReportingOptions, TrainingSession  # noqa: E402
from utils.training.tracking.system_monitor import SystemMonitor  # noqa: E402
from utils.training.viz import live_plotting  # noqa: E402
from utils.training.viz.live_plotting import LivePlotter  # noqa: E402


class _Handle:
    def update(self, obj) -> None:
        self.last = obj


class Timed(TrainerCallback):
    """Delegates every event to `inner` and adds the seconds it took to `spent[name]`."""

    def __init__(self, inner: TrainerCallback, spent: dict[str, float]):
        self.inner, self.spent, self.name = inner, spent, type(inner).__name__

    def __getattribute__(self, attr):
        if attr in EVENTS:
            inner, spent, name = (object.__getattribute__(self, a) for a in ("inner", "spent", "name"))

            def timed(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return getattr(inner, attr)(*args, **kwargs)
                finally:
                    spent[f"{name}.{attr}"] += time.perf_counter() - t

            return timed
        return object.__getattribute__(self, attr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--quick", action="store_true", help="100 steps")
    ap.add_argument("--system-interval", type=float, default=5.0, help="the system sampler's period, s")
    args = ap.parse_args()
    steps = 100 if args.quick else args.steps
    live_plotting._display = lambda obj: _Handle()  # headless: render the PNG, show it nowhere

    spent: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory(prefix="plot-overhead-") as ws:
        config = TrainingConfig.preset(args.preset, max_steps=steps, run_name="overhead")
        session = TrainingSession(config, ws, tracking=ReportingOptions(progress_bar=False,
                                                                        system_interval_s=args.system_interval))
        session.prepare()
        plotter = LivePlotter(mode="figure")
        # The session's default callbacks (metrics tracker first) and the plotter, each timed.
        callbacks = session.callbacks() + [plotter]
        session.callbacks = lambda: [Timed(cb, spent) for cb in callbacks]
        monitor = next(cb for cb in callbacks if isinstance(cb, SystemMonitor))
        t0 = time.perf_counter()
        result = session.train()
        wall = time.perf_counter() - t0
        session.close()

    def total(pred) -> float:
        return sum(v for k, v in spent.items() if pred(k))

    during = total(lambda k: not k.endswith(("on_train_begin", "on_train_end")))
    ends = total(lambda k: k.endswith(("on_train_begin", "on_train_end")))
    print(f"{args.preset}: {result.state.step} steps in {wall:.1f} s ({1000 * wall / result.state.step:.0f} ms/step); "
          f"log every {config.log_interval}, eval every {config.eval_interval} steps")
    print(f"live plot redraws: {plotter.redraws} (mean {1000 * plotter.draw_s / max(1, plotter.redraws):.0f} ms)")
    for name in sorted({k.split(".")[0] for k in spent}):
        print(f"  {name:<22} {total(lambda k, n=name: k.startswith(n + '.')):7.3f} s")
    print(f"callbacks during training: {during:.3f} s = {100 * during / wall:.2f}% of wall time (goal <= 1%)")
    print(f"start and end (first/final figure, run log, database close): {ends:.2f} s = {100 * ends / wall:.2f}%")
    print(f"all callbacks: {100 * (during + ends) / wall:.2f}% of wall time")
    step_s = wall / result.state.step
    each = monitor.sample_s / max(1, monitor.samples)
    print(f"system sampler: {monitor.samples} readings every {args.system_interval:g} s, {1000 * each:.2f} ms each, "
          f"{monitor.sample_s:.3f} s in all = {100 * monitor.sample_s / wall:.3f}% of wall time; per step "
          f"{1000 * each * step_s / args.system_interval:.4f} ms of {1000 * step_s:.0f} ms = "
          f"{100 * each / args.system_interval:.3f}% of step time (goal < 0.5%)")


if __name__ == "__main__":
    main()

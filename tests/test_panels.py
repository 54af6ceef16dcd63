"""The shared panel vocabulary (viz/panels.py, viz/series.py): one lr axis rule, stored
perplexity with one fallback, and every figure drawing a metric the same way."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from utils.training.tracking.run_record import RunRecord
from utils.training.viz.series import perplexity, perplexity_points


def _cosine(steps: int = 60, warmup: int = 10, peak: float = 3e-3, floor: float = 0.1) -> list[float]:
    """Linear warmup from ~0, then cosine to `floor` of the peak (the common schedule)."""
    return [peak * (s + 1) / warmup if s < warmup else
            peak * (floor + (1 - floor) / 2 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))))
            for s in range(steps)]


def _record(lr, **train) -> RunRecord:
    steps = np.arange(1, len(lr) + 1)
    loss = np.linspace(4.0, 2.5, len(lr))
    df = pd.DataFrame({"step": steps, "train_loss": loss, "lr": lr, **train})
    ev = pd.DataFrame({"step": steps[4::5], "val_loss": loss[4::5] + 0.1})
    return RunRecord(name="r", source="test", train=df, eval=ev, warmup_steps=10,
                     config={"max_grad_norm": 0.5})


@pytest.mark.parametrize("lr, scale", [
    (_cosine(), "log"),  # cosine to 10%: the tail would hug a linear axis
    (_cosine(floor=0.5), "linear"),  # a gentle decay
    ([1e-3 * (s + 1) / 2000 for s in range(2000)], "linear"),  # warmup only: the ramp stays a ramp
    ([1e-3] * 5, "linear"),  # constant
    ([*_cosine()[:-1], 0.0], "linear"),  # decays to 0: log would drop that point
])
def test_one_lr_axis_rule_in_every_figure(lr, scale):
    from utils.training.viz.analysis import plot_run
    from utils.training.viz.dashboard import TrainingDashboard
    from utils.training.viz.panels import lr_scale

    assert lr_scale(lr) == scale
    rec = _record(lr)
    dash, run = TrainingDashboard(rec).figure(), plot_run(rec)
    assert dash.axes[2].get_title() == run.axes[1].get_title() == "Learning rate"
    assert dash.axes[2].get_yscale() == run.axes[1].get_yscale() == scale
    assert dash.axes[2].get_ylabel() == run.axes[1].get_ylabel() == "learning rate" + (" (log)" if scale == "log" else "")


def test_perplexity_is_the_stored_value_and_exp_loss_only_where_none_was_stored():
    stored = [60.0, math.nan] + [25.0] * 8  # the second row stored none (a resumed run's first log, say)
    rec = _record([1e-3] * 10, train_perplexity=stored)
    _, ppl = perplexity_points(rec)
    loss = rec.train["train_loss"]
    np.testing.assert_allclose(ppl, [60.0, math.exp(loss[1])] + [25.0] * 8)
    assert perplexity(1e4) == pytest.approx(math.exp(50))  # a diverged run: capped, not an OverflowError
    assert math.isnan(perplexity(math.nan)) and perplexity(3.0, 7.0) == 7.0
    _, val = perplexity_points(rec, "eval")  # no val_perplexity column at all: exp(val_loss)
    np.testing.assert_allclose(val, np.exp(rec.eval["val_loss"]))


def test_a_frames_clip_threshold_is_read_under_our_name():
    """The frame reader (dashboard.record_from_frame) gives RunRecord.max_grad_norm from
    ours or llm-foundry's grad_clip; the grad-norm panel reads only that."""
    import pandas as pd

    from utils.training.viz.dashboard import record_from_frame

    df = pd.DataFrame({"step": [1, 2], "train_loss": [3.0, 2.5]})
    assert record_from_frame(df, config={"max_grad_norm": 0.5, "grad_clip": 1.0}).max_grad_norm == 0.5
    assert record_from_frame(df, config={"max_grad_norm": None, "grad_clip": 1.0}).max_grad_norm == 1.0
    assert record_from_frame(df, config={}).max_grad_norm is None


def test_loss_panel_is_drawn_alike_in_the_dashboard_and_the_analysis():
    from utils.training.viz.analysis import plot_run
    from utils.training.viz.dashboard import TrainingDashboard

    rec = _record(_cosine())
    for ax in (TrainingDashboard(rec).figure().axes[0], plot_run(rec).axes[0]):
        train, val, best = ax.get_lines()[:3]
        assert (train.get_label(), val.get_label(), val.get_marker()) == ("train", "val", "o")
        assert best.get_label() == f"best {rec.best_val()[0]:.3f} @ {rec.best_val()[1]}"
        assert ax.get_ylabel() == "loss (nats/token)"

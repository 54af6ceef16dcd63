"""LivePlotter: one display, updated in place, throttled; text fallback with the same data."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from test_run_log import shared_smoke_run

from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerControl, TrainerState
from utils.training.viz import live_plotting
from utils.training.viz.live_plotting import COMPACT_TITLES, FULL_TITLES, LivePlotter


def replay(run_json, callbacks):
    """Fire the events of a recorded run (the smoke run's own records) at callbacks."""
    doc = json.loads(run_json.read_text())
    state, control = TrainerState(), TrainerControl()
    for cb in callbacks:
        cb.on_train_begin(state, control, config=doc["config"], run_info=doc["run_info"])
    evals = {r["step"]: r for r in doc["eval"]}
    samples = {}
    for s in doc["samples"]:
        samples.setdefault(s["step"], []).append(s)
    for rec in doc["train"]:
        state.step = rec["step"]
        logs = {k: v for k, v in rec.items() if k not in ("step", "time")}
        for cb in callbacks:
            cb.on_log(state, control, logs=logs)
        if state.step in evals:
            for cb in callbacks:
                cb.on_evaluate(state, control, metrics=evals[state.step])
        if state.step in samples:
            for cb in callbacks:
                cb.on_sample(state, control, samples=samples[state.step])
    for cb in callbacks:
        cb.on_train_end(state, control, status=RunStatus.COMPLETED, error=None)
    return doc


class FakeHandle:
    def __init__(self):
        self.updates = 0

    def update(self, obj):
        assert obj.data[:4] == b"\x89PNG"
        self.updates += 1


@pytest.fixture
def displays(monkeypatch):
    shown = []

    def fake_display(obj):
        shown.append(FakeHandle())
        return shown[-1]

    monkeypatch.setattr(live_plotting, "_display", fake_display)
    return shown


@pytest.mark.parametrize("compact", [False, True])
def test_figure_is_displayed_once_and_updated_in_place(displays, tmp_path, compact):
    lp = LivePlotter(min_interval_s=0.0, max_overhead=0.0, mode="figure", compact=compact,
                     save_path=tmp_path / "live.png")
    doc = replay(shared_smoke_run(), [lp])
    assert len(displays) == 1  # one output; the rest are updates of it
    assert displays[0].updates == lp.redraws - 1 >= len(doc["train"]) - 1
    titles = [ax.get_title().split(" (")[0] for ax in lp.fig.axes]
    assert titles == list(COMPACT_TITLES if compact else FULL_TITLES)
    loss = lp.axes["Loss"]
    train, val, best = loss.get_lines()
    np.testing.assert_array_equal(train.get_ydata(), [r["train_loss"] for r in doc["train"]])
    np.testing.assert_array_equal(val.get_ydata(), [r["val_loss"] for r in doc["eval"]])
    assert (best.get_ydata()[0], best.get_xdata()[0]) == (doc["summary"]["best_val_loss"], doc["summary"]["best_step"])
    np.testing.assert_array_equal(lp.axes["Throughput"].get_lines()[0].get_ydata(),
                                  [r["tokens_per_sec"] for r in doc["train"]])
    if not compact:
        np.testing.assert_array_equal(lp.axes["Learning rate"].get_lines()[0].get_ydata(), [r["lr"] for r in doc["train"]])
    assert (tmp_path / "live.png").stat().st_size > 5_000


def test_default_throttle_redraws_rarely(displays):
    lp = LivePlotter(mode="figure")  # default: at most one redraw per 2 s; the replay takes far less
    doc = replay(shared_smoke_run(), [lp])
    # The first frame at the first evaluation (a short run shows curves before its end), then
    # the budget holds every other redraw back: that frame and the final figure, one output.
    assert doc["eval"] and lp.redraws == 2 and len(displays) == 1 and displays[0].updates == 1


def test_text_fallback_prints_the_same_data():
    out = io.StringIO()
    lp = LivePlotter(mode="text", min_interval_s=0.0, stream=out)
    doc = replay(shared_smoke_run(), [lp])
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["step", "train_loss", "val_loss", "perplexity", "lr", "tokens/s"]
    last = doc["train"][-1]
    row = lines[-2].split()
    assert int(row[0]) == last["step"] and float(row[1]) == pytest.approx(last["train_loss"], abs=1e-4)
    assert float(row[3]) == pytest.approx(math.exp(last["train_loss"]), abs=0.01)
    assert lines[-1] == f"best val loss {doc['summary']['best_val_loss']:.4f} at step {doc['summary']['best_step']}"
    assert lp.fig is None  # no figure built headless


def test_auto_mode_outside_a_notebook_is_text():
    lp = LivePlotter(stream=io.StringIO())
    lp.on_train_begin(TrainerState(), TrainerControl())
    assert lp.mode == "text"

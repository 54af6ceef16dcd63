"""TrainingReport: seven charts every viz_interval steps, history and samples as JSON."""

from __future__ import annotations

import json

import numpy as np
from test_live_plotting import replay
from test_run_log import shared_smoke_run

from utils.training.viz.report import REPORT_TITLES, TrainingReport
from utils.training.viz.series import ma_window, moving_average


def test_report_writes_charts_history_and_samples(tmp_path):
    rep = TrainingReport(tmp_path, viz_interval=30)
    doc = replay(shared_smoke_run(), [rep])
    viz = sorted(p.name for p in (tmp_path / "viz").iterdir())
    assert viz == ["latest.png", "step_000030.png", "step_000060.png"]
    assert (tmp_path / "viz" / "latest.png").read_bytes() == (tmp_path / "viz" / "step_000060.png").read_bytes()
    hist = json.loads((tmp_path / "metrics_history.json").read_text())
    assert [r["train_loss"] for r in hist["train"]] == [r["train_loss"] for r in doc["train"]]
    assert [r["val_loss"] for r in hist["eval"]] == [r["val_loss"] for r in doc["eval"]]
    samples = json.loads((tmp_path / "text_samples.json").read_text())
    assert [(s["prompt"], s["output"], s["accuracy"]) for s in samples] == [
        (s["prompt"], s["output"], s["accuracy"]) for s in doc["samples"]]

    fig = rep.figure()
    panels = [ax for ax in fig.axes if ax.get_title()]
    expected = list(REPORT_TITLES)
    expected[5] = "Gradient norm (pre-clip)"  # a 60-step run is shorter than the recent window: not drawn
    assert [ax.get_title() for ax in panels] == expected
    steps = [r["step"] for r in doc["train"]]
    loss = [r["train_loss"] for r in doc["train"]]
    raw, ma = panels[0].get_lines()[:2]
    np.testing.assert_array_equal(raw.get_ydata(), loss)
    window = ma_window(steps)
    assert 0 < window < 60 and ma.get_label() == f"{window}-step moving average"  # the window the run has
    np.testing.assert_allclose(ma.get_ydata(), moving_average(steps, loss, window))
    np.testing.assert_array_equal(panels[1].get_lines()[0].get_ydata(), [r["train_accuracy"] for r in doc["train"]])
    np.testing.assert_array_equal(panels[3].get_lines()[0].get_ydata(), [r["lr"] for r in doc["train"]])
    assert panels[3].get_yscale() == "log"
    offsets = panels[4].collections[0].get_offsets()
    np.testing.assert_array_equal(offsets[:, 1], loss)
    table = panels[6].tables[0]
    # the output column holds the latest sample's text, clipped (this fixture's text is
    # docs/ARCHITECTURE.md, so a sample may be any characters, spaces included)
    shown = table.get_celld()[(1, 2)].get_text().get_text().rstrip("…")
    assert any(" ".join(s["output"].split()).startswith(shown) for s in doc["samples"])
    for ax in panels[:6]:
        assert ax.get_xlabel() and ax.get_ylabel()


def test_moving_average_uses_a_step_window():
    np.testing.assert_allclose(moving_average([10, 20, 30, 80], [1.0, 2.0, 3.0, 5.0], 50), [1, 1.5, 2, 5])


def test_moving_average_is_a_step_window_skipping_nan():
    import numpy as np

    from utils.training.viz.series import moving_average

    steps = [10, 20, 30, 40, 50]
    values = [1.0, 3.0, float("nan"), 5.0, 7.0]
    # window of 25 steps: (s-25, s]
    got = moving_average(steps, values, window_steps=25)
    np.testing.assert_allclose(got, [1.0, 2.0, 2.0, 4.0, 6.0])  # e.g. step 40: steps 20, 30 (NaN), 40
    assert np.isnan(moving_average([1, 2], [float("nan"), float("nan")], window_steps=5)).all()


def test_matplotlib_is_imported_before_training_starts(tmp_path):
    """In a fresh process (this one has matplotlib already): after on_train_begin the
    first log step imports nothing, so a Ctrl-C there cannot break an import."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from utils.training.viz.report import TrainingReport; "
            "from utils.training.engine.callbacks import TrainerState, TrainerControl; "
            "assert 'matplotlib.figure' not in sys.modules; "
            f"TrainingReport({str(tmp_path)!r}, viz_interval=5).on_train_begin(TrainerState(), TrainerControl()); "
            "print(all(m in sys.modules for m in ('matplotlib.figure', 'matplotlib.backends.backend_agg')))")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


def test_the_report_at_an_eval_step_waits_for_that_steps_evaluation_and_samples(tmp_path):
    """The trainer logs, then evaluates, then samples at one sync point: the report drawn at
    that step has its val point and samples (it was drawn before them), and no samples row
    before there are samples."""
    from types import SimpleNamespace

    rep = TrainingReport(tmp_path, viz_interval=10)
    state = SimpleNamespace(step=0)
    control = SimpleNamespace(should_evaluate=False, should_sample=False)
    rep.on_train_begin(state, control, config={})
    for step in (5, 10):
        state.step = step
        due = step == 10
        control.should_evaluate = control.should_sample = due
        rep.on_log(state, control, logs={"train_loss": 3.0 - step / 10, "tokens_per_sec": 100.0})
        assert not rep.written  # step 10 waits for its evaluation and samples
        if due:
            rep.on_evaluate(state, control, metrics={"val_loss": 2.5})
            assert not rep.written
            rep.on_sample(state, control, samples=[{"prompt": "a", "output": "b", "accuracy": 0.5}])
    assert [p.name for p in rep.written] == ["step_000010.png"]
    assert len(rep.history["eval"]) == 1 and len(rep.samples) == 1
    assert any(ax.tables for ax in rep.figure().axes)
    rep.samples.clear()
    assert not any(ax.tables for ax in rep.figure().axes)  # no "no samples yet" row: no samples row at all

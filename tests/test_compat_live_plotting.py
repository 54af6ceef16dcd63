"""compat/live_plotting.py: the seed's LivePlotter calls on a subclass of ours, which still
takes our callback events and arguments (the old path utils.training.live_plotting gives it)."""

from __future__ import annotations

import io

from test_live_plotting import replay
from test_run_log import shared_smoke_run

from utils.training.compat.live_plotting import CompactLivePlotter, LivePlotter
from utils.training.viz import live_plotting as core


def test_the_old_path_gives_the_seed_class_with_the_core_modules_names():
    import utils.training.live_plotting as old

    assert old.LivePlotter is LivePlotter and old.CompactLivePlotter is CompactLivePlotter
    assert issubclass(LivePlotter, core.LivePlotter) and old.FULL_TITLES == core.FULL_TITLES
    assert not hasattr(core.LivePlotter, "update") and not hasattr(core, "CompactLivePlotter")


def test_seed_epochs_draw_accuracy_on_an_epoch_axis(tmp_path):
    p = LivePlotter(["loss", "perplexity", "accuracy"], mode="text", stream=io.StringIO())
    for e in range(3):
        p.update(e, {"train/loss": 3.0 - e, "train/accuracy": 0.3 + 0.1 * e}, {"loss": 3.2 - e})
    p.save(tmp_path / "c.png", dpi=60)
    assert list(p.axes) == ["Loss", "Perplexity", "Learning rate", "Accuracy"]
    assert p.axes["Accuracy"].get_lines()[0].get_ydata().tolist() == [0.3, 0.4, 0.5]
    assert all(ax.get_xlabel() in ("epoch", "") for ax in p.axes.values())
    assert p.axes["Loss"].get_title() == "Loss (best val 1.200 at epoch 2)"


def test_our_callback_events_and_arguments_still_work():
    out = io.StringIO()
    p = LivePlotter(0.0, mode="text", stream=out)  # ours: LivePlotter(min_interval_s, ...)
    assert p.min_interval_s == 0.0
    doc = replay(shared_smoke_run(), [p])
    assert p.train["step"][-1] == doc["train"][-1]["step"] and p.x_label == "step"
    assert out.getvalue().splitlines()[0].split()[0] == "step"
    c = CompactLivePlotter(mode="text")
    c.update(0, 2.0, 2.1)
    assert c.val["val_loss"] == [2.1]

"""compat/dashboard.py: the seed notebook's TrainingDashboard (issue 22 section 3): its
errors, its layout (summary card over six panels, N/A panels, the gradient warning band),
drawn with our panels; our calls through the class still draw ours."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from utils.training.compat.dashboard import TrainingDashboard
from utils.training.compat.training_config import TrainingConfig

TITLES = ["Loss Curves", "Perplexity (lower is better)", "Accuracy", "Learning Rate Schedule", "Gradient Norms",
          "Training Time per Epoch"]


def frame(n=4, grad=(0.8, 1.2, 0.9, 0.7), grad_column="gradients/pre_clip_norm"):
    return pd.DataFrame({"epoch": range(n), "train/loss": np.linspace(3.0, 2.1, n),
                         "val/loss": [3.1, 2.6, 2.4, 2.5][:n], "val/perplexity": np.exp([3.1, 2.6, 2.4, 2.5][:n]),
                         "train/accuracy": np.linspace(0.3, 0.45, n), "val/accuracy": np.linspace(0.3, 0.4, n),
                         "learning_rate": [1e-4, 5e-4, 4e-4, 2e-4][:n], grad_column: list(grad)[:n],
                         "epoch_duration": [30.0] * n})


def band(ax):
    return [p for p in ax.patches if p.get_label().startswith("norm > 5")]


@pytest.mark.parametrize("figsize, message", [((18,), r"figsize must be tuple of 2 ints, got \(18,\)"),
                                              ((18, -12), r"figsize dimensions must be positive, got \(18, -12\)"),
                                              ("big", "figsize must be tuple of 2 ints")])
def test_bad_figsize(figsize, message):
    with pytest.raises(ValueError, match=message):
        TrainingDashboard(figsize=figsize)


def test_bad_frames():
    dash = TrainingDashboard()
    with pytest.raises(ValueError, match="DataFrame is empty"):
        dash.plot(pd.DataFrame())
    with pytest.raises(ValueError, match=r"Missing required columns.*val/loss"):
        dash.plot(pd.DataFrame({"epoch": [0], "train/loss": [3.0]}))
    with pytest.raises(ValueError, match=r"Missing required columns.*epoch"):
        dash.plot(pd.DataFrame({"train/loss": [3.0], "val/loss": [3.1]}))


def test_save_before_plot_and_unsupported_format(tmp_path):
    dash = TrainingDashboard()
    with pytest.raises(RuntimeError, match=r"Must call plot\(\) before save\(\)"):
        dash.save(tmp_path / "d.png")
    with pytest.raises(ValueError, match=r"Must call plot\(\) before save\(\)"):  # also a ValueError, as ours was
        dash.save(tmp_path / "d.png")
    dash.plot(frame())
    with pytest.raises(ValueError, match=r"Unsupported format.*jpg"):
        dash.save(tmp_path / "x.jpg")
    assert not (tmp_path / "x.jpg").exists()
    assert dash.save(tmp_path / "d.png", dpi=40).stat().st_size > 10_000


def test_layout_summary_card_and_panels():
    fig = TrainingDashboard(figsize=(16, 10)).plot(frame(), config={"learning_rate": 5e-4, "batch_size": 8},
                                                   title="seed loop")
    card, panels = fig.axes[0], fig.axes[1:]
    assert not card.axison and fig.get_suptitle() == "seed loop"
    text = card.texts[0].get_text()
    assert "Config: lr=0.0005, batch=8, epochs=4" in text and "Best Epoch: 2 (val_loss=2.4000)" in text
    assert [ax.get_title() for ax in panels] == TITLES and all(ax.axison for ax in panels)
    assert tuple(fig.get_size_inches()) == (16, 10)
    loss = panels[0]
    np.testing.assert_array_equal(loss.get_lines()[1].get_ydata(), [3.1, 2.6, 2.4, 2.5])
    assert loss.get_xlabel() == "epoch" and list(loss.get_lines()[2].get_xdata()) == [2]  # the best epoch
    np.testing.assert_array_equal(panels[4].get_lines()[0].get_ydata(), [0.8, 1.2, 0.9, 0.7])
    assert not band(panels[4])  # no norm above 5


@pytest.mark.parametrize("config", [{"learning_rate": 1e-3, "batch_size": 16},
                                    TrainingConfig(learning_rate=1e-3, batch_size=16),
                                    SimpleNamespace(learning_rate=1e-3, batch_size=16)])
def test_config_as_dict_to_dict_or_attributes(config):
    fig = TrainingDashboard().plot(frame(), config=config)
    assert "Config: lr=0.001, batch=16, epochs=4" in fig.axes[0].texts[0].get_text()


def test_no_config_no_config_line():
    text = TrainingDashboard().plot(frame()).axes[0].texts[0].get_text()
    assert text.startswith("Best Epoch: 2 (val_loss=2.4000)") and "Config:" not in text


def test_absent_columns_give_na_panels_with_axis_off():
    df = frame()[["epoch", "train/loss", "val/loss"]].assign(**{"val/accuracy": np.nan})  # a column with no value
    panels = TrainingDashboard().plot(df).axes[1:]
    assert [ax.get_title() for ax in panels] == TITLES[:2] + [f"{t} (N/A)" for t in TITLES[2:]]
    assert [ax.axison for ax in panels] == [True, True, False, False, False, False]


@pytest.mark.parametrize("column", ["gradients/pre_clip_norm", "gradient_norm"])
def test_gradient_band_from_five_when_a_norm_exceeds_it(column):
    ax = TrainingDashboard().plot(frame(grad=(1.0, 7.5, 2.0, 1.0), grad_column=column)).axes[5]
    assert ax.get_title() == "Gradient Norms"
    (span,) = band(ax)
    low, high = span.get_y(), span.get_y() + span.get_height()  # data units (axhspan: y in data)
    assert low == pytest.approx(5.0) and high >= 7.5


def test_our_calls_through_the_class_draw_our_dashboard(tmp_path):
    from utils.training.tracking.run_record import RunRecord
    from utils.training.viz.dashboard import PANEL_TITLES

    train = pd.DataFrame({"step": [10, 20, 30], "train_loss": [3.0, 2.5, 2.2], "lr": [1e-3, 1e-3, 5e-4]})
    rec = RunRecord(name="r", source="test", config={}, train=train,
                    eval=pd.DataFrame({"step": [30], "val_loss": [2.4]}))
    dash = TrainingDashboard.from_run(rec)
    assert dash.record is rec
    titles = [ax.get_title() for ax in dash.figure().axes if ax.get_title()]
    assert titles[0] == PANEL_TITLES[0]
    assert dash.save(tmp_path / "ours.png", dpi=40).exists()  # from a run: save() needs no plot()
    assert TrainingDashboard(rec, (10, 6)).figsize == (10, 6) and TrainingDashboard(record=rec).record is rec


def test_old_paths_give_the_seed_class_and_keep_the_core_modules_names():
    import utils.training.dashboard as old
    from utils.training.seed_dashboard import record_from_frame as from_seed_path
    from utils.training.viz.seed_dashboard import record_from_frame as from_viz_path

    from utils.training.viz import dashboard as core

    assert old.TrainingDashboard is TrainingDashboard and issubclass(TrainingDashboard, core.TrainingDashboard)
    assert (old.PANEL_TITLES, old.WIDE_RANGE) == (core.PANEL_TITLES, core.WIDE_RANGE)
    assert from_seed_path is from_viz_path is core.record_from_frame
    assert not hasattr(core.TrainingDashboard, "plot")  # the core class carries no seed code

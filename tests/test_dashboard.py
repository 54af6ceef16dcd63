"""The six-panel dashboard from a run log, an llm-foundry log and a DataFrame."""

from __future__ import annotations

import numpy as np
import pytest
from test_run_log import foundry_logs, needs_foundry, shared_smoke_run

from utils.training.tracking.readers import load_run
from utils.training.viz.dashboard import PANEL_TITLES, TrainingDashboard


@pytest.fixture(scope="module")
def smoke_path():
    return shared_smoke_run()


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_title()]


def test_dashboard_from_a_smoke_run(smoke_path, tmp_path):
    rec = load_run(smoke_path)
    dash = TrainingDashboard.from_run(smoke_path)
    fig = dash.figure()
    axes = _panels(fig)
    assert [ax.get_title() for ax in axes] == list(PANEL_TITLES)
    best, best_step = rec.best_val()
    assert f"best val loss {best:.4f} at step {best_step}" in fig.get_suptitle()
    loss = axes[0].get_lines()
    np.testing.assert_array_equal(loss[0].get_ydata(), rec.train["train_loss"])
    np.testing.assert_array_equal(loss[1].get_ydata(), rec.eval["val_loss"])
    assert list(loss[2].get_xdata()) == [best_step]
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), np.exp(rec.train["train_loss"]))
    np.testing.assert_array_equal(axes[3].get_lines()[0].get_ydata(), rec.train["grad_norm"])
    assert axes[3].get_lines()[1].get_ydata()[0] == rec.config["grad_clip"]
    assert len(axes[2].patches) == 1  # the warmup span
    for ax in axes:
        assert ax.get_xlabel() == "step" and ax.get_ylabel()
    for suffix in ("png", "svg"):
        assert dash.save(tmp_path / f"d.{suffix}", dpi=50).stat().st_size > 5_000


@needs_foundry
def test_dashboard_from_an_llm_foundry_log(tmp_path):
    log = foundry_logs()[1]
    rec = load_run(log)
    fig = TrainingDashboard.from_run(rec).figure()
    axes = _panels(fig)
    assert len(axes) == 7 and "derived" in axes[2].get_title()
    np.testing.assert_array_equal(axes[0].get_lines()[0].get_ydata(), rec.train["train_loss"])
    assert axes[3].texts and not axes[3].get_lines()  # llm-foundry logs no grad norm
    assert rec.label in fig.get_suptitle()


def test_dashboard_from_a_dataframe(smoke_path):
    rec = load_run(smoke_path)
    df = rec.train.merge(rec.eval[["step", "val_loss"]], on="step", how="left")
    fig = TrainingDashboard.from_dataframe(df, config=rec.config, name="frame").figure()
    axes = _panels(fig)
    np.testing.assert_array_equal(axes[0].get_lines()[1].get_ydata(), rec.eval["val_loss"])
    np.testing.assert_array_equal(axes[2].get_lines()[0].get_ydata(), rec.train["lr"])


def test_dashboard_of_a_real_session_run_draws_our_clip_and_warmup(tmp_path):
    from utils.training.config import TrainingConfig
    from utils.training.data.sources import TextCorpus, builtin_corpus
    from utils.training.session import ReportingOptions, TrainingSession
    from utils.training.tracking.experiment_db import ExperimentDB

    config = TrainingConfig.preset("smoke", max_steps=20, warmup_ratio=0.2, max_grad_norm=0.5, eval_interval=10)
    corpus = TextCorpus(builtin_corpus()[:3000], name="slice", source="builtin")
    session = TrainingSession(config, tmp_path, corpus=corpus, tracking=ReportingOptions(progress_bar=False))
    session.train()
    session.close()
    with ExperimentDB(tmp_path / "experiments.db") as db:
        from_db = TrainingDashboard.from_db(db, "smoke").figure()
    from_log = TrainingDashboard.from_run(tmp_path / "runs" / "smoke" / "run.json").figure()
    for fig in (from_db, from_log):
        axes = _panels(fig)
        clip_lines = [ln for ln in axes[3].get_lines() if ln.get_label().startswith("clip at")]
        assert len(clip_lines) == 1 and clip_lines[0].get_ydata()[0] == 0.5
        lo, hi = axes[3].get_ylim()
        assert lo < 0.5 < hi  # the threshold is inside the frame
        spans = axes[2].patches
        assert len(spans) == 1 and spans[0].get_label() == "warmup (4 steps)"


@pytest.mark.parametrize("changes,shown,label", [
    ({}, ["learning_rate=0.003"], "lr"),  # the smoke run: one lr
    ({"embedding_lr": 0.016}, ["learning_rate=0.003", "embedding_lr=0.016"], "lr"),
    ({"optimizer": "muon", "muon_lr": 0.02}, ["muon_lr=0.02", "learning_rate=0.003"],
     "lr (AdamW part)"),
    ({"optimizer": "muon", "muon_lr": 0.02, "embedding_lr": 0.016}, ["muon_lr=0.02", "embedding_lr=0.016"],
     "lr (AdamW part)"),
])
def test_the_header_and_lr_legend_name_the_learning_rates_trained_at(smoke_path, changes, shown, label):
    rec = load_run(smoke_path)
    df = rec.train.merge(rec.eval[["step", "val_loss"]], on="step", how="left")
    fig = TrainingDashboard.from_dataframe(df, config={**rec.config, **changes}, name="frame").figure()
    config_line = fig.get_suptitle().splitlines()[2]
    assert [k for k in config_line.split(", ") if "lr" in k or "learning_rate" in k] == shown
    lr_axis = _panels(fig)[2]
    assert lr_axis.get_lines()[0].get_label() == label

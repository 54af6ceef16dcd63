"""plot_run and compare_runs on real runs: all six llm-foundry logs and a smoke training run."""

from __future__ import annotations

import numpy as np
import pytest
from test_run_log import FOUNDRY, foundry_logs, needs_foundry, shared_smoke_run

from utils.training.tracking.readers import load_run, load_runs
from utils.training.viz.analysis import PLOT_RUN_TITLES, compare_runs, plot_run, write_summary_table


@pytest.fixture(scope="module")
def smoke_record():
    return load_run(shared_smoke_run())


def _line(ax, label_prefix):
    return next(ln for ln in ax.get_lines() if ln.get_label().startswith(label_prefix))


def _check_plot_run(rec, fig):
    axes = [ax for ax in fig.axes if ax.get_title()]  # the perplexity scale is a child axis, not a panel
    assert len(axes) == 6
    expected = list(PLOT_RUN_TITLES)
    if rec.col("mfu_pct") is None:
        expected[3] = "Step time"  # no MFU on a CPU: the slot shows the measured step time
    assert [ax.get_title().split(" (")[0].split("\n")[0] for ax in axes] == expected
    tr = rec.train
    loss = _line(axes[0], "train")
    np.testing.assert_array_equal(loss.get_xdata(), tr["step"])
    np.testing.assert_array_equal(loss.get_ydata(), tr["train_loss"])
    if rec.best_val()[1] is not None:
        val = _line(axes[0], "val")
        np.testing.assert_array_equal(val.get_ydata(), rec.eval["val_loss"])
    np.testing.assert_array_equal(_line(axes[1], "lr").get_ydata(), tr["lr"])
    assert ("derived" in axes[1].get_title()) == rec.lr_derived
    np.testing.assert_array_equal(_line(axes[2], "tokens seen").get_ydata(), tr["tokens_seen"])
    for ax in axes:
        if ax.get_lines():
            assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()


@needs_foundry
@pytest.mark.parametrize("log", foundry_logs(), ids=lambda p: p.stem)
def test_plot_run_on_every_llm_foundry_log(log, tmp_path):
    rec = load_run(log)
    fig = plot_run(rec)
    _check_plot_run(rec, fig)
    axes = [ax for ax in fig.axes if ax.get_title()]
    mfu = rec.train.dropna(subset=["mfu_pct"])
    np.testing.assert_array_equal(_line(axes[3], "MFU").get_ydata(), mfu["mfu_pct"])
    assert f"{mfu['mfu_pct'].mean():.3g}" in axes[3].get_title()
    peak = _line(axes[5], "peak allocated")
    np.testing.assert_allclose(peak.get_ydata(), rec.train.dropna(subset=["memory_peak_gb"])["memory_peak_gb"])
    assert any(ln.get_label().startswith("capacity") for ln in axes[5].get_lines())
    assert "Chinchilla" in axes[2].get_title() and "%" in axes[2].get_title()
    assert rec.label in fig.get_suptitle()  # the model name comes from the run


def test_plot_run_on_a_smoke_run(smoke_record, tmp_path):
    fig = plot_run(smoke_record, tmp_path / "smoke.pdf", dpi=50)
    _check_plot_run(smoke_record, fig)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert "no MFU" in axes[3].get_title()  # CPU: no MFU, said once; the step time (if logged) instead
    np.testing.assert_array_equal(_line(axes[5], "process RSS").get_ydata(), smoke_record.train["cpu_rss_gb"])


@needs_foundry
def test_compare_runs_and_summary_table(smoke_record, tmp_path):
    recs = load_runs(FOUNDRY) + [smoke_record]
    fig, df = compare_runs(recs, tmp_path / "compare.png", dpi=50)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == 5 and len(df) == 7
    ax_tok = titled[0]
    assert len(ax_tok.get_lines()) == 7
    for rec, line in zip(recs, ax_tok.get_lines()):
        np.testing.assert_array_equal(line.get_xdata(), rec.train["tokens_seen"])
        np.testing.assert_array_equal(line.get_ydata(), rec.train["train_loss"])
    bars = [p.get_height() for p in titled[2].patches]
    expected = [rec.best_val()[0] for rec in recs]
    np.testing.assert_allclose(bars, np.nan_to_num(expected))
    assert df["n_params"].tolist() == [r.n_params for r in recs]
    csv, md = write_summary_table(df, tmp_path / "t.csv", tmp_path / "t.md")
    lines = md.read_text().splitlines()
    assert len(lines) == 2 + len(df) and "llama3-2.2b-chinchilla" in md.read_text()
    assert csv.read_text().count("\n") == 1 + len(df)


def test_mfu_against_an_estimated_peak_says_so(tmp_path):
    from utils.training.tracking.run_log import RunLogWriter

    def record(estimated: bool):
        path = tmp_path / f"est-{estimated}.json"
        w = RunLogWriter(path)
        w.start({"device": "cuda:0", "world_size": 1, "gpu_name": "NVIDIA A10G", "peak_flops_estimated": estimated})
        for step in (1, 2, 3):
            w.write(step, {"train_loss": 3.0, "tokens_seen": 100 * step, "mfu_pct": 30.0 + step}, "train")
        w.close("completed", {})
        return load_run(path)

    titles = [plot_run(record(flag)).axes[3].get_title() for flag in (True, False)]
    assert "ESTIMATED" in titles[0] and "ESTIMATED" not in titles[1]

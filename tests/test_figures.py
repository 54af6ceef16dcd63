"""Every figure the project draws, checked where people see it (issue 14).

Each figure is built from real data (two real smoke training runs, one on synthetic
tokens; a real Optuna study; real tokenizers on real medical text) and must:
- read at notebook width: every text >= 8 px when the PNG is shown 750 px wide (JupyterLab
  at a 1280-px window with its file browser open), superscripts and subscripts of mathtext
  included (style.unreadable: points x dpi / 72, scaled to the display);
- keep its legends off the data (style.covering_legends);
- say in its title when its run (or study) is the smoke/cpu preset or synthetic tokens.
"""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from utils.training.config import TrainingConfig
from utils.training.data.sources import TextCorpus, builtin_corpus
from utils.training.session import ReportingOptions, TrainingSession
from utils.training.summary import format_summary
from utils.training.text import caveat, table_text, tidy_table
from utils.training.viz.style import EXPORT_DPI, MIN_TEXT_PX, covering_legends, unreadable

SMOKE_NOTE = "smoke preset: not a result"
SYNTHETIC_NOTE = "smoke preset, synthetic tokens: not a result"


def _session(root, **overrides) -> TrainingSession:
    config = TrainingConfig.preset("smoke", max_steps=12, eval_interval=4, log_interval=2, checkpoint_interval=12,
                                   **overrides)
    corpus = None if overrides.get("data_source") == "synthetic" else TextCorpus(
        builtin_corpus()[:3000], name="icd10cm-slice", source="builtin")
    return TrainingSession(config, root, corpus=corpus,
                           tracking=ReportingOptions(progress_bar=False, live_plot=True, viz_interval=12))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real smoke runs in one workspace: built-in text, and synthetic tokens."""
    root = tmp_path_factory.mktemp("figures-ws")
    out = {}
    for name, extra in (("text", {}), ("synthetic", {"data_source": "synthetic"})):
        s = _session(root, run_name=f"fig-{name}", **extra)
        s.prepare()
        summary = s.summary()
        result = s.train()
        assert result.status == "completed", result.error
        callbacks = s.trainer.callbacks.callbacks
        out[name] = {"session": s, "summary": summary, "result": result,
                     "live": next(c for c in callbacks if type(c).__name__ == "LivePlotter"),
                     "report": next(c for c in callbacks if type(c).__name__ == "TrainingReport")}
    yield out
    for r in out.values():
        r["session"].close()


def _records(runs):
    from utils.training.tracking.readers import load_run

    db = runs["text"]["session"].db
    return [load_run(f"db:fig-{n}", db=db) for n in ("text", "synthetic")]


def _tokenizer_figures(tmp_path):
    from utils.tokenization.figures import bpb_curves, dashboard, pipeline_figure, uniform_bpb
    from utils.tokenization.fitting import fit_zoo
    from utils.tokenization.impact import impact_table
    from utils.tokenization.measure import bucket_table, measure_zoo
    from utils.tokenization.token_boxes import token_boxes
    from utils.tokenization.zoo import baseline_tokenizers

    docs = builtin_corpus()[:1500]
    train, test = docs[:1300], docs[1300:]
    trained, _ = fit_zoo(train, ["bpe", "wordpiece", "unigram", "sp-unigram"], [300, 1000])
    zoo = trained + baseline_tokenizers(train)  # 12 tokenizers, as in the tutorial
    df, ms = measure_zoo(zoo, {"medical test": test, "control": ["The cat sat on the mat, and then it left."] * 20},
                         speed_bytes=20_000)
    buckets = bucket_table(ms, test)
    imp = impact_table({n: ms[(n, "medical test")].per_doc_tokens for n in buckets.index})
    figs, _ = dashboard(df, ms, buckets, imp, tmp_path / "dashboard.png", note=SMOKE_NOTE)
    bpt = {n: ms[(n, "medical test")].bytes_per_token for n in buckets.index}
    largest = {t.family: t for t in trained}
    shown = list(largest.values()) + [t for t in zoo if t not in trained]
    boxes, _ = token_boxes(shown, ["hypertension", "diabetes mellitus", "gastroesophageal reflux"], bpt,
                           tmp_path / "boxes.png")
    curves = {"domain BPE (1000)": [(0.002, 7.1), (0.004, 5.9), (0.008, 5.2)],
              "GPT-2 BPE": [(0.002, 9.0), (0.004, 7.7), (0.008, 6.4)]}
    bpb, _ = bpb_curves(curves, tmp_path / "bpb.png", "Same model, same text", note="smoke: not conclusive",
                        baselines={"domain BPE (1000)": uniform_bpb(1000, 3.1), "GPT-2 BPE": uniform_bpb(50257, 2.4)})
    pipe, _ = pipeline_figure({"load texts": 0.4, "train tokenizers": 6.2, "measure": 3.1, "token boxes": 0.2,
                               "train models": 21.0, "impact + dashboard": 2.2}, tmp_path / "pipe.png")
    return {"tokenizer dashboard 1/3": (figs[0], EXPORT_DPI), "tokenizer dashboard 2/3": (figs[1], EXPORT_DPI),
            "tokenizer dashboard 3/3": (figs[2], EXPORT_DPI), "token boxes": (boxes, None),
            "bpb curves": (bpb, None), "pipeline": (pipe, None)}


def _study(workspace) -> optuna.Study:
    """A real small study: run_study's objective, pruner and attributes (metric, caveat of the
    smoke preset) over 8 trials of the cheap training loop of tests/hpo_fixtures.py."""
    from hpo_fixtures import SPACE, toy_config, toy_train

    from utils.training.hpo import SearchSpace, run_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=8, storage=None, study_name="figs",
                     workspace_dir=workspace, pruner="median", train_fn=toy_train)


@pytest.fixture(scope="module")
def all_figures(runs, tmp_path_factory):
    """{name: (figure, dpi it is shown at)} for every figure the project draws."""
    from utils.training.hpo.figures import study_figures
    from utils.training.viz.analysis import compare_runs, plot_run
    from utils.training.viz.dashboard import TrainingDashboard

    text, synthetic = _records(runs)
    figs = {
        "training dashboard": (TrainingDashboard(text).figure(), EXPORT_DPI),
        "run analysis": (plot_run(text), None),
        "run comparison (2 runs)": (compare_runs([text, synthetic])[0], None),
        "run comparison (1 run)": (compare_runs([text])[0], None),
        "training report": (runs["text"]["report"].figure(), None),
        "live plot": (runs["text"]["live"].fig, None),
    }
    hpo, skipped = study_figures(_study(tmp_path_factory.mktemp("hpo-ws")))
    assert not skipped, skipped
    figs.update({f"hpo {k}": (v, 110) for k, v in hpo.items()})
    figs.update(_tokenizer_figures(tmp_path_factory.mktemp("tok-figs")))
    return figs


def test_every_figure_reads_at_notebook_width_and_keeps_legends_off_the_data(all_figures):
    from utils.training.viz.style import DISPLAY_WIDTH_PX, text_heights

    assert DISPLAY_WIDTH_PX == 750
    problems = {}
    for name, (fig, dpi) in all_figures.items():
        smallest = min(text_heights(fig, dpi))
        print(f"{name}: smallest text {smallest[0]:.1f} px at {DISPLAY_WIDTH_PX} px ({smallest[1]!r})")
        small = unreadable(fig, dpi)
        if small:
            problems[name] = f"{len(small)} texts under {MIN_TEXT_PX} px, e.g. {small[:3]}"
        covering = covering_legends(fig)
        if covering:
            problems[name + " legends"] = f"legends over data in {covering}"
    assert not problems, problems
    assert len(all_figures) >= 16


def test_a_small_font_fails_the_readability_check():
    from utils.training.viz.style import new_figure

    fig = new_figure((18, 15))  # the old 9-panel tokenizer dashboard's size
    ax = fig.subplots()
    ax.set_title("7-point title", fontsize=7)
    heights = dict((t, h) for h, t in unreadable(fig))
    assert heights["7-point title"] == pytest.approx(7 * 750 / 72 / (18 + 0.2), rel=0.05)  # ~4 px


def test_superscripts_of_log_ticks_are_measured():
    from utils.training.viz.style import new_figure, text_heights

    fig = new_figure((5, 3))  # 550 px: shown at its own size
    ax = fig.subplots()
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 1e3)
    ax.set_title(r"$x^{2}$ and $\mathrm{CO}_{2}$", fontsize=10)
    heights = dict((t, h) for h, t in text_heights(fig))
    assert heights[ax.get_title()] == pytest.approx(10 * 0.7 * 110 / 72, rel=0.02)  # the 2s, not the 10-pt x
    exps = [h for t, h in heights.items() if "10^" in t]
    assert exps and max(exps) == pytest.approx(9 * 0.7 * 110 / 72, rel=0.02)  # tick exponents: 6.3 pt


def test_a_legend_over_the_data_is_caught_and_moved():
    from utils.training.viz.style import new_figure, place_legends

    fig = new_figure((6, 4))
    ax = fig.subplots()
    x = np.linspace(0, 1, 50)
    ax.plot(x, np.ones_like(x), label="flat line along the top")
    ax.plot(x, np.zeros_like(x), label="flat line along the bottom")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper right")
    assert covering_legends(fig)
    place_legends(fig)
    assert not covering_legends(fig)


def test_smoke_and_synthetic_runs_say_so_everywhere(runs):
    from utils.training.viz.analysis import compare_runs, plot_run
    from utils.training.viz.dashboard import TrainingDashboard

    text, synthetic = _records(runs)
    for rec, note in ((text, SMOKE_NOTE), (synthetic, SYNTHETIC_NOTE)):
        assert rec.config["preset"] == "smoke" and rec.caveat == note
        assert note in TrainingDashboard(rec).figure().get_suptitle()
        assert note in plot_run(rec).get_suptitle()
    both = compare_runs([text, synthetic])[0].get_suptitle()
    assert SMOKE_NOTE in both and SYNTHETIC_NOTE in both and "Comparison of 2 runs" in both
    assert "Comparison of 1 run\n" in compare_runs([text])[0].get_suptitle()
    for name, note in (("text", SMOKE_NOTE), ("synthetic", SYNTHETIC_NOTE)):
        r = runs[name]
        assert r["summary"]["caveat"] == note and note in format_summary(r["summary"])
        assert r["live"].fig.get_suptitle() == note
        assert note in r["report"].figure().get_suptitle()
        # The database row holds the preset in the run's config.
        assert r["session"].db.get_run(f"fig-{name}")["config"]["preset"] == "smoke"


def test_caveat_wording_and_a_real_run_has_none():
    assert caveat("smoke") == SMOKE_NOTE and caveat("cpu") == "cpu preset: not a result"
    assert caveat("", synthetic=True) == "synthetic tokens: not a result"
    assert caveat("fast") == "" and caveat("") == ""
    assert TrainingConfig.preset("cpu").preset == "cpu" and TrainingConfig().preset == ""
    assert TrainingConfig.from_form(preset="balanced").preset == "balanced"


def test_no_empty_mfu_panel_on_cpu_and_one_duration(runs):
    from utils.training.text import duration
    from utils.training.viz.analysis import plot_run
    from utils.training.viz.dashboard import TrainingDashboard

    text, _ = _records(runs)
    assert text.col("mfu_pct") is None  # a CPU run
    fig = plot_run(text)
    step_panel = fig.axes[3]
    assert step_panel.get_title().startswith("Step time") and "no MFU" in step_panel.get_title()
    assert step_panel.get_lines(), "the MFU slot shows the measured step time"
    elapsed = runs["text"]["result"].state.elapsed_s
    assert f"wall time {duration(elapsed)}" in TrainingDashboard(text).figure().get_suptitle()


def test_report_windows_exist_in_the_run():
    from utils.training.viz.series import MA_WINDOW, ma_window

    assert ma_window(np.arange(2, 13, 2)) == 0  # 6 points over 10 steps: no moving average at all
    assert ma_window(np.arange(0, 80, 2)) == 78 // 4  # shorter than 2 windows: a quarter of the run
    assert ma_window(np.arange(0, 5000, 10)) == MA_WINDOW


def test_tables_fit_100_characters_with_fixed_precision():
    import pandas as pd

    df = pd.DataFrame({f"metric_{i}": np.random.default_rng(i).random(5) for i in range(16)})
    df["duration"] = pd.to_timedelta([6.328395, 1, 2, 3, 4], unit="s")
    shown = tidy_table(df)
    assert shown["duration"].iloc[0] == "6.3 s"
    assert all(len(v.replace("0.", "").lstrip("0")) <= 3 for v in shown["metric_0"])  # 3 significant digits
    text = table_text(shown)
    assert max(len(line) for line in text.splitlines()) <= 100 and "0 days" not in text


def test_tables_show_significant_digits_and_fit_750_px_without_breaking_names():
    import pandas as pd

    from utils.training.text import CELL_PAD_PX, CHAR_PX, table_html, table_parts

    df = pd.DataFrame({"run": ["notebook-run-20261206", "wordpiece-300"], "lr": [0.0010615360772719654, 3e-4],
                       "tokens_per_sec": [807.9583, 12345.6], "steps": [30, 12000]})
    df = df.assign(**{f"metric_{i}": [1.23456, 2.5] for i in range(8)})
    shown = tidy_table(df, digits=4)
    assert list(shown["lr"]) == ["0.001062", "0.0003"] and list(shown["tokens_per_sec"]) == ["808", "12,346"]
    parts = table_parts(shown)
    assert len(parts) > 1 and all(p.columns[0] == "run" for p in parts)  # every part names its rows
    for p in parts:
        width = sum(CELL_PAD_PX + CHAR_PX * max([len(c)] + [len(v) for v in p[c]]) for c in p.columns)
        assert width <= 750
    assert "white-space: nowrap" in table_html(shown)


def test_heatmap_scale_covers_the_cells_and_colours_are_per_tokenizer(all_figures):
    fig = all_figures["tokenizer dashboard 1/3"][0]
    heat = fig.axes[2]
    im = heat.images[0]
    values = np.asarray(im.get_array(), float)
    assert im.norm.vmin <= np.nanmin(values) and im.norm.vmax >= np.nanmax(values)
    colorbar = next(ax for ax in fig.axes if ax.get_ylabel().startswith("%"))
    assert "%" in colorbar.get_ylabel()
    lines = fig.axes[1].get_lines()
    assert len({ln.get_color() for ln in lines}) == len(lines) == 12  # one colour per tokenizer


def test_api_cost_panel_names_price_model_source_and_date(all_figures):
    fig = all_figures["tokenizer dashboard 3/3"][0]
    words = " ".join(t.get_text() for t in fig.texts) + " ".join(ax.get_title() for ax in fig.axes)
    for needed in ("GPT-3.5 Turbo", "$0.50", "https://", "2026", "real tokenizer", "cl100k"):
        assert needed in words, needed


def test_bpb_curves_draw_each_tokenizers_uniform_baseline(all_figures):
    from utils.tokenization.figures import uniform_bpb

    ax = all_figures["bpb curves"][0].axes[0]
    levels = sorted(ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--")
    assert levels == pytest.approx(sorted([uniform_bpb(1000, 3.1), uniform_bpb(50257, 2.4)]))
    assert uniform_bpb(256, 1.0) == pytest.approx(8.0)  # a byte model knows nothing: 8 bits per byte


def test_token_boxes_show_space_tokens_and_fill_the_figure():
    from utils.tokenization.token_boxes import term_pieces
    from utils.tokenization.zoo import ByteTokenizer, gpt2_tokenizer

    assert len(term_pieces(ByteTokenizer(), "diabetes mellitus")) == 17
    assert term_pieces(gpt2_tokenizer(), "pneumonia") == [" pneumonia"]


def test_hpo_figures_with_too_few_trials_are_skipped_with_a_reason():
    from utils.training.hpo.figures import study_figures

    study = optuna.create_study()
    for x in (0.1, 0.2):
        study.enqueue_trial({"x": x})
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=2)
    figs, skipped = study_figures(study)
    assert "needs at least 4 completed trials" in skipped["param_importances"]
    assert "needs at least 3 completed trials" in skipped["parallel_coordinate"]
    ticks = figs["optimization_history"].axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)  # trial numbers, not 0.25 steps


def test_the_context_claim_needs_a_gap_beyond_the_noise(runs):
    from utils.training.summary import context_claim

    assert "within 2 standard errors" in context_claim(5.110, 0.043, 5.112)  # the smoke notebook's numbers
    assert "uses context" in context_claim(4.0, 0.05, 5.1)
    assert "not yet better" in context_claim(5.5, 0.05, 5.1)
    se = runs["text"]["result"].final_metrics["val_loss_se"]
    assert 0 < se < 1  # measured over the evaluated sequences


def test_token_boxes_text_is_at_least_9_px_and_the_figure_fits_its_rows(all_figures):
    from utils.training.viz.style import text_heights

    fig, dpi = all_figures["token boxes"]
    assert min(h for h, _ in text_heights(fig, dpi)) >= 9
    ax = fig.axes[0]
    right = max(p.get_x() + p.get_width() for p in ax.patches)
    assert right > 0.45 * ax.get_xlim()[1]  # the boxes reach across the figure: no blank half


def test_one_run_shows_one_throughput_and_one_wall_time_everywhere(runs, tmp_path):
    """Card line, progress bar, dashboard, run analysis, comparison table (the CLI's .md too):
    tokens seen / wall time of one real smoke run, the same number in each."""
    import re

    from utils.training.text import duration, human
    from utils.training.throughput import throughput_text
    from utils.training.viz.analysis import compare_runs, plot_run, write_summary_table
    from utils.training.viz.dashboard import TrainingDashboard
    from utils.training.viz.series import record_throughput

    state = runs["text"]["result"].state
    tps = state.tokens_seen / state.elapsed_s
    card = throughput_text(state.tokens_seen, state.elapsed_s)  # the notebook's and the CLI's line
    assert card.startswith(f"{tps:,.0f} tokens/s ({state.tokens_seen:,} tokens / {duration(state.elapsed_s)}")
    text, _ = _records(runs)
    assert record_throughput(text) == pytest.approx(tps, rel=1e-6)
    header = TrainingDashboard(text).figure().get_suptitle()
    assert f"{human(tps)} tokens/s" in header and f"wall time {duration(state.elapsed_s)}" in header
    titles = [ax.get_title() for ax in plot_run(text).axes]
    assert any(f"(run {human(tps)} tokens/s,\ntokens seen / wall time)" in t for t in titles), titles
    fig, table = compare_runs([text])
    assert table["tokens_per_sec"].iloc[0] == pytest.approx(tps, rel=1e-6)
    assert table["wall_time_s"].iloc[0] == pytest.approx(state.elapsed_s, rel=1e-6)
    _, md = write_summary_table(table, tmp_path / "c.csv", tmp_path / "c.md")
    assert f"{tps:,.4g}" in md.read_text()
    words = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert f"{tps:,.0f} tokens/s on CPU" in words and f"{state.elapsed_s:.1f} s" in words
    # A CPU run says so: no "(all GPUs)" on any figure of it.
    for f in (TrainingDashboard(text).figure(), plot_run(text), compare_runs(_records(runs))[0],
              runs["text"]["live"].fig, runs["text"]["report"].figure()):
        labels = [ax.get_ylabel() for ax in f.axes]
        assert not any("all GPUs" in lb for lb in labels), labels
        assert any(lb == "tokens/s on CPU" for lb in labels), labels
    assert re.search(r"\d tokens/s", card)


def test_dashboard_is_shown_at_twice_the_display_width_with_the_full_file_beside_it(runs, tmp_path, monkeypatch):
    import IPython.display
    from PIL import Image

    from utils.training.viz.dashboard import TrainingDashboard
    from utils.training.viz.style import DISPLAY_WIDTH_PX

    shown_images = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown_images.append(obj))
    text, _ = _records(runs)
    full, shown = TrainingDashboard(text).show(tmp_path / "dashboard.png")
    assert full == tmp_path / "dashboard.png" and shown.parent == full.parent
    width_full, width_shown = Image.open(full).size[0], Image.open(shown).size[0]
    assert 1.6 * DISPLAY_WIDTH_PX <= width_shown <= 2.4 * DISPLAY_WIDTH_PX < width_full
    assert len(shown_images) == 1 and shown_images[0].filename == str(shown)


def test_hpo_figures_name_the_metric_and_its_unit_and_do_not_magnify_a_small_gap(tmp_path):
    """Two smoke trials 0.005 apart in val_loss: our axis names the metric, its unit and
    direction, spans at least 5% of the best value (the gap is a hair, not the axis' height),
    the title says smoke, and the PNG carries its smallest text for `make look`."""
    from PIL import Image

    from utils.look_lab import KEY, png_text
    from utils.training.hpo.figures import study_figures, write_study_results
    from utils.training.hpo.plots import MIN_SPAN_FRACTION

    study = optuna.create_study()
    study.set_user_attr("metric", "val_loss")
    study.set_user_attr("caveat", SMOKE_NOTE)
    values = iter((5.512, 5.517))

    def objective(trial):
        trial.suggest_categorical("n_layer", [1, 2])
        v = next(values)
        for step in (5, 10):
            trial.report(v + 1 / step, step)
        return v

    study.optimize(objective, n_trials=2)
    figs, _ = study_figures(study)
    for name in ("optimization_history", "intermediate_values"):
        ax = figs[name].axes[0]
        assert ax.get_ylabel().startswith("val_loss (nats/token, lower is better)"), ax.get_ylabel()
        assert SMOKE_NOTE in ax.get_title()
        lo, hi = ax.get_ylim()
        assert hi - lo >= MIN_SPAN_FRACTION * 5.512 - 1e-9
    assert list(figs["intermediate_values"].axes[0].get_xticks()) == [5, 10]  # where the evaluations were
    lo, hi = figs["optimization_history"].axes[0].get_ylim()
    assert 0.005 / (hi - lo) < 0.05  # the two trials' gap is under 5% of the axis
    assert "Objective Value" not in " ".join(ax.get_ylabel() for f in figs.values() for ax in f.axes)
    files = write_study_results(study, tmp_path)["files"]
    png = open(files["optimization_history.png"], "rb").read()
    assert Image.open(files["optimization_history.png"]).size[0] <= 750  # shown at its own size
    assert float(png_text(png)[KEY]) >= MIN_TEXT_PX


def test_no_bars_on_a_log_axis(all_figures):
    """A bar on a log axis starts at an arbitrary axis limit (there is no zero): log panels
    draw dots (tokenizer dashboard panels 1 and 8)."""
    barred = [f"{name}: {ax.get_title()!r}" for name, (fig, _) in all_figures.items() for ax in fig.axes
              if ax.containers and "log" in (ax.get_xscale(), ax.get_yscale())]
    assert not barred, barred

"""Step timing: real optimizer steps of the real trainer, timed, and the full run's wall
time predicted as a sum of parts, each counted as often as the trainer really does it."""

import collections
import math

import pytest

from tests.engine_fixtures import ArrayBatches, make_tokens, tiny_config
from utils.training.config import TrainingConfig
from utils.training.engine.callbacks import TrainerCallback
from utils.training.engine.models import build_model
from utils.training.engine.timing import (
    MAX_WIDTH,
    PresetTiming,
    events,
    format_timings,
    measure_presets,
    run_events,
    time_config,
)
from utils.training.engine.trainer import Trainer


def test_events_count_the_last_step_once():
    assert events(10, 30) == 3 and events(10, 35) == 4 and events(0, 30) == 1 and events(5, 0) == 0


class _Counter(TrainerCallback):
    """Every event the trainer sends, counted; and how many report figures were drawn
    before the run ended (the report's figure at on_train_end comes after the wall time)."""

    def __init__(self, report=None):
        self.n = collections.Counter()
        self.report = report

    def on_log(self, state, control, **kw):
        self.n["logs"] += 1

    def on_evaluate(self, state, control, **kw):
        self.n["evaluations"] += 1

    def on_sample(self, state, control, **kw):
        self.n["samples"] += 1

    def on_save(self, state, control, **kw):
        self.n["checkpoints"] += 1

    def on_train_end(self, state, control, **kw):  # called before the report's own (it comes first)
        self.n["reports"] = len(self.report.written) if self.report is not None else 0


def _real_counts(cfg: TrainingConfig, tmp_path, viz_interval: int = 0) -> dict[str, int]:
    from utils.training.viz.report import TrainingReport

    report = TrainingReport(tmp_path / "run", viz_interval=viz_interval) if viz_interval else None
    counter = _Counter(report)
    tokens = make_tokens(vocab=cfg.vocab_size)
    batches = ArrayBatches(tokens, cfg.batch_size, cfg.block_size)
    val = ArrayBatches(tokens, cfg.batch_size, cfg.block_size, seed=1)
    callbacks = [counter] + ([report] if report else [])
    result = Trainer(cfg, build_model(cfg), batches, val, run_dir=tmp_path / "ckpt", callbacks=callbacks,
                     progress_bar=False).train()
    assert result.status == "completed" and result.state.step == cfg.max_steps
    return {k: counter.n[k] for k in ("logs", "evaluations", "checkpoints", "samples", "reports")}


def test_the_counts_are_the_trainers_in_a_real_smoke_run(tmp_path):
    cfg = TrainingConfig.preset("smoke")  # 30 steps: log 5, eval 10, checkpoints 10, no sample interval
    real = _real_counts(cfg, tmp_path, viz_interval=10)
    assert run_events(cfg, viz_interval=10) == real
    assert real == {"logs": 6, "evaluations": 3, "checkpoints": 3, "samples": 1, "reports": 3}


def test_the_counts_are_the_trainers_when_no_interval_divides_the_budget(tmp_path):
    # 23 steps: the last step does each event once more; the report draws at the first log
    # step at or after each multiple of 5 (8, 12, 16, 20), its last figure after the run.
    cfg = tiny_config(max_steps=23, log_interval=4, eval_interval=7, checkpoint_interval=10, sample_interval=6)
    real = _real_counts(cfg, tmp_path, viz_interval=5)
    assert run_events(cfg, viz_interval=5) == real
    assert real == {"logs": 6, "evaluations": 4, "checkpoints": 3, "samples": 4, "reports": 4}


def test_a_preset_is_timed_with_real_steps_and_every_part_counted():
    from utils.training.viz.report import TrainingReport

    (t,) = measure_presets(["smoke"], vocab_size=512, n_steps=2, report=TrainingReport, viz_interval=10)
    cfg = TrainingConfig.preset("smoke")
    assert t.name == "smoke" and t.error == ""
    assert t.tokens_per_step == cfg.tokens_per_step and t.max_steps == cfg.max_steps
    # Each part measured once by the probe (no claim on how long it took)...
    assert t.seconds_per_step > 0 and t.start_s >= 0
    assert t.eval_s > 0 and t.save_s > 0 and t.sample_s > 0 and t.report_s > 0 and t.export_s > 0
    # ... and counted as often as the run does it.
    n = run_events(cfg, viz_interval=10)
    assert (t.n_evals, t.n_saves, t.n_samples, t.n_reports) == (n["evaluations"], n["checkpoints"], n["samples"],
                                                               n["reports"])
    assert math.isclose(t.run_s, cfg.max_steps * t.seconds_per_step + t.start_s + t.n_evals * t.eval_s
                        + t.n_saves * t.save_s + t.n_samples * t.sample_s + t.n_reports * t.report_s)
    assert math.isclose(t.estimated_total_s, t.run_s + t.export_s)
    assert math.isclose(t.tokens_per_sec, cfg.tokens_per_step / t.seconds_per_step)


def test_without_a_report_none_is_counted():
    (t,) = measure_presets(["smoke"], vocab_size=512, n_steps=1)
    assert t.n_reports == 0 and t.report_s == 0.0
    assert "reports" not in format_timings([t])


def test_a_config_is_labelled_as_this_run_and_formatted():
    cfg = TrainingConfig.preset("smoke", run_name="mine", n_layer=1)
    timings = measure_presets([cfg], vocab_size=512, n_steps=2)
    assert timings[0].name == "mine (this run)"
    table = format_timings(timings)
    assert "mine (this run)" in table and "s/step" in table and "evaluations" in table


def test_time_config_does_not_touch_the_budget_of_the_config():
    cfg = TrainingConfig.preset("smoke", max_steps=1000)
    t = time_config(cfg, n_steps=1)
    assert t.max_steps == 1000 and t.n_evals == run_events(cfg)["evaluations"]  # extrapolated to the budget


def _fake(cfg, *, name="", n_steps, warmup_steps, report=None, viz_interval=0):
    from utils.training.engine.timing import with_counts

    t = PresetTiming(name, 1000, cfg.tokens_per_step, cfg.max_steps, 0.5, eval_s=0.25 * cfg.eval_batches,
                     save_s=0.1, sample_s=1.0, start_s=2.0, report_s=3.0 if report else 0.0, export_s=0.2)
    return with_counts(t, cfg, viz_interval if report else 0)


def test_each_model_is_timed_once_and_short_runs_read_in_seconds(monkeypatch):
    import utils.training.engine.timing as timing
    from utils.training.engine.timing import N_STEPS

    calls = []

    def fake(cfg, **kw):
        calls.append((kw["name"], kw["n_steps"], kw["warmup_steps"]))
        return _fake(cfg, **kw)

    monkeypatch.setattr(timing, "time_config", fake)
    same_model = TrainingConfig.preset("smoke", run_name="mine", eval_interval=5, eval_batches=4)
    timings = measure_presets(["smoke", same_model], vocab_size=512)
    assert calls == [("smoke", N_STEPS, timing.WARMUP_STEPS)] and N_STEPS >= 5  # timed once, after warm-up
    mine = timings[1]
    assert mine.name == "mine (this run)" and mine.seconds_per_step == 0.5
    # the same model's parts, counted for this config: 6 evaluations of twice the batches
    assert mine.n_evals == 6 and mine.eval_s == pytest.approx(2 * timings[0].eval_s)
    assert mine.run_s == pytest.approx(30 * 0.5 + 2.0 + 6 * 1.0 + 3 * 0.1 + 1 * 1.0)
    table = format_timings(timings)
    assert "19.8 s" in table and "24.3 s" in table and " min" not in table  # seconds, as the card writes them


def test_the_table_fits_a_notebook_output_750_px_wide(monkeypatch):
    import utils.training.engine.timing as timing
    from utils.training.viz.report import TrainingReport

    monkeypatch.setattr(timing, "time_config", _fake)
    long_name = TrainingConfig.preset("cpu", run_name="notebook-run")
    timings = measure_presets(["cpu", "fast", "balanced", "quality", long_name], vocab_size=4096,
                              report=TrainingReport, viz_interval=100)
    table = format_timings(timings)
    assert max(len(line) for line in table.splitlines()) <= MAX_WIDTH
    assert "notebook-run (this run)" in table and "100 x 3 s" in table  # quality: 10,000 steps, a report per 100


def test_the_probe_evaluates_a_few_batches_and_scales_to_eval_batches(monkeypatch):
    from utils.training.engine import evaluation
    from utils.training.engine.timing import EVAL_BATCHES

    asked = []
    real = evaluation.evaluate

    def counting(model, batches, n_batches, **kw):
        asked.append(n_batches)
        return real(model, batches, n_batches, **kw)

    monkeypatch.setattr(evaluation, "evaluate", counting)
    cfg = TrainingConfig.preset("smoke", eval_batches=20)
    t = time_config(cfg, n_steps=1)
    assert asked == [EVAL_BATCHES] and EVAL_BATCHES < 20  # 2 batches timed, not the config's 20
    assert t.n_evals == run_events(cfg)["evaluations"] and t.eval_s > 0

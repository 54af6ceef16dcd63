"""Step timing: real optimizer steps of the real trainer, timed, and extrapolated."""

import math

from utils.training.config import TrainingConfig
from utils.training.engine.timing import events, format_timings, measure_presets, time_config


def test_events_count_the_last_step_once():
    assert events(10, 30) == 3 and events(10, 35) == 4 and events(0, 30) == 1 and events(5, 0) == 0


def test_a_preset_is_timed_with_real_steps():
    (t,) = measure_presets(["smoke"], vocab_size=512, n_steps=2)
    cfg = TrainingConfig.preset("smoke")
    assert t.name == "smoke" and t.error == ""
    assert t.tokens_per_step == cfg.tokens_per_step and t.max_steps == cfg.max_steps
    assert 0 < t.seconds_per_step < 60
    # The full run counts what happens between steps, each timed once by the probe.
    assert t.eval_s > 0 and t.save_s > 0 and t.sample_s > 0
    assert (t.n_evals, t.n_saves, t.n_samples) == (events(cfg.eval_interval, cfg.max_steps),
                                                  events(cfg.checkpoint_interval, cfg.max_steps), 1)
    assert math.isclose(t.estimated_total_s, cfg.max_steps * t.seconds_per_step + t.n_evals * t.eval_s
                        + t.n_saves * t.save_s + t.n_samples * t.sample_s)
    assert math.isclose(t.tokens_per_sec, cfg.tokens_per_step / t.seconds_per_step)


def test_a_config_is_labelled_as_this_run_and_formatted():
    cfg = TrainingConfig.preset("smoke", run_name="mine", n_layer=1)
    timings = measure_presets([cfg], vocab_size=512, n_steps=2)
    assert timings[0].name == "mine (this run)"
    table = format_timings(timings)
    assert "mine (this run)" in table and "s/step" in table


def test_time_config_does_not_touch_the_budget_of_the_config():
    cfg = TrainingConfig.preset("smoke", max_steps=1000)
    t = time_config(cfg, n_steps=1)
    assert t.max_steps == 1000  # extrapolated to the real budget, measured on 2 steps


def test_each_model_is_timed_once_and_short_runs_read_in_seconds(monkeypatch):
    import utils.training.engine.timing as timing
    from utils.training.engine.timing import N_STEPS, PresetTiming

    calls = []

    def fake(cfg, *, name="", n_steps, warmup_steps):
        calls.append((name, n_steps, warmup_steps))
        return PresetTiming(name, 1000, cfg.tokens_per_step, cfg.max_steps, 0.5)

    monkeypatch.setattr(timing, "time_config", fake)
    same_model = TrainingConfig.preset("smoke", run_name="mine")  # the smoke preset's model, another name
    timings = measure_presets(["smoke", same_model], vocab_size=512)
    assert calls == [("smoke", N_STEPS, timing.WARMUP_STEPS)] and N_STEPS >= 5  # timed once, after warm-up
    assert timings[1].name == "mine (this run)" and timings[1].seconds_per_step == 0.5
    table = format_timings(timings)
    assert "15 s" in table and " min" not in table  # 30 steps x 0.5 s: seconds under a minute

"""The micro-batch (engine/batch_size.py): probing for batch_size="auto", the CPU's
no-probe choice, and the out-of-memory back-off that redoes a step exactly, driven on the
CPU through the DeviceOps seam by an allocator that raises torch.OutOfMemoryError above a
chosen micro-batch."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import ArrayBatches, make_tokens, tiny_config

from utils.training.config import TrainingConfig
from utils.training.config_rules import ConfigError
from utils.training.engine.batch_size import DeviceOps, OOMBackOff, choose_batch, probe_micro_batch
from utils.training.engine.callbacks import TrainerCallback
from utils.training.engine.models import build_model
from utils.training.engine.trainer import Trainer

torch.set_num_threads(1)


class OOMAbove(DeviceOps):
    """A device whose allocator fails every pass of more than `limit` sequences once armed."""

    def __init__(self, limit: int, armed: bool = True):
        super().__init__("cpu")
        self.limit, self.armed, self.sizes, self.freed = limit, armed, [], 0

    @property
    def probes(self) -> bool:
        return True

    def forward_backward(self, model, x, y, divisor):
        self.sizes.append(x.shape[0])
        if self.armed and x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected: {x.shape[0]} > {self.limit})")
        return super().forward_backward(model, x, y, divisor)

    def free(self):
        self.freed += 1
        super().free()


class Recorded(ArrayBatches):
    """ArrayBatches that records the position of every batch drawn."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.drawn = []

    def next_batch(self):
        self.drawn.append(self.position)
        return super().next_batch()


class ArmAt(TrainerCallback):
    """Arms the allocator after step `step - 1`, so the OOM hits step `step`."""

    def __init__(self, ops, step):
        self.ops, self.step = ops, step

    def on_step_end(self, state, control, **kw):
        if state.step == self.step - 1:
            self.ops.armed = True


class Losses(TrainerCallback):
    def __init__(self):
        self.by_step = {}

    def on_log(self, state, control, logs, **kw):
        self.by_step[state.step] = logs["train_loss"]


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state, control, **kw):
        if state.step == self.step:
            raise KeyboardInterrupt


def run(tmp_path, ops, callbacks=(), max_steps=10, name="run", **cfg_kw):
    cfg = tiny_config(max_steps=max_steps, log_interval=1, eval_interval=10**6, checkpoint_interval=3,
                      batch_size=8, gradient_accumulation_steps=2, dropout=0.0, **cfg_kw)
    batches = Recorded(make_tokens(), cfg.batch_size, cfg.block_size, seed=1)
    losses = Losses()
    torch.manual_seed(0)
    trainer = Trainer(cfg, build_model(cfg), batches, None, run_dir=tmp_path / name,
                      callbacks=[losses, *callbacks], progress_bar=False, device_ops=ops)
    return trainer, batches, losses


# -- probing ---------------------------------------------------------------------------

def test_probing_picks_the_largest_divisor_that_fits():
    model, ops = build_model(tiny_config()), OOMAbove(limit=5)
    fits, tried, peak = probe_micro_batch(ops, model, rank_batch=16, block_size=16, vocab_size=300)
    assert (fits, tried, peak) == (4, [1, 2, 4, 8], None)
    assert ops.sizes == [1, 2, 4, 8] and ops.freed >= len(tried)  # memory freed after every try
    assert all(p.grad is None for p in model.parameters())  # the probe's gradients are dropped


def test_probing_refuses_when_nothing_fits():
    with pytest.raises(ConfigError, match="batch_size") as err:
        probe_micro_batch(OOMAbove(limit=0), build_model(tiny_config()), rank_batch=8, block_size=16, vocab_size=300)
    assert err.value.fields == ["batch_size"]


def test_auto_keeps_the_global_batch_and_raises_the_accumulation():
    cfg = tiny_config(preset="smoke", batch_size="auto", gradient_accumulation_steps=2)  # smoke: 8 per micro-step
    assert cfg.global_batch == 16 and cfg.tokens_per_step == 16 * cfg.block_size
    choice = choose_batch(cfg, build_model(cfg), OOMAbove(limit=5))
    assert (choice.micro_batch, choice.accumulation, choice.how) == (4, 4, "measured")
    assert choice.global_batch == 16 and "micro-batch 4 fits" in choice.note and "8 did not" in choice.note
    resolved = cfg.replace(**choice.config_values())
    assert resolved.rank_batch(1) == (4, 4) and resolved.tokens_per_step == cfg.tokens_per_step
    # two processes: each rank's share is 8 sequences; the global batch stays 16
    two = choose_batch(cfg, build_model(cfg), OOMAbove(limit=3), world_size=2)
    assert (two.micro_batch, two.accumulation, two.global_batch) == (2, 4, 16)
    assert cfg.replace(**two.config_values()).rank_batch(2) == (2, 4)


def test_auto_on_cpu_takes_the_presets_micro_batch_without_probing():
    cfg = tiny_config(preset="smoke", batch_size="auto")
    choice = choose_batch(cfg, None, DeviceOps("cpu"))  # no model needed: nothing is run
    assert (choice.micro_batch, choice.accumulation, choice.how) == (8, 1, "preset")
    assert "not probed" in choice.note and "cpu" in choice.note


def test_a_number_is_kept_and_a_resume_reuses_the_stored_choice():
    cfg = tiny_config(batch_size=8, gradient_accumulation_steps=2)
    assert choose_batch(cfg, None, OOMAbove(limit=1)).how == "config"  # never probed
    auto = tiny_config(preset="smoke", batch_size="auto", gradient_accumulation_steps=2)
    again = choose_batch(auto, None, OOMAbove(limit=1), stored=(4, 4))
    assert (again.micro_batch, again.accumulation, again.how) == (4, 4, "resumed")
    with pytest.raises(ConfigError, match="global batch"):
        choose_batch(auto, None, OOMAbove(limit=1), stored=(4, 8))


def test_config_accepts_auto_on_every_path_and_refuses_other_strings(tmp_path):
    from utils.training.config import parse_overrides

    assert TrainingConfig.from_dict({"batch_size": "auto"}).batch_size == "auto"
    assert parse_overrides(["batch_size=auto"]) == {"batch_size": "auto"}
    assert TrainingConfig.from_form(preset="fast", batch_size="auto").batch_size == "auto"
    assert TrainingConfig.from_form(preset="fast", batch_size="16").batch_size == 16
    path = TrainingConfig(batch_size="auto").save(tmp_path / "c.json")
    assert TrainingConfig.load(path).batch_size == "auto"
    for bad in ("big", "Auto", "", "16"):
        with pytest.raises(ConfigError, match="batch_size") as err:
            TrainingConfig(batch_size=bad)
        assert err.value.fields == ["batch_size"]
    with pytest.raises(ConfigError, match="an integer or 'auto'"):
        parse_overrides(["batch_size=lots"])


def test_the_hpo_space_takes_auto_as_a_batch_size_choice():
    from utils.training.hpo.space import SearchSpace

    space = SearchSpace.from_dict({"batch_size": {"type": "categorical", "choices": [8, "auto"]}})
    assert space.params["batch_size"].choices == (8, "auto")


# -- the back-off ----------------------------------------------------------------------

def test_backoff_helper_rewinds_and_halves():
    ops = OOMAbove(limit=2)
    batches = ArrayBatches(make_tokens(), 8, 16)
    said = []
    backoff = OOMBackOff(ops, batch_size=8, say=said.append)

    def attempt(split):
        for _ in range(2):  # two drawn batches per step
            x, _ = batches.next_batch()
            for part in x.chunk(split):
                if part.shape[0] > ops.limit:
                    raise torch.OutOfMemoryError("injected")
        return split

    assert backoff.run(attempt, batches, lambda: None, step=5, accumulation=2) == 4
    assert backoff.micro_batch == 2 and backoff.backoffs == 2 and batches.position == 2
    assert said[0] == ("Out of memory at step 5: micro-batch 8 -> 4, accumulation 2 -> 4 (same global batch); "
                       "redoing the step from the same batch")
    with pytest.raises(ValueError, match="divide"):
        backoff.set_micro_batch(3)


def test_a_backoff_redoes_the_step_from_the_same_batch_and_matches_a_smaller_run(tmp_path, capsys):
    plain, plain_batches, plain_losses = run(tmp_path, OOMAbove(limit=8, armed=False), name="plain")
    plain.train()
    ops = OOMAbove(limit=4, armed=False)
    trainer, batches, losses = run(tmp_path, ops, [ArmAt(ops, 5)], name="backoff")
    result = trainer.train()
    small, small_batches, small_losses = run(tmp_path, OOMAbove(limit=4), name="small")  # 4 per pass from step 1
    small.train()
    assert "Out of memory at step 5: micro-batch 8 -> 4, accumulation 2 -> 4" in capsys.readouterr().out
    assert result.state.step == 10 and result.state.micro_batch == 4 and small.state.micro_batch == 4
    # Same data order: step 5's two batches are drawn again after the failed pass, nothing else.
    assert plain_batches.drawn == list(range(20))  # two batches per step
    assert batches.drawn == [*range(8), 8, *range(8, 20)]  # step 5's first batch failed, was drawn again
    assert small_batches.drawn == [0, *range(20)]  # the first step's first batch, redone
    assert batches.position == plain_batches.position == 20
    # Before the back-off: the plain run, bit for bit; from it on: the run with 4 per pass,
    # up to the summation order of the gradient.
    for step in range(1, 5):
        assert losses.by_step[step] == plain_losses.by_step[step]
    for step in range(5, 11):
        assert losses.by_step[step] == pytest.approx(small_losses.by_step[step], rel=1e-5)
    assert trainer.last_logs["micro_batch"] == 4 and "micro_batch" not in plain.last_logs


def test_a_resume_after_a_backoff_keeps_the_smaller_pass_and_continues_exactly(tmp_path):
    ops = OOMAbove(limit=4, armed=False)
    whole, _, whole_losses = run(tmp_path, ops, [ArmAt(ops, 2)], name="whole")
    whole.train()
    ops = OOMAbove(limit=4, armed=False)
    first, _, _ = run(tmp_path, ops, [ArmAt(ops, 2), StopAt(6)], name="cut")
    with pytest.raises(KeyboardInterrupt):
        first.train()
    fresh = OOMAbove(limit=4, armed=False)  # a new process: the allocator would take 8 again
    second, batches, losses = run(tmp_path, fresh, name="cut")
    result = second.train()
    assert result.state.resumed_from_step == 6 and result.state.step == 10
    assert set(fresh.sizes) == {4} and second.backoff.micro_batch == 4  # never tried 8 again
    assert batches.position == 20
    for step in range(7, 11):
        assert losses.by_step[step] == whole_losses.by_step[step]


def test_an_oom_at_a_micro_batch_of_one_is_raised(tmp_path, capsys):
    trainer, _, _ = run(tmp_path, OOMAbove(limit=0), max_steps=2)
    with pytest.raises(torch.OutOfMemoryError):
        trainer.train()
    assert "with a micro-batch of 1, which cannot be halved" in capsys.readouterr().out


# -- the session: every path of "auto", the stored facts, the card, a resume -------------

def test_an_auto_session_measures_stores_shows_and_resumes_its_micro_batch(tmp_path, capsys):
    import json

    from utils.training.data.sources import TextCorpus, builtin_corpus
    from utils.training.session import ReportingOptions, TrainingSession
    from utils.training.summary import format_summary

    corpus = TextCorpus(builtin_corpus()[:4000], name="icd10cm-slice", source="builtin")
    config = TrainingConfig.preset("smoke", batch_size="auto", max_steps=4, eval_interval=2, checkpoint_interval=2)
    quiet = ReportingOptions(progress_bar=False)
    session = TrainingSession(config, tmp_path, corpus=corpus, tracking=quiet, device_ops=OOMAbove(limit=5))
    card = session.summary()
    assert session.requested_config.batch_size == "auto"
    assert (session.config.batch_size, session.config.gradient_accumulation_steps) == (4, 2)
    assert session.config.tokens_per_step == config.tokens_per_step  # the preset's global batch of 8
    assert session.data.train.batch_size == 4  # batches drawn at the chosen size
    assert (session.facts.micro_batch, session.facts.accumulation) == (4, 2)
    assert "Batch: micro-batch 4 x accumulation 2 x 1 process (auto on cpu: micro-batch 4 fits" in \
        capsys.readouterr().out
    text = format_summary(card)
    assert "4 x accumulation 2 x 1 process = 8 sequences per step (auto on cpu: micro-batch 4 fits" in text
    assert "at micro-batch 4" in text
    session.train()
    name = session.config.run_name
    run_json = json.loads(session.workspace.run_log_path(name).read_text())
    stored = session.db.get_run(name)
    for info in (run_json["run_info"], stored["run_info"]):
        assert (info["micro_batch"], info["accumulation"]) == (4, 2) and "fits" in info["batch_choice"]
    session.close()
    # The next session resumes with the checkpointed choice, even where nothing is probed.
    again = TrainingSession(config.replace(max_steps=4), tmp_path, corpus=corpus, tracking=quiet,
                            device_ops=DeviceOps("cpu"))
    again.prepare()
    assert again.batch.how == "resumed" and again.config.batch_size == 4
    assert again.train().state.resumed_from_step == 4
    again.close()


def test_an_auto_session_on_cpu_uses_the_presets_micro_batch_and_says_so(tmp_path, capsys):
    from utils.training.data.sources import TextCorpus, builtin_corpus
    from utils.training.session import TrainingSession

    corpus = TextCorpus(builtin_corpus()[:4000], name="icd10cm-slice", source="builtin")
    session = TrainingSession(TrainingConfig.preset("smoke", batch_size="auto"), tmp_path, corpus=corpus,
                              device_ops=DeviceOps("cpu"))
    session.prepare()
    assert session.config.batch_size == 8 and session.batch.how == "preset"
    assert ("Batch: micro-batch 8 x accumulation 1 x 1 process (auto on cpu: the preset's micro-batch, not probed "
            "(out-of-memory is a GPU limit))") in capsys.readouterr().out
    session.close()


def test_the_train_command_takes_auto_from_set_and_from_a_config_file(tmp_path):
    from utils.training.cli import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(["train", "--preset", "fast", "--set", "batch_size=auto"]))
    assert cfg.batch_size == "auto" and cfg.global_batch == 32 and cfg.rank_batch(2) == (16, 1)
    path = TrainingConfig.preset("quality", batch_size="auto").save(tmp_path / "auto.json")
    cfg = config_from_args(build_parser().parse_args(["train", "--config", str(path)]))
    assert (cfg.batch_size, cfg.global_batch) == ("auto", 64)


def test_the_card_says_whether_the_planned_steps_fit_the_runtime():
    from utils.training.summary import COLAB_LIMIT_S, STOP_MARGIN_S, stop_before_limit_s, time_fit

    assert stop_before_limit_s(True) == COLAB_LIMIT_S - STOP_MARGIN_S and stop_before_limit_s(False) == 0.0
    assert time_fit(1000, 2.0, COLAB_LIMIT_S).endswith("= 0.56 h: fits the runtime's 12 h limit")
    too_long = time_fit(30_000, 2.0, COLAB_LIMIT_S)
    assert "more than the runtime's 12 h limit; set time_limit_s 41,400" in too_long
    stopped = time_fit(30_000, 2.0, COLAB_LIMIT_S, time_limit_s=41_400)
    assert "time_limit_s 41,400 stops it checkpointed near step 20,700; run again to resume" in stopped
    assert time_fit(10, 1.0, 0.0).endswith("no runtime limit known (not Colab)")

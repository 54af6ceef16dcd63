"""The training loop: metrics vocabulary, failure statuses, NaN handling, resume
rules, export, and the device/precision/optimizer selection logic."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from engine_fixtures import ArrayBatches, make_tokens, tiny_config

from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerCallback
from utils.training.engine.checkpoint import non_finite_tensors
from utils.training.engine.device import autocast_context, resolve_precision
from utils.training.engine.models import build_model
from utils.training.engine.optimizers import adamw_kwargs, build_scheduler, param_groups
from utils.training.engine.resume import ResumeError
from utils.training.engine.trainer import Trainer

torch.set_num_threads(1)  # 2 shared cores: one thread is several times faster for these tiny models

TRAIN_KEYS = {"step", "train_loss", "lr", "grad_norm", "step_time_ms", "tokens_per_sec", "tokens_seen",
              "elapsed_s", "train_accuracy"}
EVAL_KEYS = {"step", "val_loss", "val_perplexity", "val_accuracy", "val_bpb", "val_loss_se"}


class Recorder(TrainerCallback):
    def __init__(self):
        self.events, self.logs, self.evals, self.saves, self.end = [], [], [], [], None

    def on_train_begin(self, state, control, **kw):
        self.events.append("begin")
        self.begin_kwargs = kw

    def on_step_end(self, state, control, **kw):
        self.events.append("step")

    def on_log(self, state, control, logs, **kw):
        self.logs.append(dict(logs))

    def on_evaluate(self, state, control, metrics, **kw):
        self.evals.append(dict(metrics))

    def on_save(self, state, control, checkpoint_path, **kw):
        self.saves.append(checkpoint_path)

    def on_train_end(self, state, control, status, error, **kw):
        self.events.append("end")
        self.end = (status, error)


def make_trainer(tmp_path, cfg=None, callbacks=(), **kw):
    cfg = cfg or tiny_config()
    train = ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1)
    val = ArrayBatches(make_tokens(seed=5), cfg.batch_size, cfg.block_size)
    return Trainer(cfg, build_model(cfg), train, val, run_dir=tmp_path / "run", callbacks=callbacks,
                   progress_bar=False, **kw)


def test_trains_and_reports_the_vocabulary(tmp_path):
    rec = Recorder()
    cfg = tiny_config(max_steps=24, dropout=0.0, learning_rate=1e-2)
    result = make_trainer(tmp_path, cfg, [rec], bytes_per_token=1.5).train()
    assert result.status == RunStatus.COMPLETED and result.state.step == 24
    assert [len(x) for x in (rec.logs, rec.evals)] == [12, 6]
    assert all(set(log) == TRAIN_KEYS for log in rec.logs)
    assert all(set(m) == EVAL_KEYS for m in rec.evals)
    assert rec.events[0] == "begin" and rec.events[-1] == "end" and rec.events.count("step") == 24
    assert rec.end == (RunStatus.COMPLETED, None)
    assert rec.logs[-1]["tokens_seen"] == 24 * cfg.tokens_per_step
    assert rec.logs[-1]["train_loss"] < rec.logs[0]["train_loss"] - 0.3  # it learns
    m = rec.evals[-1]
    assert m["val_perplexity"] == pytest.approx(math.exp(m["val_loss"]))
    assert m["val_bpb"] == pytest.approx(m["val_loss"] / math.log(2) / 1.5)
    info = rec.begin_kwargs["run_info"]
    assert info["flops_per_token"] > 6 * info["non_embedding_parameters"] and info["world_size"] == 1
    assert result.final_metrics["val_loss"] == m["val_loss"]


def test_nan_loss_stops_naming_the_step_and_saves_nothing_non_finite(tmp_path, capsys):
    cfg = tiny_config(max_steps=20, checkpoint_interval=2, log_interval=4)
    trainer = make_trainer(tmp_path, cfg, [rec := Recorder()])
    calls = {"n": 0}

    def poison(module, inputs, output):  # the 7th training forward pass (step 7) turns NaN
        calls["n"] += module.training
        return output * float("nan") if module.training and calls["n"] == 7 else output

    trainer.raw_model.lm_head.register_forward_hook(poison)
    result = trainer.train()
    assert result.status == RunStatus.FAILED and "step 7" in result.error
    assert rec.end[0] == RunStatus.FAILED and "step 7" in str(rec.end[1])
    assert "step 7" in capsys.readouterr().err
    ckpts = trainer.checkpoints.checkpoints()
    assert ckpts and max(int(p.stem[5:]) for p in ckpts) <= 6
    for p in ckpts:
        state = torch.load(p, weights_only=True)
        assert non_finite_tensors(state["model"]) == []


def test_callback_error_fails_the_run_and_reraises(tmp_path):
    class Boom(TrainerCallback):
        def on_step_end(self, state, control, **kw):
            if state.step == 3:
                raise RuntimeError("sink broke")

    rec = Recorder()
    with pytest.raises(RuntimeError, match="sink broke"):
        make_trainer(tmp_path, callbacks=[rec, Boom()]).train()
    assert rec.end[0] == RunStatus.FAILED and isinstance(rec.end[1], RuntimeError)


def test_keyboard_interrupt_saves_and_reraises(tmp_path):
    class CtrlC(TrainerCallback):
        def on_step_end(self, state, control, **kw):
            if state.step == 5:
                raise KeyboardInterrupt

    rec = Recorder()
    trainer = make_trainer(tmp_path, tiny_config(checkpoint_interval=100), callbacks=[rec, CtrlC()])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert rec.end[0] == RunStatus.INTERRUPTED
    assert [p.name for p in trainer.checkpoints.checkpoints()] == ["step_00000005.pt"]


def test_time_limit_stops_early_with_a_checkpoint(tmp_path, monkeypatch):
    import utils.training.engine.trainer as tr

    clock = {"t": 0.0}

    def fake_clock():  # each call advances 1 s: the limit is reached after a few steps
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(tr.time, "perf_counter", fake_clock)
    trainer = make_trainer(tmp_path, tiny_config(max_steps=1000, time_limit_s=5.0, checkpoint_interval=100))
    result = trainer.train()
    assert result.status == RunStatus.STOPPED_EARLY and 0 < result.state.step < 10
    assert trainer.checkpoints.latest_valid().name == f"step_{result.state.step:08d}.pt"


def test_early_stopping_and_pruning_statuses(tmp_path):
    # Validation text is uniform noise: learning the training chain makes val_loss
    # worse from the first evaluation on, so patience 2 stops at the 3rd (step 6).
    cfg = tiny_config(max_steps=40, learning_rate=1e-2, early_stopping_patience=2, eval_interval=2)
    trainer = make_trainer(tmp_path / "a", cfg)
    noise = torch.randint(0, cfg.vocab_size, (5000,), generator=torch.Generator().manual_seed(0))
    trainer.val_batches = ArrayBatches(noise, cfg.batch_size, cfg.block_size)
    result = trainer.train()
    assert result.status == RunStatus.STOPPED_EARLY and result.state.step == 6

    class Prune(TrainerCallback):
        def on_evaluate(self, state, control, **kw):
            control.stop(RunStatus.PRUNED, "trial pruned")

    rec = Recorder()
    result = make_trainer(tmp_path / "b", callbacks=[Prune(), rec]).train()
    assert result.status == RunStatus.PRUNED and result.state.step == 4 and rec.end[0] == RunStatus.PRUNED


def test_resume_continues_and_refuses_a_changed_config(tmp_path, capsys):
    cfg = tiny_config(max_steps=8)
    make_trainer(tmp_path, cfg).train()
    rec = Recorder()
    result = make_trainer(tmp_path, cfg.replace(log_interval=3), [rec]).train()  # cadence: resume-safe
    assert "Resuming tiny from step 8 (checkpoint" in capsys.readouterr().out
    assert result.state.resumed_from_step == 8 and rec.events.count("step") == 0
    with pytest.raises(ResumeError, match=r"learning_rate.*n_layer|n_layer.*learning_rate"):
        make_trainer(tmp_path, cfg.replace(learning_rate=1e-4, n_layer=2)).train()


def test_tracking_ids_survive_resume(tmp_path):
    class Sink(TrainerCallback):
        def on_train_begin(self, state, control, **kw):
            state.tracking.setdefault("db_run_id", 17)

    cfg = tiny_config(max_steps=6)
    make_trainer(tmp_path, cfg, [Sink()]).train()
    trainer = make_trainer(tmp_path, cfg.replace(max_steps=6))
    trainer.train()
    assert trainer.state.tracking == {"db_run_id": 17}


def test_no_host_sync_between_sync_points(tmp_path, monkeypatch):
    """Tensor.item / __float__ / tolist / __bool__ called by the engine are host syncs:
    they happen at log steps only, never once per step. (Calls made inside torch and
    transformers are not the loop's: AdamW reads its CPU step counter, and
    transformers' mask code checks its position ids once per forward.)"""
    import sys

    counts = {"n": 0}
    for name in ("item", "__float__", "tolist", "__bool__"):
        orig = getattr(torch.Tensor, name)

        def counted(self, *a, _orig=orig, **k):
            if "utils/training" in sys._getframe(1).f_code.co_filename.replace("\\", "/"):
                counts["n"] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    cfg = tiny_config(max_steps=60, log_interval=30, eval_interval=10**6, checkpoint_interval=10**6)
    trainer = make_trainer(tmp_path, cfg)
    trainer.val_batches = None
    trainer.train()
    # 2 log steps (+ the final save's finiteness check); one sync per step would be >= 60.
    assert 0 < counts["n"] <= 20, counts


def test_export_loads_with_auto_model_and_generates(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(["the cat sat on the mat"] * 20, trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    rec = Recorder()

    class Samples(TrainerCallback):
        def on_sample(self, state, control, samples, **kw):
            rec.samples = samples

    trainer = make_trainer(tmp_path, tiny_config(max_steps=4), [Samples()], tokenizer=tok,
                           sample_prompts=["the cat"], sample_references=[" sat on the mat"])
    trainer.train()
    assert rec.samples[0]["prompt"] == "the cat" and 0.0 <= rec.samples[0]["accuracy"] <= 1.0
    out = trainer.export(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(out)
    loaded_tok = AutoTokenizer.from_pretrained(out)
    ids = loaded_tok("the cat", return_tensors="pt")["input_ids"]
    gen = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert gen.shape == (1, ids.shape[1] + 5)
    for a, b in zip(model.state_dict().values(), trainer.raw_model.state_dict().values()):
        assert torch.equal(a, b)


# -- selection logic for the GPU paths (pure functions, so testable on CPU) ----------------


@pytest.mark.parametrize("precision,use_amp,device,bf16,expected", [
    ("auto", True, "cpu", False, "fp32"),
    ("auto", True, "cuda", True, "bf16"),   # A100, H100, L4
    ("auto", True, "cuda", False, "fp16"),  # T4, V100: fp16 + GradScaler
    ("auto", False, "cuda", True, "fp32"),  # use_amp=False forces fp32
    ("bf16", False, "cuda", True, "fp32"),
    ("fp32", True, "cuda", True, "fp32"),
    ("fp16", True, "cuda", True, "fp16"),
    ("bf16", True, "cpu", False, "bf16"),
    ("auto", True, "mps", False, "fp32"),
])
def test_resolve_precision(precision, use_amp, device, bf16, expected):
    assert resolve_precision(precision, use_amp, device, bf16) == expected


@pytest.mark.parametrize("precision,device,bf16", [("bf16", "cuda", False), ("fp16", "cpu", False),
                                                   ("bf16", "mps", False)])
def test_resolve_precision_rejects_what_the_device_cannot_do(precision, device, bf16):
    with pytest.raises(ValueError, match="precision"):
        resolve_precision(precision, True, device, bf16)


def test_autocast_and_fused_adamw_selection():
    assert isinstance(autocast_context("cpu", "fp32"), contextlib.nullcontext)
    ctx = autocast_context("cpu", "bf16")
    with ctx:
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    assert adamw_kwargs("cuda") == {"fused": True}
    assert adamw_kwargs("cpu") == {}


def test_scaler_only_for_fp16(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer._setup()
    assert trainer.precision == "fp32" and not trainer.scaler.is_enabled()


def test_param_groups_decay_matrices_only():
    cfg = tiny_config()
    groups = param_groups(build_model(cfg), 0.1)
    assert all(p.dim() >= 2 for p in groups[0]["params"]) and groups[0]["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_schedules_warm_up_then_decay_to_the_floor(schedule):
    cfg = tiny_config(schedule=schedule, warmup_ratio=0.1, min_lr_ratio=0.1, learning_rate=1.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, cfg, 100)
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(1.0)
    assert lrs[5] == pytest.approx(0.5)
    final = 1.0 if schedule == "constant" else 0.1
    assert lrs[-1] == pytest.approx(final, abs=0.02) and min(lrs[10:]) >= final - 1e-9


class Halves:
    """Serves each batch of `base` as two half batches: accumulation over the halves
    must train like the whole batch."""

    def __init__(self, base):
        self.base, self.batch_size, self.block_size, self.queue = base, base.batch_size // 2, base.block_size, []

    def next_batch(self):
        if not self.queue:
            x, y = self.base.next_batch()
            self.queue = [(x[:self.batch_size], y[:self.batch_size]), (x[self.batch_size:], y[self.batch_size:])]
        return self.queue.pop(0)

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, s):
        self.base.load_state_dict(s)

    def eval_batches(self, n):
        return self.base.eval_batches(n)


def test_gradient_accumulation_matches_the_whole_batch(tmp_path):
    whole_cfg = tiny_config(max_steps=5, batch_size=4, dropout=0.0)
    whole = make_trainer(tmp_path / "whole", whole_cfg)
    expected = whole.train().final_metrics
    acc_cfg = whole_cfg.replace(batch_size=2, gradient_accumulation_steps=2)
    acc = make_trainer(tmp_path / "acc", acc_cfg)
    acc.train_batches = Halves(ArrayBatches(make_tokens(), 4, acc_cfg.block_size, seed=1))
    result = acc.train()
    assert acc.accum == 2 and result.state.tokens_seen == 5 * whole_cfg.tokens_per_step
    # AdamW hides a gradient scale error in the weights; the pre-clip norm and the loss do not.
    for key in ("grad_norm", "train_loss"):
        assert result.final_metrics[key] == pytest.approx(expected[key], rel=1e-4)
    for a, b in zip(whole.raw_model.parameters(), acc.raw_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_samples_are_generated_once_per_step(tmp_path):
    """sample_interval dividing max_steps: the last step is sampled by the interval, not again at the end."""
    steps: list[int] = []

    class Count(TrainerCallback):
        def on_sample(self, state, control, **kw):
            steps.append(state.step)

    make_trainer(tmp_path, tiny_config(max_steps=6, sample_interval=3), [Count()]).train()
    assert steps == [3, 6]


def test_padding_is_neither_loss_nor_accuracy_in_sample_mode(tmp_path):
    """Short documents padded to the block (DocumentBatchSampler): an untrained model's
    val_loss is ~ln(vocab) per real token, whatever the amount of padding."""
    import numpy as np

    from utils.training.data.sampler import IGNORE_INDEX, DocumentBatchSampler

    cfg = tiny_config(max_steps=1, block_size=32)
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, cfg.vocab_size, size=rng.integers(3, 8)) for _ in range(400)]
    tokens = np.concatenate([np.append(d, 0) for d in docs]).astype(np.int64)  # eos id 0 ends each document
    val = DocumentBatchSampler(tokens, 0, cfg.batch_size, cfg.block_size, seed=0)
    _, y = next(iter(val.eval_batches(1)))
    assert (y == IGNORE_INDEX).float().mean() > 0.5  # mostly padding: the case that was wrong
    trainer = make_trainer(tmp_path, cfg)
    trainer.val_batches = val
    trainer._setup()
    metrics = trainer.evaluate()
    assert abs(metrics["val_loss"] - math.log(cfg.vocab_size)) < 0.5
    assert 0.0 <= metrics["val_accuracy"] <= 0.2


def test_train_loss_is_the_mean_over_the_whole_log_interval(tmp_path):
    """A checkpoint between two log steps must not cut the interval: the logged train_loss
    is the same whether checkpoints fall on log steps or between them."""

    def logged(checkpoint_interval: int, where: str) -> list[tuple[int, float]]:
        rec = Recorder()
        cfg = tiny_config(max_steps=8, log_interval=4, eval_interval=100, checkpoint_interval=checkpoint_interval)
        make_trainer(tmp_path / where, cfg, [rec]).train()
        return [(logs["step"], logs["train_loss"]) for logs in rec.logs]

    assert logged(3, "misaligned") == logged(100, "aligned")


def test_a_teardown_failure_after_ctrl_c_does_not_replace_the_interrupt(tmp_path):
    """Ctrl-C at step 4, then a callback's on_train_end fails (as a half-imported
    matplotlib made the report's fail): the KeyboardInterrupt still comes out (exit 130
    in the CLI) and the step-4 checkpoint is written."""
    from engine_fixtures import ArrayBatches, make_tokens, tiny_config

    from utils.training.engine.callbacks import TrainerCallback
    from utils.training.engine.models import build_model
    from utils.training.engine.trainer import Trainer

    class CtrlCAt4(TrainerCallback):
        def on_step_end(self, state, control, **kw):
            if state.step == 4:
                raise KeyboardInterrupt

    class BrokenTeardown(TrainerCallback):
        def on_train_end(self, state, control, **kw):
            raise KeyError("Figure:kwdoc")

    cfg = tiny_config(max_steps=12, checkpoint_interval=3)
    trainer = Trainer(cfg, build_model(cfg), ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size),
                      run_dir=tmp_path, callbacks=[CtrlCAt4(), BrokenTeardown()], progress_bar=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.checkpoints.latest_valid().name == "step_00000004.pt"


def test_a_run_resumed_at_its_end_reports_its_last_evaluation(tmp_path):
    """A second Run all of a finished run trains and evaluates nothing more; its result
    still carries the last evaluation's val_loss and standard error (from the checkpoint),
    so the notebook's claim about val_loss does not turn into "no standard error"."""
    cfg = tiny_config(max_steps=12, eval_interval=6, checkpoint_interval=6)
    first = make_trainer(tmp_path, cfg).train()
    again = make_trainer(tmp_path, cfg).train()
    assert again.state.resumed_from_step == 12 and again.state.step == 12
    for name in ("val_loss", "val_loss_se", "val_bpb"):
        if name in first.final_metrics:
            assert again.final_metrics[name] == first.final_metrics[name], name
    assert math.isfinite(again.final_metrics["val_loss_se"])

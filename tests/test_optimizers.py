"""The optimizer choice: which parameters Muon gets, one optimizer for the scheduler and
the checkpoint, and a Muon run that trains; compile selection and its separate timing."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import ArrayBatches, make_tokens, tiny_config

from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerCallback
from utils.training.engine.device import resolve_compile
from utils.training.engine.models import build_model
from utils.training.engine.optimizers import MuonWithAdamW, build_optimizer, build_scheduler, split_for_muon
from utils.training.engine.trainer import Trainer

torch.set_num_threads(1)


def _names(model, params):
    ids = {id(p) for p in params}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_muon_gets_the_hidden_matrices_and_adamw_the_rest():
    model = build_model(tiny_config(n_layer=2))  # llama: tied embedding/head, RMSNorm, SwiGLU
    hidden, other = split_for_muon(model)
    per_layer = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                 "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}
    assert _names(model, hidden) == sorted(f"model.layers.{i}.{n}" for i in range(2) for n in per_layer)
    other_names = _names(model, other)
    assert "model.embed_tokens.weight" in other_names and all("norm" in n or "embed" in n for n in other_names)
    assert len(hidden) + len(other) == len({id(p) for p in model.parameters()})


def test_gpt2_position_table_stays_on_adamw():
    model = build_model(tiny_config(model_family="gpt2"))
    hidden, other = split_for_muon(model)
    assert {"transformer.wte.weight", "transformer.wpe.weight"} <= set(_names(model, other))
    assert "transformer.h.0.mlp.c_fc.weight" in _names(model, hidden)
    assert all(p.dim() == 2 for p in hidden)


def test_one_optimizer_for_the_scheduler_and_the_checkpoint():
    cfg = tiny_config(optimizer="muon", learning_rate=1e-3, muon_lr=0.02, warmup_ratio=0.5)
    model = build_model(cfg)
    opt = build_optimizer(model, cfg, "cpu")
    assert isinstance(opt, MuonWithAdamW)
    sched = build_scheduler(opt, cfg, 4)  # 2 warmup steps: lr factor 0, 0.5, 1
    x = torch.randint(0, cfg.vocab_size, (2, 8))
    for _ in range(2):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    # Same schedule factor on both inner optimizers, each at its own peak.
    assert opt.adamw.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert opt.muon.param_groups[0]["lr"] == pytest.approx(0.02)
    state = opt.state_dict()
    assert set(state) == {"adamw", "muon"}
    assert all("momentum_buffer" in s for s in state["muon"]["state"].values()) and state["muon"]["state"]
    assert all("exp_avg_sq" in s for s in state["adamw"]["state"].values()) and state["adamw"]["state"]

    fresh = build_optimizer(model, cfg, "cpu")
    fresh_sched = build_scheduler(fresh, cfg, 4)
    fresh.load_state_dict(state)
    fresh_sched.load_state_dict(sched.state_dict())
    fresh_sched.step()  # the scheduler still steers the loaded inner optimizers
    assert fresh.muon.param_groups[0]["lr"] == pytest.approx(0.02 * fresh_sched.lr_lambdas[0](3))
    with pytest.raises(ValueError, match="'adamw' and 'muon'"):
        fresh.load_state_dict(state["adamw"])  # an AdamW run's state


def test_adamw_is_still_one_plain_adamw():
    cfg = tiny_config()
    assert type(build_optimizer(build_model(cfg), cfg, "cpu")) is torch.optim.AdamW


def test_a_muon_run_learns(tmp_path):
    cfg = tiny_config(max_steps=24, dropout=0.0, optimizer="muon", muon_lr=0.02, learning_rate=1e-2)
    losses = []

    class Logs(TrainerCallback):
        def on_log(self, state, control, logs, **kw):
            losses.append(logs["train_loss"])

    trainer = Trainer(cfg, build_model(cfg), ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1),
                      run_dir=tmp_path, callbacks=[Logs()], progress_bar=False)
    result = trainer.train()
    assert result.status == RunStatus.COMPLETED and losses[-1] < losses[0] - 0.3
    ckpt = torch.load(trainer.checkpoints.checkpoints()[-1], weights_only=True)
    assert set(ckpt["optimizer"]) == {"adamw", "muon"}


@pytest.mark.parametrize("setting,device,capability,expected", [
    ("auto", "cuda", (8, 0), True),    # A100
    ("auto", "cuda", (9, 0), True),    # H100
    ("auto", "cuda", (7, 5), False),   # T4
    ("auto", "cpu", None, False),      # measured slower to quality (README)
    ("auto", "mps", None, False),
    ("on", "cpu", None, True),
    ("off", "cuda", (9, 0), False),
    (True, "cpu", None, True),         # the bool of older configs
    (False, "cuda", (9, 0), False),
])
def test_resolve_compile(setting, device, capability, expected):
    assert resolve_compile(setting, device, capability) is expected


def test_compile_time_is_reported_apart_from_step_time(tmp_path):
    """The first step of a compiled model (tracing, code generation) is compile_s; the log
    interval holding only that step reports no throughput, the next ones count real steps."""
    seen = []

    class Logs(TrainerCallback):
        def on_log(self, state, control, logs, **kw):
            seen.append(dict(logs))

    cfg = tiny_config(max_steps=3, log_interval=1, compile="on", eval_interval=10**6, checkpoint_interval=10**6)
    trainer = Trainer(cfg, build_model(cfg), ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1),
                      run_dir=tmp_path, callbacks=[Logs()], progress_bar=False)
    result = trainer.train()
    assert trainer.compiled and result.status == RunStatus.COMPLETED
    assert trainer.compile_s > 0 and result.final_metrics["compile_s"] == trainer.compile_s
    assert seen[0]["compile_s"] == trainer.compile_s
    assert seen[0]["tokens_per_sec"] == 0.0 and seen[0]["step_time_ms"] == 0.0
    assert len(seen) == 3 and all("compile_s" not in log and log["tokens_per_sec"] > 0 for log in seen[1:])

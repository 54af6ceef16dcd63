"""Muon's Newton-Schulz precision: the choice per device (engine/device.py), the iteration
in each dtype (engine/muon.py: bf16 bit-identical to torch.optim.Muon, fp32 different but
orthogonalising as well), the precision kept in the optimizer's state, and the config
fields muon_precision, muon_adjust_lr, muon_weight_decay and embedding_lr reaching the optimizer."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import tiny_config

from utils.training.config import ConfigError, TrainingConfig, parse_overrides
from utils.training.engine import device as device_mod
from utils.training.engine.device import resolve_muon_precision
from utils.training.engine.models import build_model
from utils.training.engine.muon import Muon, newton_schulz
from utils.training.engine.optimizers import build_optimizer, split_for_muon

torch.set_num_threads(1)
NS = dict(coefficients=(3.4445, -4.7750, 2.0315), steps=5, eps=1e-7)  # torch.optim.Muon's defaults


@pytest.mark.parametrize("setting,device,capability,cpu_bf16,expected", [
    ("auto", "cuda", (8, 0), False, "bf16"),  # A100
    ("auto", "cuda", (9, 0), False, "bf16"),  # H100
    ("auto", "cuda", (7, 5), False, "fp32"),  # T4: no bf16 tensor cores
    ("auto", "cpu", None, True, "bf16"),      # AVX-512-BF16 / AMX
    ("auto", "cpu", None, False, "fp32"),     # AVX2 only: bf16 is emulated
    ("auto", "mps", None, False, "fp32"),
    ("fp32", "cuda", (9, 0), False, "fp32"),  # an explicit value is taken as given
    ("bf16", "cpu", None, False, "bf16"),
    ("bf16", "cuda", (7, 5), False, "bf16"),
    ("fp16", "cuda", (7, 5), False, "fp16"),
])
def test_the_precision_chosen_for_each_device(setting, device, capability, cpu_bf16, expected):
    assert resolve_muon_precision(setting, device, capability, cpu_bf16) == expected


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_fp16_off_cuda_is_refused_naming_the_field(device):
    with pytest.raises(ValueError, match="muon_precision: 'fp16' runs on CUDA only"):
        resolve_muon_precision("fp16", device, None, True)
    with pytest.raises(ValueError, match=r"muon_precision: 'fp8' is not one of \['auto', 'bf16', 'fp32', 'fp16'\]"):
        resolve_muon_precision("fp8", device)


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_a_cpu_run_follows_the_cpus_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: native)
    cfg = tiny_config(optimizer="muon")
    assert device_mod.device_muon_precision(cfg, "cpu") == expected
    assert build_optimizer(build_model(cfg), cfg, "cpu").ns_precision == expected


def _pair(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]
    return params, [torch.nn.Parameter(p.detach().clone()) for p in params]


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
def test_bf16_steps_are_bit_identical_to_torch_muon(adjust):
    theirs_p, ours_p = _pair([(48, 16), (16, 48), (32, 32)])  # tall, wide, square
    kw = dict(lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust)
    theirs, ours = torch.optim.Muon(theirs_p, **kw), Muon(ours_p, ns_precision="bf16", **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        for a, b in zip(theirs_p, ours_p):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        theirs.step()
        ours.step()
    assert all(torch.equal(a, b) for a, b in zip(theirs_p, ours_p))


@pytest.mark.parametrize("shape", [(64, 32), (32, 64)])
def test_fp32_differs_from_bf16_and_both_orthogonalise(shape):
    grad = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    bf16, fp32 = (newton_schulz(grad, **NS, dtype=d) for d in (torch.bfloat16, torch.float32))
    assert bf16.dtype == torch.bfloat16 and fp32.dtype == torch.float32 and bf16.shape == fp32.shape == shape
    assert not torch.equal(bf16.float(), fp32)
    u, _, vh = torch.linalg.svd(grad, full_matrices=False)
    for out in (bf16.float(), fp32):
        s = torch.linalg.svdvals(out)
        # Muon's quintic does not converge to 1 exactly: singular values land in ~(0.5, 1.5)
        # (torch's docstring), against the input's 2 to 13.
        assert s.min() > 0.5 and s.max() < 1.3
        assert (out - u @ vh).norm() / (u @ vh).norm() < 0.35  # close to the polar factor U V^T


def test_the_precision_travels_in_the_state_dict():
    params, _ = _pair([(16, 8)])
    fp32 = Muon(params, ns_precision="fp32")
    assert fp32.state_dict()["param_groups"][0]["ns_precision"] == "fp32"
    other = Muon(params, ns_precision="bf16")
    other.load_state_dict(fp32.state_dict())
    assert other.ns_precision == "fp32"  # a resume computes as the checkpoint's run did
    other.load_state_dict(torch.optim.Muon(params).state_dict())  # written before the field existed
    assert other.ns_precision == "bf16"  # torch.optim.Muon's
    with pytest.raises(ValueError, match="muon_precision: 'fp64'"):
        Muon(params, ns_precision="fp64")


def test_the_config_fields_reach_the_optimizer():
    cfg = tiny_config(optimizer="muon", weight_decay=0.05)
    muon = build_optimizer(build_model(cfg), cfg, "cpu").muon
    group = muon.param_groups[0]
    assert cfg.muon_weight_decay == "auto" and group["weight_decay"] == 0.05  # as before the field existed
    assert group["adjust_lr_fn"] == "original"
    assert cfg.embedding_lr == "auto" and build_optimizer(build_model(cfg), cfg, "cpu").adamw.param_groups[0]["lr"] \
        == cfg.learning_rate  # as before the field existed
    cfg = tiny_config(optimizer="muon", weight_decay=0.05, muon_weight_decay=0.0, muon_adjust_lr="match_rms_adamw",
                      muon_precision="fp32", learning_rate=2e-3, muon_lr=0.01, embedding_lr=0.016)
    opt = build_optimizer(build_model(cfg), cfg, "cpu")
    group = opt.muon.param_groups[0]
    assert group["weight_decay"] == 0.0 and group["adjust_lr_fn"] == "match_rms_adamw" and group["lr"] == 0.01
    assert opt.ns_precision == "fp32" and opt.adamw.param_groups[0]["weight_decay"] == 0.05
    assert {g["lr"] for g in opt.adamw.param_groups} == {0.016}  # embeddings, head, norms: not learning_rate


def test_embedding_lr_splits_an_adamw_run_the_way_muon_does():

    cfg = tiny_config(optimizer="adamw", learning_rate=2e-3, weight_decay=0.05)
    model = build_model(cfg)
    groups = build_optimizer(model, cfg, "cpu").param_groups
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(2e-3, 0.05), (2e-3, 0.0)]  # as every checkpoint has
    cfg = cfg.replace(embedding_lr=0.016)
    groups = build_optimizer(model, cfg, "cpu").param_groups
    hidden, other = split_for_muon(model)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert {lr_of[id(p)] for p in hidden} == {2e-3} and {lr_of[id(p)] for p in other} == {0.016}
    assert len(lr_of) == len(hidden) + len(other) == sum(1 for p in model.parameters() if p.requires_grad)
    embedding = model.get_input_embeddings().weight  # decays as before; norm gains do not
    assert next(g for g in groups if any(p is embedding for p in g["params"]))["weight_decay"] == 0.05


@pytest.mark.parametrize("values,field", [
    ({"muon_precision": "fp8"}, "muon_precision"),
    ({"muon_precision": "BF16"}, "muon_precision"),
    ({"muon_adjust_lr": "moonshot"}, "muon_adjust_lr"),
    ({"muon_weight_decay": float("nan")}, "muon_weight_decay"),
    ({"muon_weight_decay": 1.5}, "muon_weight_decay"),
    ({"muon_weight_decay": "same"}, "muon_weight_decay"),
    ({"muon_weight_decay": True}, "muon_weight_decay"),
    ({"embedding_lr": float("nan")}, "embedding_lr"),
    ({"embedding_lr": 0.0}, "embedding_lr"),
    ({"embedding_lr": "learning_rate"}, "embedding_lr"),
])
def test_bad_values_are_refused_naming_the_field(values, field):
    with pytest.raises(ConfigError) as err:
        TrainingConfig.preset("smoke", **values)
    assert err.value.fields == [field]


def test_every_config_path_takes_the_fields(tmp_path):
    given = {"muon_precision": "fp32", "muon_adjust_lr": "match_rms_adamw", "muon_weight_decay": 0.01,
             "embedding_lr": 0.016}
    overrides = parse_overrides([f"{k}={v}" for k, v in given.items()])  # --set
    assert overrides == given
    cfg = TrainingConfig.preset("smoke", **overrides)
    assert TrainingConfig.load(cfg.save(tmp_path / "c.json")) == cfg  # JSON
    assert TrainingConfig.from_form(preset="smoke", **{k: str(v) for k, v in given.items()}) == cfg  # form strings
    assert parse_overrides(["muon_weight_decay=auto", "embedding_lr=auto"]) == {"muon_weight_decay": "auto",
                                                                               "embedding_lr": "auto"}
    assert sorted(cfg.resume_blockers(TrainingConfig.preset("smoke"))) == sorted(given)  # they change training


def test_the_fields_can_be_searched():
    from utils.training.hpo.space import SearchSpace

    space = SearchSpace.from_dict({"muon_adjust_lr": {"type": "categorical", "choices": ["original", "match_rms_adamw"]},
                                   "muon_weight_decay": {"type": "float", "low": 0.0, "high": 0.2},
                                   "muon_precision": {"type": "categorical", "choices": ["bf16", "fp32"]},
                                   "embedding_lr": {"type": "float", "low": 2e-3, "high": 3.2e-2, "log": True}})
    assert {p.name for p in space} == {"muon_adjust_lr", "muon_weight_decay", "muon_precision", "embedding_lr"}


def test_a_closure_is_evaluated_once_and_steps_both_optimizers():
    cfg = tiny_config(optimizer="muon")
    model = build_model(cfg)
    opt = build_optimizer(model, cfg, "cpu")
    ids = torch.randint(0, cfg.vocab_size, (2, cfg.block_size))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert len(calls) == 1 and torch.isfinite(loss)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    hidden, other = (set(map(id, g)) for g in split_for_muon(model))
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in hidden} <= changed and {names[i] for i in other} & changed  # Muon's and AdamW's


def test_the_auto_values_resolve_on_the_config():
    cfg = tiny_config(learning_rate=2e-3, weight_decay=0.05)
    assert (cfg.effective_embedding_lr, cfg.effective_muon_weight_decay) == (2e-3, 0.05)
    cfg = cfg.replace(embedding_lr=0.016, muon_weight_decay=0.0)
    assert (cfg.effective_embedding_lr, cfg.effective_muon_weight_decay) == (0.016, 0.0)

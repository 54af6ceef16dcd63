"""Our nanogpt family (engine/nanogpt.py) and its architecture options: each option
changes the model as described, is refused by the transformers families, survives an
exact resume, and exports to a folder that reloads and generates identically."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from engine_fixtures import ArrayBatches, make_tokens, tiny_config
from export_fixtures import make_run

from utils.training.config import TrainingConfig, parse_overrides
from utils.training.config_rules import ARCH_OPTIONS, ConfigError
from utils.training.engine.callbacks import TrainerCallback
from utils.training.engine.models import build_model, count_parameters, flops_per_token
from utils.training.engine.nanogpt import NanoGPTForCausalLM, rms_norm
from utils.training.engine.optimizers import split_for_muon
from utils.training.engine.trainer import Trainer
from utils.training.presets import RECIPES

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

ON = {"qk_norm": True, "relu2_mlp": True, "zero_init_proj": True, "tie_embeddings": False, "logit_softcap": 15.0,
      "value_embeds": True, "unet_skips": True}


def nano(**options) -> NanoGPTForCausalLM:
    """A 4-layer nanogpt (so U-net skips and value embeddings both have layers to join)."""
    return build_model(tiny_config(model_family="nanogpt", n_layer=4, **options))


def ids(n: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 300, (2, n), generator=torch.Generator().manual_seed(seed))


def logits(model, x=None) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids() if x is None else x, use_cache=False).logits


@pytest.mark.parametrize("options", [{}] + [{k: v} for k, v in ON.items()] + [ON],
                         ids=["baseline", *ON, "all"])
def test_every_option_builds_a_model_whose_forward_is_finite_and_seeded(options):
    model = nano(**options)
    out = logits(model)
    assert out.shape == (2, 12, 300) and torch.isfinite(out).all()
    assert torch.equal(out, logits(nano(**options)))  # the init is config.random_seed's alone
    counts = count_parameters(model)
    assert 0 < counts["non_embedding"] < counts["total"]


def test_qk_norm_makes_query_and_key_rms_one_right_before_the_dot_product():
    for qk_norm in (True, False):
        model, seen = nano(qk_norm=qk_norm), []
        for block in model.model.layers:
            block.attn.attend.register_forward_pre_hook(lambda m, args, seen=seen: seen.append(args[:2]))
        logits(model)
        assert len(seen) == 4
        rms = torch.stack([t.pow(2).mean(-1).sqrt() for q, k in seen for t in (q, k)])  # per head, per position
        assert torch.allclose(rms, torch.ones_like(rms), atol=1e-4) is qk_norm


def test_relu2_mlp_activation_is_relu_squared_non_gated_and_four_wide():
    model = nano(relu2_mlp=True)
    mlp = model.model.layers[0].mlp
    assert mlp.gate_proj is None and mlp.up_proj.out_features == 4 * 32
    up, act = [], []
    mlp.up_proj.register_forward_hook(lambda m, a, out: up.append(out))
    mlp.down_proj.register_forward_pre_hook(lambda m, a: act.append(a[0]))
    logits(model)
    assert torch.equal(act[0], F.relu(up[0]) ** 2)
    assert nano().model.layers[0].mlp.gate_proj is not None  # the default stays SwiGLU


def test_zero_init_proj_zeroes_the_output_projections_so_initial_logits_skip_attention_and_mlp():
    model = nano(zero_init_proj=True)
    for block in model.model.layers:
        assert not block.attn.o_proj.weight.any() and not block.mlp.down_proj.weight.any()
    before = logits(model)
    with torch.no_grad():
        for block in model.model.layers:
            for m in (block.attn.q_proj, block.attn.k_proj, block.attn.v_proj, block.mlp.gate_proj, block.mlp.up_proj):
                m.weight.normal_(0, 1)
    assert torch.equal(before, logits(model))
    embed = model.model.embed_tokens(ids())  # the residual stream is the embedding alone
    assert torch.allclose(before, model.lm_head(rms_norm(rms_norm(embed))), atol=1e-5)
    assert nano().model.layers[0].attn.o_proj.weight.any()


@pytest.mark.parametrize("family", ["nanogpt", "llama"])
def test_untied_embeddings_give_a_separate_output_head(family):
    tied = build_model(tiny_config(model_family=family))
    assert tied.lm_head.weight is tied.get_input_embeddings().weight
    untied = build_model(tiny_config(model_family=family, tie_embeddings=False))
    head, embed = untied.lm_head.weight, untied.get_input_embeddings().weight
    assert head is not embed and head.data_ptr() != embed.data_ptr()
    assert count_parameters(untied)["total"] == count_parameters(tied)["total"] + head.numel()
    muon, _ = split_for_muon(untied)
    assert all(p is not head and p is not embed for p in muon)  # both stay on AdamW


def test_logit_softcap_bounds_the_logits():
    capped, free = nano(logit_softcap=2.0), nano()
    for model in (capped, free):
        with torch.no_grad():
            model.lm_head.weight.mul_(12.0)  # raw logits above 2, not so far that tanh rounds to 1
    raw = []
    capped.lm_head.register_forward_hook(lambda m, a, out: raw.append(out))
    out = logits(capped)
    assert out.abs().max() < 2.0 and torch.allclose(out, 2.0 * torch.tanh(raw[0] / 2.0))
    assert logits(free).abs().max() > 3.0 and raw[0].abs().max() > 3.0


def test_value_embeddings_are_embedding_tables_that_change_the_output():
    model = nano(value_embeds=True)
    tables = model.model.value_embeds
    assert len(tables) == 1 and isinstance(tables[0], torch.nn.Embedding)
    mixed = [i for i, b in enumerate(model.model.layers) if b.attn.ve_lambdas is not None]
    assert mixed == [0, 3]  # the first layer and the mirrored last one
    before = logits(model)
    with torch.no_grad():
        tables[0].weight.normal_(0, 1)
    assert not torch.allclose(before, logits(model))
    muon, adamw = split_for_muon(model)
    assert any(p is tables[0].weight for p in adamw) and not any(p is tables[0].weight for p in muon)
    assert not hasattr(nano().model, "value_embeds") or len(nano().model.value_embeds) == 0
    # a lookup: counted with the embeddings, so the FLOPs estimate does not grow by it
    cfg = tiny_config(model_family="nanogpt", n_layer=4)
    extra = flops_per_token(cfg.replace(value_embeds=True)) - flops_per_token(cfg)
    assert extra == 6.0 * 2 * 2  # only the (2,) mixing scalars of the two layers that mix


def test_unet_skips_have_learnable_weights_that_change_the_output():
    model = nano(unet_skips=True)
    weights = model.model.skip_weights
    assert weights.shape == (2,) and weights.requires_grad and torch.equal(weights.detach(), torch.ones(2))
    before = logits(model)
    with torch.no_grad():
        weights.fill_(0.0)
    after = logits(model)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, logits(nano()))  # weight 0 is the model without skips
    assert nano().model.skip_weights is None


# --- config: validated on every path --------------------------------------------------------


@pytest.mark.parametrize("field,value", [("qk_norm", 1), ("relu2_mlp", "yes"), ("unet_skips", None),
                                         ("tie_embeddings", 0), ("logit_softcap", float("nan")),
                                         ("logit_softcap", -1.0), ("logit_softcap", "15"),
                                         ("value_embeds", 1.0), ("zero_init_proj", [])])
def test_wrong_option_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        tiny_config(model_family="nanogpt", **{field: value})
    assert e.value.fields == [field]


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
@pytest.mark.parametrize("field", list(ARCH_OPTIONS))
def test_the_transformers_families_refuse_the_options_they_cannot_express(family, field):
    value = 15.0 if field == "logit_softcap" else True
    with pytest.raises(ConfigError) as e:
        tiny_config(model_family=family, **{field: value})
    (problem,) = e.value.problems
    assert problem.field == field and family in problem.message and 'model_family="nanogpt"' in problem.message
    TrainingConfig.from_dict({**tiny_config().to_dict(), "model_family": family, "tie_embeddings": False})


def test_the_options_come_through_set_json_form_and_the_hpo_space(tmp_path):
    overrides = parse_overrides(["model_family=nanogpt", "qk_norm=true", "logit_softcap=15", "unet_skips=false"])
    assert overrides == {"model_family": "nanogpt", "qk_norm": True, "logit_softcap": 15.0, "unet_skips": False}
    config = tiny_config(model_family="nanogpt", **ON)
    path = config.save(tmp_path / "c.json")
    assert TrainingConfig.load(path) == config
    assert json.loads(path.read_text())["logit_softcap"] == 15.0
    form = TrainingConfig.from_form(preset="smoke", model_family="nanogpt", qk_norm="True", logit_softcap="7.5",
                                    relu2_mlp=None, tie_embeddings=False)
    assert (form.qk_norm, form.logit_softcap, form.relu2_mlp, form.tie_embeddings) == (True, 7.5, False, False)
    with pytest.raises(ConfigError, match="qk_norm"):
        TrainingConfig.from_form(preset="smoke", model_family="llama", qk_norm=True)

    from utils.training.hpo.space import SearchSpace, SearchSpaceError

    space = SearchSpace.from_dict({"qk_norm": {"type": "categorical", "choices": [True, False]},
                                   "logit_softcap": {"type": "float", "low": 0.0, "high": 30.0}})
    assert {p.name for p in space} == {"qk_norm", "logit_softcap"}
    with pytest.raises(SearchSpaceError, match="logit_softcap"):
        SearchSpace.from_dict({"logit_softcap": {"type": "float", "low": -5.0, "high": 30.0}})


def test_the_modern_recipe_is_a_valid_config_on_the_cpu_preset():
    assert RECIPES["adamw"] == {"optimizer": "adamw"} and RECIPES["muon"] == {"optimizer": "muon"}
    config = TrainingConfig.preset("cpu", **RECIPES["modern"])
    assert config.model_family == "nanogpt" and config.optimizer == "muon"
    assert isinstance(build_model(config.replace(n_layer=2)), NanoGPTForCausalLM)


# --- checkpoint, resume, export ---------------------------------------------------------------


def _run(run_dir, options, stop_at=None, steps=10):
    cfg = tiny_config(model_family="nanogpt", n_layer=4, max_steps=steps, checkpoint_interval=4, optimizer="muon",
                      **options)
    model = build_model(cfg)

    class Stop(TrainerCallback):
        def on_step_end(self, state, control, **kw):
            if state.step == stop_at:
                raise KeyboardInterrupt

    trainer = Trainer(cfg, model, ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1),
                      ArrayBatches(make_tokens(seed=5), cfg.batch_size, cfg.block_size), run_dir=run_dir,
                      callbacks=[Stop()] if stop_at else [], progress_bar=False)
    if stop_at:
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
        return None
    trainer.train()
    return model.state_dict()


@pytest.mark.parametrize("options", [{k: v} for k, v in ON.items()] + [ON], ids=[*ON, "all"])
def test_every_option_survives_checkpoint_and_exact_resume(tmp_path, options):
    reference = _run(tmp_path / "ref", options)
    _run(tmp_path / "cut", options, stop_at=6)
    torch.manual_seed(99)  # the restarted process's RNG starts elsewhere
    resumed = _run(tmp_path / "cut", options)
    assert reference.keys() == resumed.keys() and all(torch.equal(reference[k], resumed[k]) for k in reference)
    for name, value in options.items():
        key = "tie_word_embeddings" if name == "tie_embeddings" else name
        assert getattr(build_model(tiny_config(model_family="nanogpt", n_layer=4, **options)).config, key) == value


def _greedy(model, prompt, n=10):
    return model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False,
                          pad_token_id=0)


def test_the_export_reloads_with_auto_classes_and_generates_identically(tmp_path):
    from transformers import AutoModelForCausalLM

    from utils.training.export.run_model import load_run_model

    ws, model, tok, config = make_run(tmp_path, family="nanogpt", n_layer=4, **ON)
    folder = ws.export_dir("tiny")
    assert (folder / "nanogpt.py").exists()  # the modeling file travels with the weights
    assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"].startswith("nanogpt.")
    model.eval()
    prompt = torch.tensor([tok("Patient 3 reports cholera")["input_ids"]])
    expected = _greedy(model, prompt)
    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()  # engine.nanogpt is imported: no remote code
    assert type(reloaded) is NanoGPTForCausalLM and reloaded.lm_head.weight is not reloaded.model.embed_tokens.weight
    assert torch.equal(_greedy(reloaded, prompt), expected)
    for which in ("export", "best"):
        assert torch.equal(_greedy(load_run_model(ws, "tiny", which).model, prompt), expected)

    # A fresh process without this library: the shipped nanogpt.py, through trust_remote_code.
    code = ("import json, sys, torch; from transformers import AutoModelForCausalLM; "
            "m = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval(); "
            "p = torch.tensor([json.loads(sys.argv[2])]); "
            "print(json.dumps(m.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=10, do_sample=False, "
            "pad_token_id=0)[0].tolist()))")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    out = subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(prompt[0].tolist())], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected[0].tolist()


def test_the_sampler_with_its_kv_cache_matches_greedy_generate(tmp_path):
    from utils.training.engine.sampling import SamplingOptions, generate

    ws, model, tok, config = make_run(tmp_path, family="nanogpt", n_layer=4, export=False, **ON)
    model.eval()
    text = "Patient 3 reports"
    result = generate(model, tok, text, SamplingOptions(max_new_tokens=8, temperature=0.0), block_size=32)
    prompt = torch.tensor([tok(text)["input_ids"]])
    expected = _greedy(model, prompt, n=8)[0, prompt.size(1):].tolist()
    assert result.token_ids == expected[: len(result.token_ids)] and result.token_ids


def test_gguf_refuses_nanogpt_naming_the_family(tmp_path):
    from utils.training.export.gguf import GGUFError, write_gguf

    ws, model, tok, config = make_run(tmp_path, family="nanogpt")
    with pytest.raises(GGUFError, match="nanogpt"):
        write_gguf(ws.export_dir("tiny"))
    assert not list(ws.export_dir("tiny").glob("*.gguf"))


def test_meta_device_build_for_the_flops_estimate_needs_no_memory():
    config = TrainingConfig.preset("cpu", **RECIPES["modern"])
    assert math.isfinite(flops_per_token(config)) and flops_per_token(config) > 0


def test_the_model_card_loads_nanogpt_with_its_shipped_code(tmp_path):
    from utils.training.export.model_card import card_facts, render_card

    ours = make_run(tmp_path / "ours", family="nanogpt", export=False)[0]
    assert "trust_remote_code=True" in render_card(card_facts(ours.run_log_path("tiny")))
    theirs = make_run(tmp_path / "theirs", family="llama", export=False)[0]
    assert "trust_remote_code" not in render_card(card_facts(theirs.run_log_path("tiny")))


def test_the_summary_card_names_the_options_in_effect():
    from utils.training.summary import architecture_options

    assert architecture_options(tiny_config(model_family="nanogpt")) == []
    assert architecture_options(tiny_config(model_family="nanogpt", **ON)) == [
        "qk_norm", "relu2_mlp", "zero_init_proj", "logit_softcap=15", "value_embeds", "unet_skips", "untied head"]
    assert architecture_options(tiny_config(tie_embeddings=False)) == ["untied head"]

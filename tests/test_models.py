"""The causal LM: families, seeded init, parameter and FLOP counts, offline pretrained."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import tiny_config

from utils.training.engine.models import build_model, count_parameters, default_d_ff, flops_per_token


@pytest.mark.parametrize("family,cls", [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM"),
                                        ("qwen2", "Qwen2ForCausalLM")])
def test_families_build_a_causal_lm_with_sdpa(family, cls):
    cfg = tiny_config(model_family=family, n_head=4, n_kv_head=4 if family == "gpt2" else 2, d_model=64)
    model = build_model(cfg)
    assert type(model).__name__ == cls and model.config._attn_implementation == "sdpa"
    x = torch.randint(0, cfg.vocab_size, (2, cfg.block_size))
    assert model(input_ids=x).logits.shape == (2, cfg.block_size, cfg.vocab_size)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied


def test_gqa_and_default_mlp_width():
    cfg = tiny_config(n_head=4, n_kv_head=2, d_model=64)
    attn = build_model(cfg).model.layers[0].self_attn
    assert attn.k_proj.out_features == 2 * 16 and attn.q_proj.out_features == 64
    assert default_d_ff("gpt2", 64) == 256 and default_d_ff("llama", 64) == 192
    assert build_model(cfg.replace(d_ff=100)).model.layers[0].mlp.up_proj.out_features == 100


def test_init_is_seeded_and_leaves_the_global_rng_alone():
    cfg = tiny_config()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = build_model(cfg), build_model(cfg)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = build_model(cfg.replace(random_seed=7))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_count_parameters_counts_tied_weights_once():
    cfg = tiny_config(model_family="gpt2", n_kv_head=2)
    model = build_model(cfg)
    counts = count_parameters(model)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert counts["total"] == sum(unique.values())
    table = cfg.vocab_size * cfg.d_model + cfg.block_size * cfg.d_model  # wte + wpe
    assert counts["total"] - counts["non_embedding"] == table


def test_flops_per_token_is_the_palm_formula():
    cfg = tiny_config(n_layer=2, n_head=2, d_model=32, block_size=16)
    n = count_parameters(build_model(cfg))["non_embedding"]
    expected = 6 * (n + cfg.vocab_size * cfg.d_model) + 12 * 2 * 2 * 16 * 16
    assert flops_per_token(cfg, n) == expected
    assert flops_per_token(cfg) == expected  # counted on a meta-device build


def test_pretrained_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_config(pretrained="no-such-org/no-such-model")
    with pytest.raises(OSError, match=r"pretrained: could not load 'no-such-org/no-such-model'.*internet.*Colab"):
        build_model(cfg)

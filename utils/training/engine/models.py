"""The causal LM: a transformers model built from a TrainingConfig.

The families are registries.MODEL_FAMILIES, each built here by its `*_config` function
(config, d_ff) -> a transformers config; all are decoder-only and loadable later with
AutoModelForCausalLM.from_pretrained(dir). GELU families default to d_ff = 4·d_model,
SwiGLU ones to d_ff ≈ 8/3·d_model.
Input and output embeddings are tied by default (nanoGPT style: at small sizes the
embedding is a large share of the parameters); tie_embeddings=False gives a separate head.
"nanogpt" is ours (engine/nanogpt.py): the only family with the architecture options
(qk_norm, relu2_mlp, ...; config_rules.py refuses them for the transformers families).
"""

from __future__ import annotations

import math

import torch

from utils.training.registries import MODEL_FAMILIES

FAMILIES = MODEL_FAMILIES  # the registry: iterating gives the family names


def default_d_ff(family: str, d_model: int, relu2_mlp: bool = False) -> int:
    """The family's MLP width when config.d_ff is 0 (relu2_mlp: nanogpt's non-gated relu²)."""
    if relu2_mlp or MODEL_FAMILIES.get(family).facts["mlp"] == "gelu":
        return 4 * d_model
    # SwiGLU has three matrices instead of two; 8/3·d keeps the parameter count of a
    # 4·d GELU MLP. Rounded up to a multiple of 32 for friendly matmul shapes.
    return int(math.ceil(8 * d_model / 3 / 32) * 32)


def _common(config) -> dict:
    return dict(vocab_size=config.vocab_size, tie_word_embeddings=getattr(config, "tie_embeddings", True),
                use_cache=True,
                bos_token_id=None, eos_token_id=None)


def gpt2_config(config, d_ff: int):
    from transformers import GPT2Config

    return GPT2Config(
        n_positions=config.block_size, n_embd=config.d_model, n_layer=config.n_layer,
        n_head=config.n_head, n_inner=d_ff, resid_pdrop=config.dropout,
        embd_pdrop=config.dropout, attn_pdrop=config.dropout, **_common(config),
    )


def _llama_like(cls, config, d_ff: int):
    return cls(
        hidden_size=config.d_model, intermediate_size=d_ff, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.n_kv_head or config.n_head,
        max_position_embeddings=config.block_size, attention_dropout=config.dropout, **_common(config),
    )


def llama_config(config, d_ff: int):
    from transformers import LlamaConfig

    return _llama_like(LlamaConfig, config, d_ff)


def qwen2_config(config, d_ff: int):
    from transformers import Qwen2Config

    return _llama_like(Qwen2Config, config, d_ff)


def nanogpt_config(config, d_ff: int):
    """Our own family (engine/nanogpt.py), the one with the architecture options."""
    from utils.training.engine.nanogpt import NanoGPTConfig

    return NanoGPTConfig(
        hidden_size=config.d_model, intermediate_size=d_ff, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.n_kv_head or config.n_head,
        max_position_embeddings=config.block_size, dropout=config.dropout, qk_norm=config.qk_norm,
        relu2_mlp=config.relu2_mlp, zero_init_proj=config.zero_init_proj, logit_softcap=float(config.logit_softcap),
        value_embeds=config.value_embeds, unet_skips=config.unet_skips, **_common(config),
    )


def _hf_config(config):
    """The transformers config object for config.model_family (registries.MODEL_FAMILIES)."""
    build = MODEL_FAMILIES.builder(config.model_family)
    d_ff = config.d_ff or default_d_ff(config.model_family, config.d_model, getattr(config, "relu2_mlp", False))
    return build(config, d_ff)


def build_model(config):
    """A causal LM for `config`: random init seeded by config.random_seed, or the hub
    weights named by config.pretrained. SDPA attention either way."""
    if getattr(config, "pretrained", ""):
        return _load_pretrained(config.pretrained)
    from transformers import AutoModelForCausalLM

    hf_config = _hf_config(config)
    # The init must not depend on (nor disturb) whatever the global RNG did before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.random_seed)
        model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="sdpa")
    return model


def _load_pretrained(name: str):
    from transformers import AutoModelForCausalLM

    import utils.training.engine.nanogpt  # noqa: F401  (registers "nanogpt": a folder of ours loads)

    try:
        return AutoModelForCausalLM.from_pretrained(name, attn_implementation="sdpa")
    except OSError as e:
        raise OSError(
            f"pretrained: could not load {name!r} from the Hugging Face Hub ({e.__class__.__name__}). "
            "Pretrained weights need internet access (run in Colab), or a local folder path; "
            "set pretrained='' to train a model from scratch."
        ) from e


def _embedding_params(model) -> int:
    """Parameters of the lookup tables (token, position and nanogpt's value embeddings: no
    matmul) and of an untied output head (flops_per_token counts the head's matmul itself)."""
    seen: set[int] = set()
    for m in model.modules():
        if isinstance(m, torch.nn.Embedding):
            seen.add(id(m.weight))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        seen.add(id(head.weight))
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if id(p) in seen)


def count_parameters(model) -> dict:
    """{'total': unique parameters (tied ones once), 'non_embedding': total minus the
    token and position tables (Kaplan et al. convention)}."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return {"total": total, "non_embedding": total - _embedding_params(model)}


def flops_per_token(config, n_params_non_embedding: int | None = None) -> float:
    """Training FLOPs per token, PaLM appendix B: 6N + 12·L·H·Q·T.

    N counts the weights that do a matmul per token: the non-embedding parameters plus
    the output projection (vocab·d_model), which is computed even when it is tied to
    the input embedding. L layers, H heads, Q head dim, T = block_size (the attention
    term, forward+backward). Without N it is counted on a meta-device build (no memory).
    """
    if n_params_non_embedding is None:
        with torch.device("meta"):
            model = build_model(config.replace(pretrained="") if hasattr(config, "replace") else config)
        n_params_non_embedding = count_parameters(model)["non_embedding"]
    n = n_params_non_embedding + config.vocab_size * config.d_model
    head_dim = config.d_model // config.n_head
    return 6.0 * n + 12.0 * config.n_layer * config.n_head * head_dim * config.block_size

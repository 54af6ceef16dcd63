"""Presets: named starting points for a TrainingConfig, and the notebook form's model sizes.

Plain data (no imports): `TrainingConfig.preset(name)` and `from_form(preset=...)` read
these dicts, and the config's validation checks a `preset` field against PRESETS' names.
"""

from __future__ import annotations

from typing import Any

# Recipes: named sets of config overrides laid over a preset (bench/time_to_quality.py's
# --recipe, the presets). "modern" is our nanogpt family with the architecture options that
# measured best on the cpu preset's shapes and Muon (docs/models.md: each option alone and
# together, 150-step schedules, 1 seed): QK-norm, ReLU² and an untied head helped (together
# 0.962 val bits/byte, plain nanogpt 1.053); zero-init projections, logit soft-capping, value
# embeddings and U-net skips did not help alone, and all seven together (0.980) lost to these three.
# adamw and muon name the plain LLaMA model whatever the preset they are laid over has, so a
# comparison against them keeps its baseline when a preset changes its recipe.
# The learning rates were swept on the cpu preset (600 steps, seed 1, final val bits/byte;
# bench/muon_sweep.py, docs/time_to_quality.md), each recipe over its own two learning rates:
# AdamW at the preset's 2e-3 on the blocks' matrices (one lr for all: 1e-3 0.802, 2e-3 0.697,
# 4e-3 0.699, 8e-3 0.761) and 0.032 on the embeddings, head and norms (0.571; 0.016 0.574);
# Muon with AdamW's RMS scaling at 2e-3 (0.609; torch's default scaling at 0.02: 0.664) and
# 8e-3 on the embeddings (0.534); modern with Muon at 0.02 and 0.016 on the embeddings, the
# untied head and the norms (0.504; at 2e-3: 0.610). A second lr for the embeddings is most
# of what tuning gained, for AdamW as much as for Muon: the baseline has it too, so that a
# ratio against it measures Muon and the architecture, not the embeddings' lr (Wen et al.
# 2025). They are the cpu preset's: a preset of another size sweeps its own.
PLAIN = {"model_family": "llama", "qk_norm": False, "relu2_mlp": False, "tie_embeddings": True,
         "embedding_lr": "auto"}
RECIPES: dict[str, dict[str, Any]] = {
    "adamw": {**PLAIN, "optimizer": "adamw", "embedding_lr": 3.2e-2},
    "muon": {**PLAIN, "optimizer": "muon", "muon_adjust_lr": "match_rms_adamw", "muon_lr": 2e-3,
             "embedding_lr": 8e-3},
    "modern": {"model_family": "nanogpt", "optimizer": "muon", "qk_norm": True, "relu2_mlp": True,
               "tie_embeddings": False, "muon_lr": 0.02, "embedding_lr": 1.6e-2},
}

PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on a laptop CPU: tests, CI and the notebooks' smoke parameters.
    "smoke": dict(
        run_name="smoke", n_layer=2, n_head=4, n_kv_head=2, d_model=64, block_size=64, vocab_size=512,
        batch_size=8, max_steps=30, learning_rate=3e-3, warmup_ratio=0.1, log_interval=5,
        eval_interval=10, eval_batches=2, checkpoint_interval=10, keep_checkpoints=2, sample_interval=0,
    ),
    # A few minutes on 2 CPU cores (make run): small enough to finish, big enough to learn.
    "cpu": dict(
        run_name="cpu", n_layer=4, n_head=4, n_kv_head=2, d_model=128, block_size=128, vocab_size=2048,
        batch_size=16, max_steps=600, learning_rate=2e-3, warmup_ratio=0.05, log_interval=10,
        eval_interval=100, eval_batches=10, checkpoint_interval=100, keep_checkpoints=3, sample_interval=300,
        # The modern recipe (RECIPES above): the best of the three recipes on this preset by the
        # end-of-schedule time to quality (docs/time_to_quality.md).
        **RECIPES["modern"],
    ),
    # The seed's three training modes, sized for a Colab GPU (T4 and up).
    "fast": dict(
        run_name="fast", n_layer=4, n_head=4, n_kv_head=4, d_model=256, block_size=256, vocab_size=4096,
        batch_size=32, max_steps=2000, learning_rate=1e-3, log_interval=20, eval_interval=200,
        eval_batches=20, checkpoint_interval=500, sample_interval=500,
    ),
    "balanced": dict(
        run_name="balanced", n_layer=6, n_head=6, n_kv_head=2, d_model=384, block_size=512, vocab_size=8192,
        batch_size=32, max_steps=5000, learning_rate=6e-4, log_interval=25, eval_interval=250,
        eval_batches=40, checkpoint_interval=500, sample_interval=1000,
    ),
    "quality": dict(
        run_name="quality", n_layer=12, n_head=12, n_kv_head=4, d_model=768, block_size=1024,
        vocab_size=16384, batch_size=16, gradient_accumulation_steps=4, max_steps=10000,
        learning_rate=3e-4, log_interval=50, eval_interval=500, eval_batches=50, checkpoint_interval=1000,
        sample_interval=2000,
    ),
    # One GPU, as fast as it goes (bench/speedrun.py, docs/speedrun.md): GPT-2-124M's shape
    # (12 x 768, 12 heads, block 1024) with modded-nanogpt's recipe: Muon on the hidden
    # matrices, our `nanogpt` family with its modern options, bf16, compiled. Vocabulary: a
    # BPE of 8,192 trained on the corpus (on the built-in one a BPE stops at 13,157; 8,192
    # is a multiple of 64 for the tensor cores, 5.76 bytes per token on ICD-10-CM's val
    # split); 85M weights in the blocks, 6.3M each in the embedding and the untied head
    # (plus the value embeddings' tables: lookups, no FLOPs). Batch: 64 x 1024 = 65,536
    # tokens per step, 1/8 of modded-nanogpt's 524,288, because the built-in corpus has only
    # ~1.09M training tokens: 0.5M per step would be 2 steps per epoch. 100 steps = 6.55M
    # tokens = 6.0 epochs of the built-in corpus (~16.7 steps per epoch), a little past the 4
    # up to which repeated data is worth nearly as much as new (Muennighoff et al. 2023).
    # Learning rates: modded-nanogpt's Muon 0.05 and head (Adam) 0.008 at 8x this batch, times
    # sqrt(1/8) (the square-root rule, Malladi et al. 2022): 0.018 and 2.8e-3 -> 0.02 (also the
    # cpu preset's measured best) and 3e-3. Unmeasured at this size: docs/speedrun.md sweeps it.
    "speedrun": dict(
        run_name="speedrun", model_family="nanogpt", n_layer=12, n_head=12, n_kv_head=12, d_model=768,
        block_size=1024, tokenizer="bpe", vocab_size=8192, qk_norm=True, relu2_mlp=True, zero_init_proj=True,
        tie_embeddings=False, logit_softcap=15.0, value_embeds=True, unet_skips=True,
        optimizer="muon", muon_lr=0.02, learning_rate=3e-3, schedule="linear", min_lr_ratio=0.0,
        warmup_ratio=0.02, batch_size=64, gradient_accumulation_steps=1, max_steps=100,
        precision="bf16", compile="on", log_interval=5, eval_interval=5, eval_batches=2,
        checkpoint_interval=1000, keep_checkpoints=1, sample_interval=0,
    ),
}

# The notebook form's "model size" choice: shapes only, everything else from the preset.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(n_layer=2, d_model=128, n_head=4, n_kv_head=2),
    "small": dict(n_layer=4, d_model=256, n_head=4, n_kv_head=2),
    "medium": dict(n_layer=6, d_model=384, n_head=6, n_kv_head=2),
    "base": dict(n_layer=12, d_model=768, n_head=12, n_kv_head=4),
}

# A dropdown offers no blank choice, so "keep the preset's value" is a named first choice:
# "preset's size" (model_size), "preset's schedule", "preset's optimizer". from_form reads any
# value starting with PRESET_CHOICE as "not given".
PRESET_CHOICE = "preset's "
PRESET_SIZE = PRESET_CHOICE + "size"


def preset_values(name: str) -> dict[str, Any]:
    """The field values of preset `name` plus `preset=name` (unvalidated: the config that is
    built from them validates once). KeyError for an unknown name; callers say what is allowed."""
    return {**PRESETS[name], "preset": name}

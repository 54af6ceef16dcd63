"""Training memory: the estimate of the summary card and the lower bound that refuses a
run before anything is allocated. Plain arithmetic on the config (no torch).

Without the check, a batch_size of 65536 allocates for many seconds and dies with the
allocator's error; with it, the run is refused with a ConfigError naming the fields to
change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from utils.training.config_rules import Problem
from utils.training.registries import PRECISIONS

if TYPE_CHECKING:
    from utils.training.engine.run_facts import RunFacts

GIB = 2**30


def activation_scale(precision: str) -> float:
    """Activation bytes relative to 16-bit ones: 2.0 for fp32, 1.0 for bf16/fp16 (and auto)."""
    return PRECISIONS.get(precision).facts.get("bytes", 2) / 2


def estimate_training_memory_gb(cfg: Any, n_params: int, precision: str) -> float:
    """Training memory, GiB: weights + gradients + AdamW moments in fp32 (16 bytes per
    parameter) plus activations per layer of s·b·h·(34 + 5·a·s/h) bytes for 16-bit
    activations without recomputation (Korthikanti et al. 2022, eq. 1), doubled when
    `precision` is fp32, plus the logits (b·s·V·4 bytes, twice for the loss and its gradient)."""
    s, b, h, a, L, V = cfg.block_size, cfg.batch_size, cfg.d_model, cfg.n_head, cfg.n_layer, cfg.vocab_size
    bytes_per_act = activation_scale(precision)
    activations = L * s * b * h * (34 + 5 * a * s / h) * bytes_per_act
    logits = 2 * b * s * V * 4
    return (16 * n_params + activations + logits) / GIB


def memory_terms(cfg: Any, n_params: int, precision: str) -> tuple[float, float, float]:
    """(weights + gradients + AdamW, activations, logits) in bytes, the lower bound: the
    activations without the attention-score term, which fused attention (SDPA) never
    stores; what remains is kept by any implementation."""
    s, b, h, L, V = cfg.block_size, cfg.batch_size, cfg.d_model, cfg.n_layer, cfg.vocab_size
    bytes_per_act = activation_scale(precision)
    return 16.0 * n_params, L * s * b * h * 34 * bytes_per_act, 2.0 * b * s * V * 4


def minimum_training_memory_gb(cfg: Any, n_params: int, precision: str) -> float:
    """GiB a training step needs at least (see memory_terms): a run above the device's
    memory cannot fit, whatever the attention implementation."""
    return sum(memory_terms(cfg, n_params, precision)) / GIB


def memory_parts(cfg: Any, n_params: int, precision: str) -> str:
    """The lower bound's terms in words, each naming the fields it grows with."""
    w, a, lg = (x / GIB for x in memory_terms(cfg, n_params, precision))
    return (f"weights, gradients and AdamW {w:.1f}; activations {a:.1f} from n_layer x block_size x batch_size x "
            f"d_model; logits {lg:.1f} from batch_size x block_size x vocab_size")


def memory_problem(cfg: Any, facts: RunFacts) -> Problem | None:
    """None when a training step fits the device (or cfg.memory_limit_gb); else the
    Problem naming batch_size, the need, the limit and what to lower."""
    need = minimum_training_memory_gb(cfg, facts.n_params, facts.precision)
    limit = cfg.memory_limit_gb or facts.memory_gb
    where = f"memory_limit_gb = {cfg.memory_limit_gb:g}" if cfg.memory_limit_gb else facts.describe_device()
    if not limit or need <= limit:
        return None
    return Problem(
        "batch_size", cfg.batch_size,
        f"this run needs at least {need:.1f} GiB ({memory_parts(cfg, facts.n_params, facts.precision)}) "
        f"and {where} allows {limit:.1f}: lower batch_size (raise gradient_accumulation_steps to keep the "
        "tokens per step), block_size, d_model or n_layer, or set memory_limit_gb")

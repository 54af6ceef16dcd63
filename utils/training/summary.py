"""The summary card: what a run will do, from its config, run facts and data (no guesses),
as a dict (`summary_card`) and as aligned text (`format_summary`); and `context_claim`,
what a final val_loss says against the corpus's unigram entropy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from utils.training.engine.memory import estimate_training_memory_gb
from utils.training.text import CHINCHILLA_TOKENS_PER_PARAM, chinchilla_share

if TYPE_CHECKING:
    from utils.training.config import TrainingConfig
    from utils.training.engine.run_facts import RunFacts


def summary_card(cfg: TrainingConfig, facts: RunFacts, stats: dict[str, Any], bytes_per_token: float,
                 caveat: str) -> dict[str, Any]:
    """The card's numbers. `stats`: the prepared data's (synthetic or not)."""
    train_tokens, max_steps = facts.train_tokens, facts.max_steps
    planned = max_steps * cfg.tokens_per_step
    optimal = CHINCHILLA_TOKENS_PER_PARAM * facts.n_params
    return {
        "run_name": cfg.run_name,
        "model_family": cfg.model_family,
        "parameters": facts.n_params,
        "non_embedding_parameters": facts.n_params_non_embedding,
        "flops_per_token": facts.flops_per_token,
        "max_steps": max_steps,
        "tokens_per_step": cfg.tokens_per_step,
        "tokens_planned": planned,
        "chinchilla_tokens": optimal,
        "chinchilla_pct": 100.0 * planned / optimal,
        "epochs_planned": planned / train_tokens if train_tokens else None,
        "precision": facts.precision,
        "memory_estimate_gb": estimate_training_memory_gb(cfg, facts.n_params, facts.precision),
        "train_tokens": train_tokens,
        "bytes_per_token": bytes_per_token,
        "synthetic_data": bool(stats.get("synthetic", False)),
        "caveat": caveat,
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary card as aligned text (the notebook prints it; the CLI prints a line)."""
    synthetic = "  (SYNTHETIC DATA: numbers are not about text)" if s["synthetic_data"] else ""
    rows = [
        ("run", f"{s['run_name']} ({s['model_family']}){synthetic}"),
        *([("note", s["caveat"])] if s.get("caveat") else []),
        ("parameters", f"{s['parameters']:,} ({s['non_embedding_parameters']:,} non-embedding)"),
        ("FLOPs per token", f"{s['flops_per_token'] / 1e6:,.1f} M (6N + 12LHQT, PaLM appendix B)"),
        ("steps", f"{s['max_steps']:,} x {s['tokens_per_step']:,} tokens"),
        ("tokens planned", f"{s['tokens_planned']:,}" + (f" = {s['epochs_planned']:.2f} epochs of {s['train_tokens']:,}"
                                                         if s["train_tokens"] else " (streamed corpus: size unknown)")),
        ("Chinchilla-optimal", f"{s['chinchilla_tokens']:,} tokens (20/parameter): plan is {chinchilla_share(s['tokens_planned'], s['parameters'])}"),
        ("memory estimate", f"{s['memory_estimate_gb']:.2f} GiB in {s['precision']} (weights, AdamW, activations, "
                            "logits)"),
        ("bytes per token", f"{s['bytes_per_token']:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def context_claim(val_loss: float, se: float, unigram_entropy: float) -> str:
    """What val_loss says against the corpus's unigram entropy (the loss of the best model
    that ignores context), claimed only beyond 2 standard errors of the evaluation."""
    gap = unigram_entropy - val_loss
    head = (f"val_loss {val_loss:.3f} (standard error {se:.3f}) against the corpus's unigram entropy "
            f"{unigram_entropy:.3f} nats/token: ")
    if not se == se:  # NaN: one sequence evaluated, no error estimate
        return head + "no standard error (one evaluated sequence): no claim"
    if gap > 2 * se:
        return head + "below it by more than 2 standard errors, so the model uses context"
    if gap < -2 * se:
        return head + "above it by more than 2 standard errors: not yet better than ignoring context"
    return head + "within 2 standard errors of it: no claim either way (evaluate on more batches)"

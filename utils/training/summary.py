"""The summary card: what a run will do, from its config, run facts and data (no guesses),
as a dict (`summary_card`) and as aligned text (`format_summary`); and `context_claim`,
what a final val_loss says against the corpus's unigram entropy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from utils.training.config_rules import ARCH_OPTIONS
from utils.training.engine.memory import estimate_training_memory_gb
from utils.training.text import CHINCHILLA_TOKENS_PER_PARAM, chinchilla_share

if TYPE_CHECKING:
    from utils.training.config import TrainingConfig
    from utils.training.engine.run_facts import RunFacts


# Colab's FAQ (research.google.com/colaboratory/faq.html): notebooks run for at most 12 hours
# (less on the free tier when busy); the run stops this long before, checkpointed, to leave
# time for the last evaluation, the checkpoint's copy to Drive and the export.
COLAB_LIMIT_S = 12 * 3600.0
STOP_MARGIN_S = 30 * 60.0


def runtime_limit_s(colab: bool) -> float:
    """The runtime's wall-time limit in seconds: Colab's 12 h; 0 elsewhere (none known)."""
    return COLAB_LIMIT_S if colab else 0.0


def stop_before_limit_s(colab: bool) -> float:
    """A time_limit_s that stops the run (checkpointed) STOP_MARGIN_S before the runtime's
    limit; 0 (no limit) off Colab."""
    limit = runtime_limit_s(colab)
    return max(0.0, limit - STOP_MARGIN_S) if limit else 0.0


def time_fit(max_steps: int, seconds_per_step: float, limit_s: float, time_limit_s: float = 0.0) -> str:
    """Whether `max_steps` at the measured `seconds_per_step` fit the runtime's `limit_s`
    (0: none known), and where time_limit_s stops the run."""
    need = max_steps * seconds_per_step
    head = f"{max_steps:,} steps x {seconds_per_step:.3g} s (measured) = {need / 3600:.2f} h"
    stop = (f"; time_limit_s {time_limit_s:,.0f} stops it checkpointed near step "
            f"{min(max_steps, int(time_limit_s / seconds_per_step)):,}" if time_limit_s and need > time_limit_s else "")
    if not limit_s:
        return head + ": no runtime limit known (not Colab)" + stop
    if need <= limit_s - STOP_MARGIN_S:
        return head + f": fits the runtime's {limit_s / 3600:.0f} h limit" + stop
    if stop:
        return head + f": more than the runtime's {limit_s / 3600:.0f} h limit" + stop + "; run again to resume"
    return (head + f": more than the runtime's {limit_s / 3600:.0f} h limit; set time_limit_s "
            f"{stop_before_limit_s(True):,.0f} (the form's stop_before_runtime_limit) to stop checkpointed "
            "before it, then resume in a new runtime")


def architecture_options(cfg: TrainingConfig) -> list[str]:
    """The architecture options `cfg` turns on (docs/models.md), as the card names them:
    ["qk_norm", "logit_softcap=15", "untied head"]; [] for the defaults."""
    shown = [name if value is True else f"{name}={value:g}" for name, off in ARCH_OPTIONS.items()
             if (value := getattr(cfg, name, off)) != off]
    return shown + ([] if getattr(cfg, "tie_embeddings", True) else ["untied head"])


def learning_rates(cfg: TrainingConfig, max_steps: int) -> str:
    """The peak learning rates and their schedule, as the optimizer is built with them: a Muon
    run has two (Muon's on the blocks' matrices, AdamW's on the rest), and embedding_lr gives
    an AdamW run two."""
    rest = f"{cfg.effective_embedding_lr:g} on the embeddings, head and norms"
    if cfg.optimizer == "muon":
        peaks = f"Muon {cfg.muon_lr:g} ({cfg.muon_adjust_lr} scaling) on the block matrices, AdamW {rest}"
    elif cfg.embedding_lr != "auto":
        peaks = f"{cfg.optimizer} {cfg.learning_rate:g} on the block matrices, {rest}"
    else:
        peaks = f"{cfg.learning_rate:g} ({cfg.optimizer})"
    return f"{peaks}; {cfg.schedule} after {cfg.warmup_steps(max_steps)} warmup steps"


def summary_card(cfg: TrainingConfig, facts: RunFacts, stats: dict[str, Any], bytes_per_token: float,
                 caveat: str, seconds_per_step: float | None = None) -> dict[str, Any]:
    """The card's numbers. `stats`: the prepared data's (synthetic or not);
    `seconds_per_step`: a measured step time (engine/timing.py), for the runtime-limit row."""
    train_tokens, max_steps = facts.train_tokens, facts.max_steps
    micro = facts.micro_batch or cfg.rank_batch(facts.world_size)[0]
    per_rank = cfg if micro == cfg.batch_size else cfg.replace(batch_size=micro)  # one rank's pass
    planned = max_steps * cfg.tokens_per_step
    optimal = CHINCHILLA_TOKENS_PER_PARAM * facts.n_params
    return {
        "run_name": cfg.run_name,
        "model_family": cfg.model_family,
        "architecture_options": architecture_options(cfg),
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
        "memory_estimate_gb": estimate_training_memory_gb(per_rank, facts.n_params, facts.precision),
        "micro_batch": micro,
        "accumulation": facts.accumulation or cfg.rank_batch(facts.world_size)[1],
        "world_size": facts.world_size,
        "batch_choice": facts.batch_choice,
        "probe_peak_gb": facts.probe_peak_gb,
        "learning_rates": learning_rates(cfg, max_steps),
        "muon_precision": facts.muon_precision,  # "" unless optimizer is muon
        "muon_precision_setting": getattr(cfg, "muon_precision", ""),
        "runtime_fit": (time_fit(max_steps, seconds_per_step, runtime_limit_s(facts.colab), cfg.time_limit_s)
                        if seconds_per_step else None),
        "train_tokens": train_tokens,
        "bytes_per_token": bytes_per_token,
        "synthetic_data": bool(stats.get("synthetic", False)),
        "caveat": caveat,
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary card as aligned text (the notebook prints it; the CLI prints a line)."""
    synthetic = "  (SYNTHETIC DATA: numbers are not about text)" if s["synthetic_data"] else ""
    rows = [
        ("run", f"{s['run_name']} ({s['model_family']}"
                + (f": {', '.join(s['architecture_options'])}" if s.get("architecture_options") else "")
                + f"){synthetic}"),
        *([("note", s["caveat"])] if s.get("caveat") else []),
        ("parameters", f"{s['parameters']:,} ({s['non_embedding_parameters']:,} non-embedding)"),
        ("FLOPs per token", f"{s['flops_per_token'] / 1e6:,.1f} M (6N + 12LHQT, PaLM appendix B)"),
        ("steps", f"{s['max_steps']:,} x {s['tokens_per_step']:,} tokens"),
        ("tokens planned", f"{s['tokens_planned']:,}" + (f" = {s['epochs_planned']:.2f} epochs of {s['train_tokens']:,}"
                                                         if s["train_tokens"] else " (streamed corpus: size unknown)")),
        ("Chinchilla-optimal", f"{s['chinchilla_tokens']:,} tokens (20/parameter): plan is {chinchilla_share(s['tokens_planned'], s['parameters'])}"),
        ("micro-batch", f"{s['micro_batch']} x accumulation {s['accumulation']} x {s['world_size']} process"
                        f"{'es' if s['world_size'] != 1 else ''} = {s['micro_batch'] * s['accumulation'] * s['world_size']}"
                        " sequences per step" + (f" ({s['batch_choice']})" if s.get("batch_choice") else "")),
        ("memory estimate", f"{s['memory_estimate_gb']:.2f} GiB in {s['precision']} at micro-batch {s['micro_batch']} "
                            "(weights, AdamW, activations, logits)"
                            + (f"; measured peak {s['probe_peak_gb']:.2f} GiB (probe, torch.cuda.max_memory_allocated)"
                               if s.get("probe_peak_gb") else "")),
        *([("learning rates", s["learning_rates"])] if s.get("learning_rates") else []),
        *([("Muon", f"Newton-Schulz in {s['muon_precision']}" + (
            " (muon_precision auto: bf16 where this device multiplies it natively, else fp32)"
            if s.get("muon_precision_setting") == "auto" else " (muon_precision, as set)"))]
          if s.get("muon_precision") else []),
        *([("runtime limit", s["runtime_fit"])] if s.get("runtime_fit") else []),
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

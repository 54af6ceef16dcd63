"""The real test of a tokenizer: train the same small model with two tokenizers for the
same number of training bytes and compare validation bits per byte.

Perplexity is per token, so it cannot compare tokenizers whose tokens cover different
amounts of text; bits per byte (val_loss / ln 2 / bytes_per_token) can. Both runs are
ordinary training runs (`TrainingSession`: the experiment database and a run log, resumable)
on the same documents, split and model shape; only the tokenizer and hence the number of
optimizer steps differ: steps = ceil(train_bytes / (bytes_per_token * tokens_per_step)).
Both runs share one evaluation schedule: the same number of evaluations, each at the same
fraction k/n of the text budget (the step where a run's training text first reaches it),
so the curves have their points at the same training MB, to within one step's bytes.
The curves are read back from each run's log, so running the tutorial again on the same
workspace shows the stored runs instead of empty curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from utils.training.engine.callbacks import TrainerCallback


def eval_steps(train_bytes: float, bytes_per_step: float, n_evals: int) -> list[int]:
    """For k = 1..n, the first step whose training text reaches k/n of `train_bytes`
    (each within one step's bytes of it; the last is the run's last step)."""
    return sorted({max(1, math.ceil(k * train_bytes / n_evals / bytes_per_step - 1e-9))
                   for k in range(1, n_evals + 1)})


class EvalAtSteps(TrainerCallback):
    """Asks for an evaluation after each of the given steps (the run's eval_interval is
    set to its last step, so these are all its evaluations)."""

    def __init__(self, steps: list[int]):
        self.steps = set(steps)

    def on_step_end(self, state, control, **kwargs) -> None:
        if state.step in self.steps:
            control.should_evaluate = True


@dataclass
class TokenizerRun:
    label: str
    tokenizer: str
    vocab_size: int
    bytes_per_token: float  # measured on the validation split by prepare_data
    steps: int
    train_mb: float  # training text consumed, MB (1e6 bytes)
    curve: list[tuple[float, float]] = field(default_factory=list)  # (training MB seen, val_bpb)
    final_val_bpb: float = float("nan")
    final_val_loss: float = float("nan")
    tokens_per_sec: float = float("nan")  # tokens seen / wall time (utils/training/throughput.py, the run's one throughput)
    seconds: float = 0.0
    status: str = ""

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "curve"}


def compare_tokenizers_by_training(documents: list[str], workspace: str | Path, train_mb: float,
                                   tokenizers: dict[str, dict] | None = None, preset: str = "smoke",
                                   evals: int = 5, **overrides) -> list[TokenizerRun]:
    """Train the preset's model once per tokenizer on `train_mb` MB of training text.

    tokenizers: {label: config overrides}, default the domain BPE and GPT-2's BPE.
    evals: validation points on each curve, at the same fractions of the text budget in
    every run (fewer when a run has fewer steps than `evals`: then every run gets that many).
    """
    from utils.training.config import TrainingConfig
    from utils.training.data.pipeline import prepare_data
    from utils.training.data.sources import TextCorpus
    from utils.training.session import ReportingOptions, TrainingSession
    from utils.training.throughput import run_throughput
    from utils.training.tracking.readers import load_run

    tokenizers = tokenizers or {"domain BPE": {"tokenizer": "bpe"}, "GPT-2 BPE": {"tokenizer": "gpt2"}}
    corpus = TextCorpus(documents=list(documents), name="tokenizer-tutorial", source="builtin")
    planned = []
    for label, tok_over in tokenizers.items():
        run_name = "tok-" + "".join(c if c.isalnum() else "-" for c in label.lower())
        cfg = TrainingConfig.preset(preset, run_name=run_name, **{**overrides, **tok_over})
        data = prepare_data(cfg, workspace, corpus=corpus)
        bytes_per_step = data.bytes_per_token * cfg.tokens_per_step  # training bytes per optimizer step
        steps = max(1, math.ceil(train_mb * 1e6 / bytes_per_step))
        planned.append((label, cfg, data, bytes_per_step, steps))
    n_evals = max(1, min([evals] + [p[-1] for p in planned]))  # one schedule: as many points in every run
    runs = []
    for label, cfg, data, bytes_per_step, steps in planned:
        at = eval_steps(train_mb * 1e6, bytes_per_step, n_evals)
        cfg = cfg.replace(max_steps=steps, eval_interval=steps, checkpoint_interval=steps,
                          log_interval=max(1, min(cfg.log_interval, steps // n_evals)))
        session = TrainingSession(cfg, workspace, data=data, tracking=ReportingOptions(progress_bar=False),
                                  callbacks=[EvalAtSteps(at)])
        try:
            result = session.train()
        finally:
            session.close()
        if result.error:
            raise RuntimeError(f"{label}: training {result.status}: {result.error}")
        record = load_run(session.run_dir / "run.json")
        ev = record.eval.dropna(subset=["val_bpb"])
        runs.append(TokenizerRun(
            label, cfg.tokenizer, data.vocab_size, data.bytes_per_token, steps, steps * bytes_per_step / 1e6,
            curve=[(int(st) * bytes_per_step / 1e6, float(b)) for st, b in zip(ev["step"], ev["val_bpb"])],
            final_val_bpb=float(ev["val_bpb"].iloc[-1]), final_val_loss=float(ev["val_loss"].iloc[-1]),
            tokens_per_sec=run_throughput(result.state.tokens_seen, result.state.elapsed_s),
            seconds=result.state.elapsed_s, status=str(result.status),
        ))
    return runs


def runs_table(runs: list[TokenizerRun]):
    import pandas as pd

    return pd.DataFrame([r.row() for r in runs])

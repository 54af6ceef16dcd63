"""The real test of a tokenizer: train the same small model with two tokenizers for the
same number of training bytes and compare validation bits per byte.

Perplexity is per token, so it cannot compare tokenizers whose tokens cover different
amounts of text; bits per byte (val_loss / ln 2 / bytes_per_token) can. Both runs use the
engine (`prepare_data`, `build_model`, `Trainer`) on the same documents, split and model
shape, without the experiment database or run log (a tutorial comparison, not a run to
keep); only the tokenizer and hence the number of optimizer steps differ:
steps = ceil(train_bytes / (bytes_per_token * tokens_per_step)).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path


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
    tokens_per_sec: float = float("nan")  # mean of the engine's logged tokens_per_sec
    seconds: float = 0.0
    status: str = ""

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "curve"}


def _recorder(run: TokenizerRun, bytes_per_step: float):
    from utils.training.callbacks import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self):
            self.tps: list[float] = []

        def on_log(self, state, control, **kw):
            v = kw.get("logs", {}).get("tokens_per_sec")
            if v:
                self.tps.append(float(v))

        def on_evaluate(self, state, control, **kw):
            m = kw.get("metrics", {})
            if "val_bpb" in m:
                run.curve.append((m["step"] * bytes_per_step / 1e6, float(m["val_bpb"])))
                run.final_val_bpb, run.final_val_loss = float(m["val_bpb"]), float(m["val_loss"])

    return Recorder()


def compare_tokenizers_by_training(documents: list[str], workspace: str | Path, train_mb: float,
                                   tokenizers: dict[str, dict] | None = None, preset: str = "smoke",
                                   evals: int = 5, **overrides) -> list[TokenizerRun]:
    """Train the preset's model once per tokenizer on `train_mb` MB of training text.

    tokenizers: {label: config overrides}, default the domain BPE and GPT-2's BPE.
    evals: validation points on each curve.
    """
    from utils.training.config import TrainingConfig
    from utils.training.data import TextCorpus, prepare_data
    from utils.training.models import build_model
    from utils.training.trainer import Trainer

    tokenizers = tokenizers or {"domain BPE": {"tokenizer": "bpe"}, "GPT-2 BPE": {"tokenizer": "gpt2"}}
    corpus = TextCorpus(documents=list(documents), name="tokenizer-tutorial", source="builtin")
    runs = []
    for label, tok_over in tokenizers.items():
        run_name = "tok-" + "".join(c if c.isalnum() else "-" for c in label.lower())
        cfg = TrainingConfig.preset(preset, run_name=run_name, **{**overrides, **tok_over})
        data = prepare_data(cfg, workspace, corpus=corpus)
        bytes_per_step = data.bytes_per_token * cfg.tokens_per_step
        steps = max(1, math.ceil(train_mb * 1e6 / bytes_per_step))
        cfg = cfg.replace(max_steps=steps, eval_interval=max(1, steps // evals), vocab_size=data.vocab_size,
                          checkpoint_interval=steps, log_interval=max(1, min(cfg.log_interval, steps // evals)))
        run = TokenizerRun(label, cfg.tokenizer, data.vocab_size, data.bytes_per_token, steps,
                           steps * bytes_per_step / 1e6)
        rec = _recorder(run, bytes_per_step)
        trainer = Trainer(cfg, build_model(cfg), data.train, data.val, run_dir=Path(workspace) / "runs" / run_name,
                          callbacks=[rec], tokenizer=data.tokenizer, bytes_per_token=data.bytes_per_token,
                          progress_bar=False)
        t0 = time.perf_counter()
        result = trainer.train()
        run.seconds = time.perf_counter() - t0
        run.status = str(result.status)
        if result.error:
            raise RuntimeError(f"{label}: training {result.status}: {result.error}")
        if rec.tps:
            run.tokens_per_sec = sum(rec.tps) / len(rec.tps)
        runs.append(run)
    return runs


def runs_table(runs: list[TokenizerRun]):
    import pandas as pd

    return pd.DataFrame([r.row() for r in runs])

"""Step times measured on this runtime, for choosing a training mode.

Each preset's model is built and trained for a few real optimizer steps by the real
Trainer (same precision, optimizer and loop as a run), on random token ids: the time
of a step does not depend on which tokens it sees. The first steps warm up (allocator,
kernels) and are not counted. The full run's time is extrapolated from the measured
mean step plus what a run does between steps, each timed once by the same probe: one
evaluation (the config's eval_batches), one checkpoint save and one batch of text samples
(SAMPLE_PROMPTS greedy continuations of SAMPLE_TOKENS tokens), times how often the run
does each (the last step does each once more, as flow.py asks). Counting only the steps
predicted 26 s for a smoke run that took 50.6 s; nothing here is a guess or a table.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.training.config import TrainingConfig
from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState


@dataclass
class PresetTiming:
    name: str
    parameters: int
    tokens_per_step: int
    max_steps: int
    seconds_per_step: float  # NaN when it could not run (error says why)
    error: str = ""
    eval_s: float = 0.0  # one evaluation, measured
    save_s: float = 0.0  # one checkpoint, measured
    sample_s: float = 0.0  # one batch of samples, measured
    n_evals: int = 0  # how many of each the full run does
    n_saves: int = 0
    n_samples: int = 0

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens_per_step / self.seconds_per_step

    @property
    def estimated_total_s(self) -> float:
        """The full run: its steps, evaluations, checkpoints and samples."""
        return (self.max_steps * self.seconds_per_step + self.n_evals * self.eval_s + self.n_saves * self.save_s
                + self.n_samples * self.sample_s)


def events(interval: int, max_steps: int) -> int:
    """How often a run of max_steps does an event every `interval` steps (0: never), the
    last step included (flow.py: the last step does each event once)."""
    if max_steps <= 0:
        return 0
    if interval <= 0:
        return 1
    return max_steps // interval + (0 if max_steps % interval == 0 else 1)


def _now() -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class _StepClock(TrainerCallback):
    """Wall time of each optimizer step (GPU work awaited, so the time is real), and of
    the last step's log, evaluation and checkpoint events (the trainer calls them in
    that order: evaluation ends at on_evaluate, the save at on_save)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.events: dict[str, float] = {}

    def on_step_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.stamps.append(_now())

    def on_log(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.events["log"] = _now()

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.events["evaluate"] = _now()

    def on_sample(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.events["sample"] = _now()

    def on_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.events["save"] = _now()


SAMPLE_PROMPTS, SAMPLE_TOKENS = 3, 32  # session.sample_prompts() and the Trainer's sample_tokens


def _sample_seconds(model, config: TrainingConfig, ids) -> float:
    """One batch of samples: SAMPLE_PROMPTS greedy continuations of SAMPLE_TOKENS tokens."""
    import torch

    device = next(model.parameters()).device
    prompt = torch.as_tensor(ids[: max(1, min(16, config.block_size // 4))], device=device)[None]
    n_new = max(1, min(SAMPLE_TOKENS, config.block_size - prompt.size(1)))
    was = model.training
    model.eval()
    t0 = _now()
    with torch.no_grad():
        for _ in range(SAMPLE_PROMPTS):
            model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n_new, do_sample=False,
                           pad_token_id=0)
    seconds = _now() - t0
    model.train(was)
    return seconds


N_STEPS = 5  # timed steps per model: fewer read a noisy mean (the first after warm-up varies most)
WARMUP_STEPS = 2


def time_config(config: TrainingConfig, *, name: str = "", n_steps: int = N_STEPS,
                warmup_steps: int = WARMUP_STEPS) -> PresetTiming:
    """Train `config`'s model for warmup_steps + n_steps steps and time the last n_steps
    (from the end of the last warmup step to the end of the last step)."""
    import torch

    from utils.training.data.sampler import RandomBatchSampler
    from utils.training.engine.models import build_model, count_parameters
    from utils.training.engine.trainer import Trainer

    if warmup_steps < 1 or n_steps < 1:
        raise ValueError(f"warmup_steps and n_steps must be >= 1, got {warmup_steps} and {n_steps}")
    label = name or config.run_name
    total = warmup_steps + n_steps  # the last step logs, evaluates and saves once (timed)
    probe = config.replace(max_steps=total, log_interval=total, eval_interval=total, checkpoint_interval=total,
                           sample_interval=0, early_stopping_patience=0, time_limit_s=0.0)
    model = build_model(probe)
    params = count_parameters(model)["total"]
    clock = _StepClock()
    # Random token ids: a step costs the same whatever tokens it sees (for timing only).
    ids = np.random.default_rng(probe.random_seed).integers(0, probe.vocab_size, 4 * probe.tokens_per_step + 1)
    source = RandomBatchSampler(ids, probe.rank_batch(1)[0], probe.block_size, probe.random_seed)  # "auto": the preset's
    with tempfile.TemporaryDirectory(prefix="step-timing-") as tmp:
        # The training source doubles as the validation source: an evaluation's cost is its batches.
        trainer = Trainer(probe, model, source, source, run_dir=tmp, callbacks=[clock], progress_bar=False)
        try:
            trainer.train()
            sample_s = _sample_seconds(trainer.raw_model, probe, ids)
        except torch.cuda.OutOfMemoryError as e:
            return PresetTiming(label, params, config.tokens_per_step, 0, float("nan"), f"out of GPU memory: {e}")
    per_step = float(np.mean(np.diff(clock.stamps[warmup_steps - 1 :])))
    ev = clock.events
    eval_s = ev["evaluate"] - ev["log"] if {"evaluate", "log"} <= ev.keys() else 0.0
    save_s = ev["save"] - ev.get("sample", ev.get("evaluate", ev["save"])) if "save" in ev else 0.0
    return PresetTiming(label, params, config.tokens_per_step, config.max_steps, per_step,
                        eval_s=eval_s, save_s=save_s, sample_s=sample_s,
                        n_evals=events(config.eval_interval, config.max_steps),
                        n_saves=events(config.checkpoint_interval, config.max_steps),
                        n_samples=events(config.sample_interval, config.max_steps))


def measure_presets(presets: list[str | TrainingConfig], *, vocab_size: int, n_steps: int = N_STEPS,
                    warmup_steps: int = WARMUP_STEPS) -> list[PresetTiming]:
    """Time each preset (by name) or config, with the corpus's vocabulary size. A config
    whose model is the same as a preset's listed before it is timed once, not twice."""
    out: list[PresetTiming] = []
    timed: dict[str, PresetTiming] = {}
    t_cfg: dict[str, TrainingConfig] = {}  # the config each timing was measured with
    for p in presets:
        if isinstance(p, TrainingConfig):
            cfg, name = p.replace(vocab_size=vocab_size), f"{p.run_name} (this run)"
        else:
            cfg, name = TrainingConfig.preset(p, vocab_size=vocab_size), p
        key = _step_key(cfg)
        if key in timed:
            t = timed[key]
            out.append(PresetTiming(name, t.parameters, cfg.tokens_per_step, cfg.max_steps, t.seconds_per_step,
                                    t.error, t.eval_s * cfg.eval_batches / max(1, t_cfg[key].eval_batches),
                                    t.save_s, t.sample_s, events(cfg.eval_interval, cfg.max_steps),
                                    events(cfg.checkpoint_interval, cfg.max_steps),
                                    events(cfg.sample_interval, cfg.max_steps)))
            continue
        timed[key] = time_config(cfg, name=name, n_steps=n_steps, warmup_steps=warmup_steps)
        t_cfg[key] = cfg
        out.append(timed[key])
    return out


def _step_key(cfg: TrainingConfig) -> str:
    """What a step's time depends on: the model, the batch and the numerics."""
    from utils.training.config import config_dict_hash

    d = cfg.to_dict()
    for k in ("run_name", "preset", "max_steps", "max_tokens", "epochs", "log_interval", "eval_interval",
              "eval_batches", "checkpoint_interval", "keep_checkpoints", "sample_interval", "time_limit_s",
              "early_stopping_patience", "learning_rate", "warmup_ratio", "weight_decay", "min_lr_ratio",
              "schedule", "random_seed", "data_source", "data_path", "hf_dataset", "hf_config", "text_column",
              "validation_split"):
        d.pop(k, None)
    return config_dict_hash(d)


def _total(seconds: float) -> str:
    """A full run's time: seconds under a minute, minutes under 90, else hours."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def format_timings(timings: list[PresetTiming]) -> str:
    lines = [f"{'mode':<22}{'params':>10}{'s/step':>9}{'tokens/s':>11}{'steps':>8}{'full run*':>11}"]
    for t in timings:
        if t.error:
            lines.append(f"{t.name:<22}{t.parameters / 1e6:>9.1f}M  {t.error}")
            continue
        total_txt = _total(t.estimated_total_s)
        lines.append(f"{t.name:<22}{t.parameters / 1e6:>9.1f}M{t.seconds_per_step:>9.3f}"
                     f"{t.tokens_per_sec:>11,.0f}{t.max_steps:>8}{total_txt:>11}")
    lines.append("* steps plus evaluations, checkpoints and text samples, each timed once here")
    return "\n".join(lines)

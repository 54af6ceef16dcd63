"""Step times measured on this runtime, for choosing a training mode, and the full run's
wall time predicted from them.

Each preset's model is built and trained for a few real optimizer steps by the real
Trainer (same precision, optimizer and loop as a run), on random token ids: the time
of a step does not depend on which tokens it sees. The first steps warm up (allocator,
kernels, a torch.compile) and are not counted in the step time; their extra time is the
run's start-up part. The full run's time is then the sum of parts, each timed once by
the same probe and multiplied by how often the run does it:

    steps        max_steps x the mean step
    start-up     the warm-up steps' time over that of as many mean steps
    evaluations  every eval_interval steps and at the last step (eval_batches batches)
    checkpoints  every checkpoint_interval steps and at the last step (one write, timed)
    samples      every sample_interval steps and at the last step
    reports      the training report's figure every viz_interval steps (when asked)
    export       once, after the run (save_pretrained; not in the run's own wall time)

How often is not computed here: `run_events` replays FlowCallback, the one owner of
cadence, step by step. Counting only the steps predicted 26 s for a smoke run that took
50.6 s; nothing here is a guess or a table.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utils.training.config import TrainingConfig
from utils.training.engine.callbacks import (
    FlowCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from utils.training.text import duration

# The run's events the prediction counts, as run_events names them.
COUNTED = ("evaluations", "checkpoints", "samples", "reports")


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
    n_evals: int = 0  # how many of each the full run does (run_events)
    n_saves: int = 0
    n_samples: int = 0
    start_s: float = 0.0  # the warm-up steps' time beyond as many mean steps (first step, compile)
    report_s: float = 0.0  # one training report figure, measured (0: none asked)
    n_reports: int = 0
    export_s: float = 0.0  # one save_pretrained of the model, measured

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens_per_step / self.seconds_per_step

    def parts(self) -> dict[str, tuple[int, float]]:
        """Each part of the run's wall time: (how many times, seconds each)."""
        return {"steps": (self.max_steps, self.seconds_per_step), "start-up": (1, self.start_s),
                "evaluations": (self.n_evals, self.eval_s), "checkpoints": (self.n_saves, self.save_s),
                "samples": (self.n_samples, self.sample_s), "reports": (self.n_reports, self.report_s)}

    @property
    def run_s(self) -> float:
        """The run's own wall time (the trainer's elapsed_s: what the card, the progress
        bar and the command line print): steps, start-up and every event between steps."""
        return sum(n * s for n, s in self.parts().values())

    @property
    def estimated_total_s(self) -> float:
        """The full run: its wall time plus the export after it."""
        return self.run_s + self.export_s


def events(interval: int, max_steps: int) -> int:
    """How often a run of max_steps does an event every `interval` steps (0: never), the
    last step included (FlowCallback: the last step does each event once)."""
    if max_steps <= 0:
        return 0
    if interval <= 0:
        return 1
    return max_steps // interval + (0 if max_steps % interval == 0 else 1)


def run_events(config: TrainingConfig, max_steps: int | None = None, *, viz_interval: int = 0,
               evaluate: bool = True) -> dict[str, int]:
    """How many logs, evaluations, checkpoints and sample batches a run of `config` does
    (max_steps: the config's), FlowCallback's own decisions replayed step by step, and how
    many training report figures it draws within its wall time every `viz_interval` steps
    (viz/report.py's rule: at the first log step at or after each multiple; the figure
    drawn after the run ends is not in the wall time). A run that stops early does fewer."""
    n_steps = config.max_steps if max_steps is None else max_steps
    flow = FlowCallback(config.log_interval, config.eval_interval, config.checkpoint_interval,
                        config.sample_interval, evaluate=evaluate)  # no time limit: the full run
    state, control = TrainerState(max_steps=n_steps), TrainerControl()
    counts = dict.fromkeys(("logs", *COUNTED), 0)
    next_viz = viz_interval
    for step in range(1, n_steps + 1):
        state.step = step
        flow.on_step_end(state, control)
        if viz_interval > 0 and control.should_log and step >= next_viz:
            counts["reports"] += 1
            next_viz = (step // viz_interval + 1) * viz_interval
        for flag, key in (("should_log", "logs"), ("should_evaluate", "evaluations"),
                          ("should_sample", "samples"), ("should_save", "checkpoints")):
            counts[key] += getattr(control, flag)
            setattr(control, flag, False)  # the trainer's CallbackHandler lowers each when it sends the event
    return counts


def _now() -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class _StepClock(TrainerCallback):
    """Wall time of the start and of each optimizer step (GPU work awaited, so the time
    is real), and of the last step's log, evaluation and checkpoint events (the trainer
    calls them in that order: evaluation ends at on_evaluate, the save between
    on_before_save and on_save; samples are timed on their own, _sample_seconds).
    It runs first among the callbacks, so an event's stamp comes before the others' work
    for that event (a report drawn in on_evaluate is timed by its own _Timed)."""

    def __init__(self) -> None:
        self.begin = 0.0
        self.stamps: list[float] = []
        self.events: dict[str, float] = {}

    def on_train_begin(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.begin = _now()

    def on_step_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.stamps.append(_now())

    def on_log(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.events["log"] = _now()

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.events["evaluate"] = _now()

    def on_before_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.events["before_save"] = _now()

    def on_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.events["save"] = _now()


class _Timed(TrainerCallback):
    """Another callback, with the wall time spent in its events summed in `seconds`: those
    between steps, which recur (on_train_begin happens once, on_train_end after the run's
    wall time)."""

    def __init__(self, inner: TrainerCallback) -> None:
        self.inner, self.seconds = inner, 0.0

    def __getattribute__(self, name: str):
        if not name.startswith("on_") or name in ("on_train_begin", "on_train_end"):
            return object.__getattribute__(self, name)
        method = getattr(object.__getattribute__(self, "inner"), name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
        return timed


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


def _export_seconds(model, out_dir: Path) -> float:
    """One export of the model (save_pretrained, as TrainingSession.export does), without
    the progress bar transformers draws for it (this is a probe, not the export)."""
    from transformers.utils import logging as hf_logging

    from utils.training.engine.generation import export_model

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        t0 = time.perf_counter()
        export_model(model, None, out_dir)
        return time.perf_counter() - t0
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _report_seconds(drawn: _Timed | None, step: int) -> float:
    """One training report figure: the probe's, or when the report has render(step), a
    second one (the first paid one-time costs, fonts and imports, that the run's will not)."""
    if drawn is None:
        return 0.0
    redraw = getattr(drawn.inner, "render", None)
    if not callable(redraw):
        return drawn.seconds
    t0 = time.perf_counter()
    redraw(step)
    return time.perf_counter() - t0


N_STEPS = 5  # timed steps per model: fewer read a noisy mean (the first after warm-up varies most)
WARMUP_STEPS = 2
# Batches the probe evaluates: an evaluation's time is linear in its batches, so it is
# scaled to eval_batches (the fast preset's 20 took as long as its 7 probe steps on a CPU).
EVAL_BATCHES = 2

# report(run_dir, viz_interval) -> a callback that draws the training report every viz_interval
# steps (viz.report.TrainingReport: the engine does not import viz, the caller hands it in).
# When it has render(step) (TrainingReport does), a second, warm figure is the one timed.
ReportFactory = Callable[[Path, int], TrainerCallback]


def time_config(config: TrainingConfig, *, name: str = "", n_steps: int = N_STEPS,
                warmup_steps: int = WARMUP_STEPS, report: ReportFactory | None = None,
                viz_interval: int = 0) -> PresetTiming:
    """Train `config`'s model for warmup_steps + n_steps steps and time the last n_steps
    (from the end of the last warmup step to the end of the last step); the last step logs,
    evaluates, samples (when `report` is given, draws the report) and saves once, each timed."""
    import torch

    from utils.training.data.sampler import RandomBatchSampler
    from utils.training.engine.models import build_model, count_parameters
    from utils.training.engine.trainer import Trainer

    if warmup_steps < 1 or n_steps < 1:
        raise ValueError(f"warmup_steps and n_steps must be >= 1, got {warmup_steps} and {n_steps}")
    label = name or config.run_name
    total = warmup_steps + n_steps  # the last step logs, evaluates and saves once (timed)
    probe = config.replace(max_steps=total, log_interval=total, eval_interval=total, checkpoint_interval=total,
                           eval_batches=max(1, min(EVAL_BATCHES, config.eval_batches)), sample_interval=0,
                           early_stopping_patience=0, time_limit_s=0.0)
    model = build_model(probe)
    params = count_parameters(model)["total"]
    clock = _StepClock()
    # Random token ids: a step costs the same whatever tokens it sees (for timing only).
    ids = np.random.default_rng(probe.random_seed).integers(0, probe.vocab_size, 4 * probe.tokens_per_step + 1)
    source = RandomBatchSampler(ids, probe.rank_batch(1)[0], probe.block_size, probe.random_seed)  # "auto": the preset's
    with tempfile.TemporaryDirectory(prefix="step-timing-") as tmp:
        drawn = _Timed(report(Path(tmp) / "report", total)) if report is not None and viz_interval > 0 else None
        # The training source doubles as the validation source: an evaluation's cost is its batches.
        trainer = Trainer(probe, model, source, source, run_dir=tmp, progress_bar=False,
                          callbacks=[clock] + ([drawn] if drawn is not None else []))
        try:
            trainer.train()
            sample_s = _sample_seconds(trainer.raw_model, probe, ids)
            export_s = _export_seconds(trainer.raw_model, Path(tmp) / "export")
            report_s = _report_seconds(drawn, total)
        except torch.cuda.OutOfMemoryError as e:
            return PresetTiming(label, params, config.tokens_per_step, 0, float("nan"), f"out of GPU memory: {e}")
    per_step = float(np.mean(np.diff(clock.stamps[warmup_steps - 1 :])))
    start_s = max(0.0, clock.stamps[warmup_steps - 1] - clock.begin - warmup_steps * per_step)
    ev = clock.events
    # The clock's stamps come before the other callbacks' work of the same event: the report
    # (drawn once the step's evaluation and samples are in) is in neither interval below.
    eval_s = ev["evaluate"] - ev["log"] if {"evaluate", "log"} <= ev.keys() else 0.0
    eval_s *= config.eval_batches / probe.eval_batches
    save_s = ev["save"] - ev["before_save"] if {"save", "before_save"} <= ev.keys() else 0.0
    timing = PresetTiming(label, params, config.tokens_per_step, config.max_steps, per_step,
                          eval_s=eval_s, save_s=save_s, sample_s=sample_s, start_s=start_s,
                          report_s=report_s, export_s=export_s)
    return with_counts(timing, config, viz_interval if report is not None else 0)


def with_counts(t: PresetTiming, config: TrainingConfig, viz_interval: int = 0) -> PresetTiming:
    """`t` with how often `config`'s full run does each event (run_events)."""
    n = run_events(config, viz_interval=viz_interval)
    t.n_evals, t.n_saves, t.n_samples, t.n_reports = (n["evaluations"], n["checkpoints"], n["samples"],
                                                      n["reports"])
    return t


def measure_presets(presets: list[str | TrainingConfig], *, vocab_size: int, n_steps: int = N_STEPS,
                    warmup_steps: int = WARMUP_STEPS, report: ReportFactory | None = None,
                    viz_interval: int = 0) -> list[PresetTiming]:
    """Time each preset (by name) or config, with the corpus's vocabulary size. A config
    whose model is the same as a preset's listed before it is timed once, not twice.
    `report` and `viz_interval`: the training report the run draws (the notebook's
    TrainingReport and its viz_interval), timed once and counted in the prediction."""
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
            again = PresetTiming(name, t.parameters, cfg.tokens_per_step, cfg.max_steps, t.seconds_per_step,
                                 t.error, t.eval_s * cfg.eval_batches / max(1, t_cfg[key].eval_batches),
                                 t.save_s, t.sample_s, start_s=t.start_s, report_s=t.report_s,
                                 export_s=t.export_s)
            out.append(with_counts(again, cfg, viz_interval if report is not None else 0))
            continue
        timed[key] = time_config(cfg, name=name, n_steps=n_steps, warmup_steps=warmup_steps, report=report,
                                 viz_interval=viz_interval)
        t_cfg[key] = cfg
        out.append(timed[key])
    return out


def _step_key(cfg: TrainingConfig) -> str:
    """What a step's time depends on: the model, the batch and the numerics."""
    from utils.training.config import config_dict_hash

    d = cfg.to_dict()
    for k in ("run_name", "preset", "max_steps", "max_tokens", "epochs", "log_interval", "eval_interval",
              "eval_batches", "checkpoint_interval", "keep_checkpoints", "sample_interval", "time_limit_s",
              "early_stopping_patience", "learning_rate", "embedding_lr", "warmup_ratio", "weight_decay",
              "min_lr_ratio", "schedule", "random_seed", "data_source", "data_path", "hf_dataset", "hf_config",
              "text_column", "validation_split"):
        d.pop(k, None)
    return config_dict_hash(d)


def _each(seconds: float) -> str:
    """One event's time, 2 significant digits: '0.31 s', '1.2 s', '12 s'; from 2 min as
    text.duration writes a run's time."""
    if seconds >= 120:
        return duration(seconds)
    return f"{seconds:.2g} s" if seconds >= 0.01 else "<0.01 s"


def _columns(rows: list[list[str]]) -> list[str]:
    """Rows of cells as lines: the first column left-aligned, the others right-aligned,
    each as wide as its widest cell plus two spaces."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["".join([r[0].ljust(widths[0])] + [c.rjust(w + 2) for c, w in zip(r[1:], widths[1:])]).rstrip()
            for r in rows]


# A notebook shows this text 750 px wide (JupyterLab at a 1280-px window with its file
# browser open): about 90 characters of its 13-px monospace font.
MAX_WIDTH = 90


def format_timings(timings: list[PresetTiming]) -> str:
    """Two tables: each mode's measured step and predicted wall time, then where that time
    goes (how many times x seconds each). Each column as wide as its content (MAX_WIDTH)."""
    head = [["mode", "params", "s/step", "tokens/s", "steps", "run*", "+ export"]]
    parts = [["mode", "start-up", "evaluations", "checkpoints", "samples", "reports"]]
    errors = []
    for t in timings:
        if t.error:
            errors.append(f"{t.name}: {t.parameters / 1e6:.1f}M parameters, {t.error}")
            continue
        head.append([t.name, f"{t.parameters / 1e6:.1f}M", f"{t.seconds_per_step:.3f}", f"{t.tokens_per_sec:,.0f}",
                     f"{t.max_steps:,}", duration(t.run_s), _each(t.export_s)])
        p = t.parts()
        parts.append([t.name, _each(t.start_s)] + [f"{n} x {_each(s)}" if n else "-" for n, s in (p[k] for k in COUNTED)])
    if all(row[-1] == "-" for row in parts[1:]):  # no report asked: no column for it
        parts = [row[:-1] for row in parts]
    lines = _columns(head) if len(head) > 1 else []
    lines += errors
    if len(head) > 1:
        lines += ["* the run's own wall time, as its card prints it: steps x s/step, plus the start-up and",
                  "  what the run does between steps (times x seconds each, each timed once here);",
                  "  then the export.", *_columns(parts)]
    return "\n".join(lines)

"""The event contract between the training loop and everything around it.

The loop (trainer.py) knows only the events below. Tracking, plotting, checkpoint
scheduling, early stopping and pruning are callbacks: they read `TrainerState` and
steer the loop only through `TrainerControl` (the split Hugging Face's Trainer uses).
When to log, evaluate, sample and save is itself a callback's decision (FlowCallback,
below: Hugging Face's DefaultFlowCallback); the handler lowers each `should_*` flag when
the event answering it is sent, before the callbacks run (so one of them may raise it
again). The progress bar is progress.py's.

Events, in the order a run sees them:

    on_train_begin(state, control, config=..., model=..., run_info=...)
    on_step_end(state, control)                     every optimizer step; no host sync here
    on_log(state, control, logs=...)                when control.should_log (every log_interval steps)
    on_evaluate(state, control, metrics=...)        when control.should_evaluate (every eval_interval, at the end)
    on_sample(state, control, samples=...)          when control.should_sample (every sample_interval, at the end)
    on_before_save(state, control)                  before a checkpoint is written: make logs durable
    on_save(state, control, checkpoint_path=...)    when control.should_save, after the checkpoint verified
    on_train_end(state, control, status=..., error=...)   always, from a `finally`

Under DDP, user callbacks run on rank 0 only; on the other ranks on_sample gets
samples=[] and on_save checkpoint_path=None (rank 0 generates and writes).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from utils.training.contracts import RunStatus


@dataclass
class TrainerState:
    """What callbacks may read. Saved in every checkpoint (`to_dict`), so a resumed
    run continues its counters, its best score and its tracking ids."""

    run_name: str = "run"
    step: int = 0  # optimizer steps completed
    max_steps: int = 0  # the run's step budget
    tokens_seen: int = 0  # training tokens consumed, all ranks
    elapsed_s: float = 0.0  # training wall time, summed over resumes
    epoch: float = 0.0  # tokens_seen / training tokens in the corpus
    best_val_loss: float = math.inf
    best_step: int = -1
    last_val_loss: float = math.nan
    evals_without_improvement: int = 0
    resumed_from_step: int | None = None  # None on a fresh start
    last_eval_step: int = -1  # the step of the last evaluation (-1: none yet)
    last_sample_step: int = -1  # the step of the last text samples (-1: none yet)
    last_save_step: int = -1  # the step of the last checkpoint (-1: none yet)
    # The last evaluation's metrics (val_loss, val_loss_se, ...): a run resumed at its end
    # trains and evaluates nothing more, and still reports what its last evaluation measured.
    last_eval_metrics: dict[str, float] = field(default_factory=dict)
    world_size: int = 1
    # Sequences per forward/backward pass on each rank after an out-of-memory back-off (0:
    # none, the config's): saved with the checkpoint, so a resumed run keeps the smaller pass.
    micro_batch: int = 0
    is_world_process_zero: bool = True
    # Ids that sinks store so a resumed run continues the same rows:
    # {"db_run_id": 3, "wandb_run_id": "a1b2c3"}.
    tracking: dict[str, Any] = field(default_factory=dict)

    def record_evaluation(self, val_loss: float) -> None:
        """An evaluation at this step: the last and best val_loss, the patience count."""
        self.last_val_loss, self.last_eval_step = val_loss, self.step
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_step, self.evals_without_improvement = val_loss, self.step, 0
        else:
            self.evals_without_improvement += 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # Process-local facts are not restored from a checkpoint.
        d.pop("is_world_process_zero")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainerState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainerControl:
    """The only thing callbacks change. The loop reads it after every step and acts on
    the flags; the CallbackHandler lowers each flag when its event is sent."""

    should_stop: bool = False
    stop_status: str = RunStatus.COMPLETED  # status to end with when should_stop is set
    stop_reason: str = ""
    should_save: bool = False  # save a checkpoint after this step
    should_evaluate: bool = False  # evaluate after this step
    should_log: bool = False  # emit on_log after this step
    should_sample: bool = False  # generate text samples (on_sample) after this step

    def stop(self, status: str, reason: str) -> None:
        """Ask the loop to end after the current step with `status` (e.g. pruned)."""
        if status not in RunStatus.ENDED:
            raise ValueError(f"stop status must be one of {RunStatus.ENDED}, got {status!r}")
        self.should_stop = True
        self.stop_status = status
        self.stop_reason = reason


class TrainerCallback:
    """Base class: override the events you need. Every event gets (state, control)
    and keyword arguments; accept **kwargs so new keywords never break a callback."""

    def on_train_begin(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_step_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_log(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_sample(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_before_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_train_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...


EVENTS = (
    "on_train_begin",
    "on_step_end",
    "on_log",
    "on_evaluate",
    "on_sample",
    "on_before_save",
    "on_save",
    "on_train_end",
)


# The control flag each event answers: lowered by the handler before the callbacks run.
ANSWERS = {"on_log": "should_log", "on_evaluate": "should_evaluate", "on_sample": "should_sample",
           "on_save": "should_save"}


class CallbackHandler:
    """Calls callbacks in list order. `on_train_end` reaches every callback even when
    one of them raises (teardown must run); the first error is re-raised after. An
    event that answers a control flag (ANSWERS) lowers it first, as Hugging Face's
    CallbackHandler does: the loop acts, the handler resets, a callback may ask again."""

    def __init__(self, callbacks: list[TrainerCallback] | tuple[TrainerCallback, ...] = ()):
        self.callbacks: list[TrainerCallback] = list(callbacks)

    def add(self, callback: TrainerCallback) -> None:
        self.callbacks.append(callback)

    def call(self, event: str, state: TrainerState, control: TrainerControl, **kwargs: Any) -> TrainerControl:
        if event not in EVENTS:
            raise ValueError(f"unknown callback event {event!r}; events are {EVENTS}")
        if event in ANSWERS:
            setattr(control, ANSWERS[event], False)
        if event == "on_train_end":
            return self._call_all(event, state, control, **kwargs)
        for cb in self.callbacks:
            getattr(cb, event)(state, control, **kwargs)
        return control

    def _call_all(self, event: str, state: TrainerState, control: TrainerControl, **kwargs: Any) -> TrainerControl:
        first_error: BaseException | None = None
        for cb in self.callbacks:
            try:
                getattr(cb, event)(state, control, **kwargs)
            except Exception as e:  # noqa: BLE001 - teardown of the others must still run; re-raised below
                if first_error is None:
                    first_error = e
        if first_error is not None:
            raise first_error
        return control


# ---------------------------------------------------------------------------------------
# Callbacks the trainer adds by default: FlowCallback, EarlyStoppingCallback (and
# progress.ProgressBarCallback). What must survive a resume lives in TrainerState.
# ---------------------------------------------------------------------------------------

# The loop's cadence, in one place (Hugging Face's DefaultFlowCallback): when a run
# logs, evaluates, writes text samples and checkpoints, when it stops on its time
# limit, and what its last step does. The trainer only asks the control after each step
# (`should_log`, `should_evaluate`, `should_sample`, `should_save`, `should_stop`) and
# acts; the CallbackHandler lowers each flag when the event that answers it is sent.
#
# Cadence (`step` counts optimizer steps from 1; an interval of 0 means never):
#     should_log       every log_interval steps and at the last step
#     should_evaluate  every eval_interval steps and at the last step (when there is validation data)
#     should_sample    every sample_interval steps and at the last step
#     should_save      every checkpoint_interval steps and at the last step
# A run that stops before max_steps (early stopping, time limit, a callback's stop) ends
# like one that completes: its last step is evaluated and sampled unless the run was
# pruned, and saved, each unless already done at that step.
#
# DDP: the flags must be the same on every rank at the same steps (what follows them is
# collective). Cadence is a function of the step, the same everywhere; a flag that a
# rank-0-only callback raises between cadence steps (a pruner, the time limit measured
# on rank 0) is held back here until the next cadence step, where the trainer
# broadcasts rank 0's control.

FLAGS = ("should_log", "should_evaluate", "should_sample", "should_save", "should_stop")


def due(step: int, interval: int) -> bool:
    """Whether `step` is a multiple of `interval` (never for interval 0)."""
    return interval > 0 and step % interval == 0


@dataclass
class Intervals:
    """Steps between events; 0 = never (the last step still gets each, see FlowCallback)."""

    log: int = 0
    eval: int = 0
    sample: int = 0
    checkpoint: int = 0


class FlowCallback(TrainerCallback):
    """Owns all cadence; the trainer adds one, after the callbacks that may stop a run
    (so that it sees their stop in the same event) and before the progress bar."""

    def __init__(self, log_interval: int = 0, eval_interval: int = 0, checkpoint_interval: int = 0,
                 sample_interval: int = 0, *, time_limit_s: float = 0.0, evaluate: bool = True,
                 ends_run: bool = True):
        self.intervals = Intervals(log_interval, eval_interval, sample_interval, checkpoint_interval)
        self.time_limit_s = time_limit_s
        self.evaluate = evaluate  # False: no validation data, never ask for an evaluation
        self.ends_run = ends_run  # the last step's work, stops, the DDP hold (False: intervals only)
        self._t0 = time.perf_counter()
        self._held: dict[str, Any] = {}  # DDP: flags raised between cadence steps, with the stop's status

    @classmethod
    def from_config(cls, config, *, evaluate: bool = True) -> FlowCallback:
        """The cadence of a TrainingConfig (its intervals and time_limit_s)."""
        return cls(config.log_interval, config.eval_interval, config.checkpoint_interval, config.sample_interval,
                   time_limit_s=config.time_limit_s or 0.0, evaluate=evaluate)

    def logs_at(self, step: int, max_steps: int) -> bool:
        """Whether `step` is a log step: the loop measures accuracy and the gradient norm
        (device work it skips on other steps) only for those."""
        return due(step, self.intervals.log) or (self.ends_run and step >= max_steps > 0)

    # -- events --------------------------------------------------------------------

    def on_train_begin(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()  # the time limit counts this session's training only
        self._held = {}

    def on_step_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        s, every = state.step, self.intervals
        last = self.ends_run and state.max_steps > 0 and s >= state.max_steps
        cadence = False
        for flag, interval, wanted in (("should_log", every.log, True), ("should_evaluate", every.eval, self.evaluate),
                                       ("should_sample", every.sample, True), ("should_save", every.checkpoint, True)):
            if wanted and (due(s, interval) or last):
                setattr(control, flag, True)
                cadence = True
        if not self.ends_run:
            return
        if (self.time_limit_s and state.is_world_process_zero and not control.should_stop
                and time.perf_counter() - self._t0 > self.time_limit_s):
            control.stop(RunStatus.STOPPED_EARLY, f"time limit of {self.time_limit_s:g} s reached")
        if state.world_size > 1:
            self._hold_until_cadence(control, cadence)
        self._if_stopping(state, control)

    def on_log(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._if_stopping(state, control)

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._if_stopping(state, control)

    def on_sample(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._if_stopping(state, control)

    def on_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._if_stopping(state, control)

    # -- how a run ends --------------------------------------------------------------

    def _if_stopping(self, state: TrainerState, control: TrainerControl) -> None:
        """A stop asked for: the last step's evaluation, samples and checkpoint, each
        unless done at this step (the state records where each was last done)."""
        if not (self.ends_run and control.should_stop):
            return
        if control.stop_status != RunStatus.PRUNED:  # a pruned trial's score is the pruner's
            if self.evaluate and state.last_eval_step != state.step:
                control.should_evaluate = True
            if state.last_sample_step != state.step:
                control.should_sample = True
        if state.last_save_step != state.step and state.step > 0:
            control.should_save = True

    def _hold_until_cadence(self, control: TrainerControl, cadence: bool) -> None:
        if not cadence:  # not a step every rank syncs at: keep what was raised for the next one
            for flag in FLAGS:
                if getattr(control, flag):
                    self._held[flag] = True
                    setattr(control, flag, False)
            if "should_stop" in self._held:
                self._held["stop"] = (control.stop_status, control.stop_reason)
            return
        for flag in FLAGS:
            if self._held.pop(flag, False):
                setattr(control, flag, True)
        if "stop" in self._held and control.should_stop:
            control.stop_status, control.stop_reason = self._held.pop("stop")


class EarlyStoppingCallback(TrainerCallback):
    """Stops with `stopped_early` after `patience` evaluations without a new best
    val_loss. The trainer keeps the count in state.evals_without_improvement, so the
    patience carries over a resume."""

    def __init__(self, patience: int):
        if patience < 1:
            raise ValueError(f"early_stopping_patience must be >= 1 to stop early, got {patience}")
        self.patience = patience

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.evals_without_improvement >= self.patience:
            control.stop(
                RunStatus.STOPPED_EARLY,
                f"val_loss has not improved for {state.evals_without_improvement} evaluations "
                f"(best {state.best_val_loss:.4f} at step {state.best_step})",
            )

"""The loop's cadence, in one place (Hugging Face's DefaultFlowCallback): when a run
logs, evaluates, writes text samples and checkpoints, when it stops on its time
limit, and what its last step does. The trainer only asks the control after each step
(`should_log`, `should_evaluate`, `should_sample`, `should_save`, `should_stop`) and
acts; the CallbackHandler lowers each flag when the event that answers it is sent.

Cadence (`step` counts optimizer steps from 1; an interval of 0 means never):
    should_log       every log_interval steps and at the last step
    should_evaluate  every eval_interval steps and at the last step (when there is validation data)
    should_sample    every sample_interval steps and at the last step
    should_save      every checkpoint_interval steps and at the last step
A run that stops before max_steps (early stopping, time limit, a callback's stop) ends
like one that completes: its last step is evaluated and sampled unless the run was
pruned, and saved, each unless already done at that step.

DDP: the flags must be the same on every rank at the same steps (what follows them is
collective). Cadence is a function of the step, the same everywhere; a flag that a
rank-0-only callback raises between cadence steps (a pruner, the time limit measured
on rank 0) is held back here until the next cadence step, where the trainer
broadcasts rank 0's control.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState

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


class CheckpointCallback(FlowCallback):
    """Asks for a checkpoint every `interval` optimizer steps, nothing else (the name
    code written before FlowCallback used; the trainer's FlowCallback already asks at
    config.checkpoint_interval)."""

    def __init__(self, interval: int):
        if interval < 1:
            raise ValueError(f"checkpoint_interval must be >= 1, got {interval}")
        super().__init__(checkpoint_interval=interval, ends_run=False)
        self.interval = interval


__all__ = ["FLAGS", "CheckpointCallback", "FlowCallback", "Intervals", "due"]

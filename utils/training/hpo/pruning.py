"""Pruning through the callback contract: a trial's run reports to Optuna at every
evaluation and stops as pruned when the pruner says so."""

from __future__ import annotations

import logging
from typing import Any

import optuna

from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState

logger = logging.getLogger(__name__)

__all__ = ["OptunaPruningCallback"]


class OptunaPruningCallback(TrainerCallback):
    """Report `metric` at every evaluation; stop the run as pruned when the pruner says so.

    The loop keeps full control of its ending: this only calls `control.stop("pruned")`,
    so checkpoints, sinks and the run log close in `on_train_end` as for any run. The
    objective raises `optuna.TrialPruned` afterwards (see `run_study`).
    """

    def __init__(self, trial: optuna.Trial, metric: str = "val_loss"):
        self.trial = trial
        self.metric = metric
        self.pruned_at_step: int | None = None
        self._warned = False

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        metrics = kwargs.get("metrics") or {}
        value = metrics.get(self.metric)
        if value is None:
            if not self._warned:
                logger.warning("pruning: evaluation metrics have no %r (have %s)", self.metric, sorted(metrics))
                self._warned = True
            return
        self.trial.report(float(value), step=int(state.step))
        if self.trial.should_prune():
            self.pruned_at_step = int(state.step)
            control.stop(RunStatus.PRUNED, f"pruned by Optuna at step {state.step} ({self.metric}={value:.4f})")

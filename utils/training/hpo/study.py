"""Optuna search over TrainingConfig: the study, its objective (one real training run
per trial), and studies that several workers share and that resume.

    space = SearchSpace.from_json("examples/search_space.json")
    study = run_study(TrainingConfig.preset("smoke"), space, n_trials=20,
                      storage="workspace/results/hpo/s1.journal", study_name="s1",
                      workspace_dir="workspace", db=ExperimentDB("workspace/experiments.db"))
    write_study_results(study, "workspace/results/hpo/s1")

Studies are created with `load_if_exists=True`: running the same command again resumes
(with new sampler points, not a replay) up to `n_trials` (workers.py: exactly N trials).

A trial is one real training run: `base_config.replace(**overrides,
run_name=f"{study_name}-t{number}")` under WORKSPACE/runs/. `OptunaPruningCallback`
reports `val_loss` at every evaluation and, when the pruner says so, stops the run
through `control.stop("pruned", ...)`; the trainer's teardown (`on_train_end`) runs as
for any other ending, and only then does the objective raise `optuna.TrialPruned`.
Each trial stores its run's ExperimentDB id as the user attribute `db_run_id`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from utils.training.config import TrainingConfig
from utils.training.config_rules import ConfigError
from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerCallback
from utils.training.hpo.figures import write_study_results
from utils.training.hpo.pruning import OptunaPruningCallback
from utils.training.hpo.space import PARAM_TYPES, Param, SearchSpace, SearchSpaceError
from utils.training.hpo.storage import StorageSpec, claim_lock, open_storage
from utils.training.hpo.workers import fail_dead_trials, optimize_exactly
from utils.training.workspace import Workspace

if TYPE_CHECKING:
    from utils.training.engine.trainer import TrainResult
    from utils.training.tracking.experiment_db import ExperimentDB

# `utils.training.hpo` answers with these names (the space, pruning and results ones included).
__all__ = ["PARAM_TYPES", "SearchSpace", "SearchSpaceError", "Param", "OptunaPruningCallback", "TrialFailed",
           "make_pruner", "create_study", "run_study", "open_storage", "write_study_results", "fail_dead_trials"]


class TrialFailed(RuntimeError):
    """The trial's training run ended as failed or interrupted (recorded as a FAIL trial)."""


def make_pruner(pruner: str | optuna.pruners.BasePruner | None, *, n_startup_trials: int = 2) -> optuna.pruners.BasePruner:
    """'median' (default), 'hyperband', 'none', or an Optuna pruner as is."""
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner in (None, "median"):
        # No pruning until n_startup_trials trials finished; after that any report may prune.
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=0, interval_steps=1)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner {pruner!r}: allowed are 'median', 'hyperband', 'none' or an optuna pruner")


def create_study(
    study_name: str,
    storage: StorageSpec = None,
    *,
    space: SearchSpace | None = None,
    sampler_seed: int | None = 0,
    worker_index: int = 0,
    pruner: str | optuna.pruners.BasePruner | None = "median",
    direction: str = "minimize",
) -> optuna.Study:
    """Create the study or load it (`load_if_exists=True`), once, under the storage's
    claim lock (workers on several machines start together). TPE with `constant_liar` so
    parallel workers do not all sample the point the running trials already cover.

    Sampler seed: `sampler_seed + worker_index` on a new study (equal seeds would make
    every worker draw the same start-up points); on a study that already holds trials,
    a seed drawn from (sampler_seed, worker_index, number of trials), so a resumed study
    continues with new points instead of replaying the first ones. A study keeps its
    search space: loading it with a different one is refused rather than mixing
    distributions."""
    storage = open_storage(storage)
    with claim_lock(storage, study_name):
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=_sampler(None),
            pruner=make_pruner(pruner),
            direction=direction,
            load_if_exists=True,
        )
    if sampler_seed is not None:
        seed = sampler_seed + worker_index
        existing = len(study.get_trials(deepcopy=False))
        if existing:
            seed = int(np.random.SeedSequence([sampler_seed, worker_index, existing]).generate_state(1)[0])
        study.sampler = _sampler(seed)
    if space is not None:
        stored = study.user_attrs.get("search_space")
        if stored is None:
            study.set_user_attr("search_space", space.to_dict())
        elif stored != json.loads(json.dumps(space.to_dict())):
            raise SearchSpaceError([
                f"study {study_name!r} was created with another search space ({stored}); "
                "give a new study name, or the same space to resume it"
            ])
    return study


def _sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=5)


# train_fn(config, callbacks, workspace_dir) -> the run's TrainResult (or anything with its
# status, state and final_metrics: tests pass a cheap loop)
TrainFn = Callable[[TrainingConfig, list[TrainerCallback], Path], "TrainResult"]


def run_study(
    base_config: TrainingConfig,
    space: SearchSpace,
    *,
    n_trials: int,
    storage: StorageSpec = None,
    study_name: str = "hpo",
    workspace_dir: str | os.PathLike[str] = "workspace",
    db: ExperimentDB | str | os.PathLike[str] | None = None,
    sampler_seed: int | None = 0,
    pruner: str | optuna.pruners.BasePruner | None = "median",
    metric: str = "val_loss",
    worker_index: int = 0,
    callbacks: Iterable[TrainerCallback] = (),
    train_fn: TrainFn | None = None,
) -> optuna.Study:
    """Run this worker's share of a study that grows to `n_trials` trials; return the study.

    storage: a spec for `open_storage` (default: WORKSPACE/results/hpo/STUDY.journal).
    db: an ExperimentDB (or its path): each trial is linked to its run there.
    callbacks: extra TrainerCallbacks added to every trial's run (after the pruning one).
    train_fn(config, callbacks, workspace_dir) -> TrainResult: the training run; default
    the real engine (`TrainingSession`). Tests pass a cheap one.
    """
    from utils.training.text import caveat

    workspace_dir = Path(workspace_dir)
    storage = open_storage(Workspace(workspace_dir).hpo_journal_path(study_name) if storage is None else storage)
    study = create_study(study_name, storage, space=space, sampler_seed=sampler_seed,
                         worker_index=worker_index, pruner=pruner)
    study.set_user_attr("metric", metric)
    # The figures say when the trials are smoke/cpu runs or synthetic tokens.
    study.set_user_attr("caveat", caveat(str(getattr(base_config, "preset", "") or ""),
                                         getattr(base_config, "data_source", "") == "synthetic"))
    # The real engine always tracks runs in the workspace's ExperimentDB; a cheap
    # train_fn (tests, custom loops) only gets one when given.
    db, owns_db = _open_db(db, workspace_dir, default=train_fn is None)
    objective = _Objective(base_config, space, study_name, workspace_dir, metric,
                           train_fn or _engine_train_fn(db), list(callbacks), db)
    try:
        optimize_exactly(study, objective, n_trials, storage=storage, catch=(ConfigError, TrialFailed),
                         on_dead_trial=objective.on_dead)
    finally:
        if owns_db:
            db.close()
    return study


@dataclass
class _Objective:
    """One trial: its config, its training run, its result, and its link in the ExperimentDB."""

    base_config: TrainingConfig
    space: SearchSpace
    study_name: str
    workspace_dir: Path
    metric: str
    train: TrainFn
    callbacks: list[TrainerCallback]
    db: ExperimentDB | None

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except (ConfigError, TrialFailed) as e:
            # Optuna logs why a trial failed but does not store it: the CLI names it when
            # every trial failed.
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:1000])
            raise

    def _run(self, trial: optuna.Trial) -> float:
        overrides = self.space.suggest(trial)
        run_name = f"{self.study_name}-t{trial.number}"
        trial.set_user_attr("run_name", run_name)
        config = self.base_config.replace(**overrides, run_name=run_name)  # ConfigError -> FAIL trial
        pruning = OptunaPruningCallback(trial, metric=self.metric)
        try:
            result = self.train(config, [pruning, *self.callbacks], self.workspace_dir)
        except RuntimeError as e:
            # A configuration too big for the device is a result of the search (FAIL),
            # not a reason to stop the worker; other errors are bugs and propagate.
            if type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower():
                raise TrialFailed(f"run {run_name}: out of memory ({e})") from e
            raise
        status = getattr(result, "status", RunStatus.COMPLETED)
        tracking = dict(getattr(getattr(result, "state", None), "tracking", {}) or {})
        trial.set_user_attr("run_status", status)
        if "db_run_id" in tracking:
            trial.set_user_attr("db_run_id", tracking["db_run_id"])
        value = _objective_value(result, self.metric)
        self._log(trial.number, tracking.get("db_run_id"), run_name, overrides, value, status)
        if status == RunStatus.PRUNED:
            raise optuna.TrialPruned(f"pruned at step {pruning.pruned_at_step}")
        if status in (RunStatus.FAILED, RunStatus.INTERRUPTED):
            raise TrialFailed(f"run {run_name} ended {status}")
        if value is None or not math.isfinite(value):
            raise TrialFailed(f"run {run_name} produced no finite {self.metric} ({value})")
        return value

    def on_dead(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A trial whose worker died: its run and trial rows say it failed."""
        self._log(trial.number, trial.user_attrs.get("db_run_id"), trial.user_attrs.get("run_name"), trial.params,
                  None, RunStatus.FAILED)

    def _log(self, number: int, run_id: Any, run_name: Any, params: dict, value: float | None, status: str) -> None:
        """Link the trial to its ExperimentDB run (by id, else by run name)."""
        db = self.db
        if db is None:
            return
        run = run_id if run_id is not None else (run_name if run_name and db.find_run(run_name) is not None else None)
        db.log_trial(self.study_name, number, state=_TRIAL_STATE.get(status, status), value=value,
                     params=dict(params), run=run)
        if run is not None and status == RunStatus.FAILED and value is None:
            # A worker killed mid-run never closed its run row: say how it ended.
            if db.get_run(run).get("status") == RunStatus.RUNNING:
                db.update_run_status(run, RunStatus.FAILED)


def _objective_value(result: TrainResult, metric: str) -> float | None:
    final = getattr(result, "final_metrics", None) or {}
    if metric in final and final[metric] is not None:
        return float(final[metric])
    state = getattr(result, "state", None)
    if metric == "val_loss" and state is not None:
        for attr in ("last_val_loss", "best_val_loss"):
            v = getattr(state, attr, None)
            if v is not None and math.isfinite(v):
                return float(v)
    return None


def _open_db(db: ExperimentDB | str | os.PathLike[str] | None, workspace_dir: Path, *,
             default: bool) -> tuple[ExperimentDB | None, bool]:
    """(ExperimentDB or None, whether run_study opened it and must close it)."""
    if db is not None and not isinstance(db, (str, os.PathLike)):
        return db, False
    if db is None and not default:
        return None, False
    from utils.training.tracking.experiment_db import ExperimentDB

    if db is not None:
        return ExperimentDB(db), True
    ws = Workspace(workspace_dir)
    ws.create()
    return ExperimentDB.open_local(ws.db_path, ws.db_mirror_path), True


_TRIAL_STATE = {
    RunStatus.COMPLETED: TrialState.COMPLETE.name,
    RunStatus.STOPPED_EARLY: TrialState.COMPLETE.name,
    RunStatus.PRUNED: TrialState.PRUNED.name,
    RunStatus.FAILED: TrialState.FAIL.name,
    RunStatus.INTERRUPTED: TrialState.FAIL.name,
}


def _engine_train_fn(db: ExperimentDB | None) -> TrainFn:
    """One real training run per trial: TrainingSession (data, model, tracking into
    `db`) with the trial's callbacks added after the default ones."""

    def train(config: TrainingConfig, callbacks: list[TrainerCallback], workspace_dir: Path) -> TrainResult:
        from utils.training.session import ReportingOptions, TrainingSession

        session = TrainingSession(config, workspace_dir, tracking=ReportingOptions(progress_bar=False),
                                  callbacks=callbacks, db=db)
        try:
            return session.train()
        finally:
            session.close()

    return train

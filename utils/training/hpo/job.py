"""One worker's share of a study, as checked data: what `python -m utils.training hpo`
runs, and what it hands as JSON (`to_json`, `from_json`) to each process it starts with
`--workers N`: the config's and the space's `to_dict()`, restored without a second parse.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass

import optuna

from utils.training.config import TrainingConfig
from utils.training.engine.callbacks import TrainerCallback
from utils.training.hpo.space import SearchSpace
from utils.training.hpo.storage import open_storage
from utils.training.hpo.study import run_study

__all__ = ["StudyJob"]


@dataclass(frozen=True)
class StudyJob:
    """The arguments of `run_study` for one worker, plus the storage's heartbeat timing."""

    config: TrainingConfig  # the base config of every trial
    space: SearchSpace
    study_name: str
    n_trials: int  # the size the study grows to, all workers together
    storage: str  # a storage spec (storage.py): journal path or database URL
    workspace: str
    seed: int = 0  # sampler seed; worker i uses seed + i on a new study
    pruner: str = "median"
    metric: str = "val_loss"
    heartbeat_interval: int = 30  # RDB storages: seconds between a running trial's beats
    grace_period: int = 120  # RDB storages: seconds of silence before a trial is failed
    worker_index: int = 0

    def for_worker(self, index: int) -> StudyJob:
        return dataclasses.replace(self, worker_index=index)

    def to_json(self) -> str:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.update(config=self.config.to_dict(), space=self.space.to_dict())
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> StudyJob:
        """The job `to_json` wrote (in the process that checked it)."""
        d = json.loads(text)
        return cls(**{**d, "config": TrainingConfig.from_dict(d["config"]), "space": SearchSpace.restore(d["space"])})

    def run(self, callbacks: Iterable[TrainerCallback] = ()) -> optuna.Study:
        """This worker's trials (see run_study), with `callbacks` added to every run;
        returns the study."""
        storage = open_storage(self.storage, heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period)
        return run_study(self.config, self.space, n_trials=self.n_trials, storage=storage,
                         study_name=self.study_name, workspace_dir=self.workspace, sampler_seed=self.seed,
                         pruner=self.pruner, metric=self.metric, worker_index=self.worker_index, callbacks=callbacks)

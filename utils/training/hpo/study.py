"""Optuna search over TrainingConfig: a search space written as data, pruning through
the callback contract, and studies that several workers share and that resume.

    space = SearchSpace.from_json("examples/search_space.json")
    study = run_study(TrainingConfig.preset("smoke"), space, n_trials=20,
                      storage="workspace/results/hpo/s1.journal", study_name="s1",
                      workspace_dir="workspace", db=ExperimentDB("workspace/experiments.db"))
    write_study_results(study, "workspace/results/hpo/s1")

Storage contract (details and the command line for each case in hpo_storage.py):

* a journal file `PATH.journal` (or `.log`): one process, or several worker processes on
  one machine sharing the file;
* `sqlite:///PATH.db`: one process;
* `postgresql://USER:PASS@HOST/DB`: worker processes on several machines.

Studies are created with `load_if_exists=True`, so running the same command again
resumes (with new sampler points, not a replay); `n_trials` is the size the study grows
to, and all workers together create exactly that many counted trials (complete, pruned,
and failed by their own run; a trial cut short by Ctrl-C or a killed worker is marked
FAIL, does not count, and is redone). The other workers carry on.

A trial is one real training run: `base_config.replace(**overrides,
run_name=f"{study_name}-t{number}")` under WORKSPACE/runs/. `OptunaPruningCallback`
reports `val_loss` at every evaluation and, when the pruner says so, stops the run
through `control.stop("pruned", ...)`; the trainer's teardown (`on_train_end`) runs as
for any other ending, and only then does the objective raise `optuna.TrialPruned`.
Each trial stores its run's ExperimentDB id as the user attribute `db_run_id`.

Search space (JSON file, `from_dict`, or the notebook form `from_form`):

    {"learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": true},
     "n_layer":       {"type": "int", "low": 1, "high": 4},
     "schedule":      {"type": "categorical", "choices": ["cosine", "linear"]}}

Names must be TrainingConfig fields. Numeric entries take `low`, `high` and optionally
`log` (bool) or `step`; categorical entries take a non-empty `choices` list.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from utils.training.engine.callbacks import RunStatus, TrainerCallback, TrainerControl, TrainerState
from utils.training.hpo.figures import write_study_results
from utils.training.hpo.storage import claim_lock, fail_dead_trials, open_storage, optimize_exactly

logger = logging.getLogger(__name__)

__all__ = [
    "SearchSpace",
    "SearchSpaceError",
    "Param",
    "OptunaPruningCallback",
    "TrialFailed",
    "make_pruner",
    "create_study",
    "run_study",
    "open_storage",
    "write_study_results",
    "fail_dead_trials",
]

PARAM_TYPES = ("float", "int", "categorical")
_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
# Fields a search must not touch: they name or place the run, not what it learns.
_NOT_SEARCHABLE = {"run_name", "data_source", "data_path", "hf_dataset", "hf_config", "text_column", "pretrained"}


class SearchSpaceError(ValueError):
    """A search space entry is wrong; the message names every bad parameter and what is allowed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid search space:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Param:
    """One searched TrainingConfig field."""

    name: str
    type: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log,
                                       step=None if self.step is None else float(self.step))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=1 if self.step is None else int(self.step))
        return trial.suggest_categorical(self.name, list(self.choices))

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        d: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        if self.step is not None:
            d["step"] = self.step
        return d


def _config_fields() -> tuple[tuple[str, ...], dict[str, type]]:
    from utils.training.config import FIELD_NAMES, FIELD_TYPES

    return FIELD_NAMES, FIELD_TYPES


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_entry(name: str, entry: Any, field_type: type) -> tuple[Param | None, list[str]]:
    """Validate one entry; return the Param or the problems (each naming `name`)."""
    if not isinstance(entry, Mapping):
        return None, [f"{name}: must be an object like {{\"type\": \"float\", \"low\": ..., \"high\": ...}}, "
                      f"got {type(entry).__name__}"]
    kind = entry.get("type")
    if kind not in PARAM_TYPES:
        return None, [f"{name}: unknown type {kind!r}; allowed types are {', '.join(PARAM_TYPES)}"]
    problems = []
    extra = sorted(set(entry) - _KEYS[kind])
    if extra:
        problems.append(f"{name}: unknown key(s) {extra} for type {kind!r}; allowed keys are {sorted(_KEYS[kind])}")
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            return None, problems + [f"{name}: 'choices' must be a non-empty list"]
        bad = [c for c in choices if not (c is None or isinstance(c, (bool, int, float, str)))]
        if bad:
            problems.append(f"{name}: choices must be strings, numbers, booleans or null, got {bad!r}")
        if len(set(map(repr, choices))) != len(choices):
            problems.append(f"{name}: choices {list(choices)!r} repeat a value")
        wrong = [c for c in choices if not _fits(c, field_type)]
        if wrong:
            problems.append(f"{name}: choices {wrong!r} are not {field_type.__name__} (the TrainingConfig field's type)")
        return (None if problems else Param(name, "categorical", choices=tuple(choices))), problems
    low, high, log, step = entry.get("low"), entry.get("high"), entry.get("log", False), entry.get("step")
    for key, value in (("low", low), ("high", high)):
        if not _is_number(value):
            problems.append(f"{name}: '{key}' must be a finite number, got {value!r}")
    if not isinstance(log, bool):
        problems.append(f"{name}: 'log' must be true or false, got {log!r}")
    if step is not None and not (_is_number(step) and step > 0):
        problems.append(f"{name}: 'step' must be a positive number, got {step!r}")
    if problems:
        return None, problems
    if low > high:
        problems.append(f"{name}: low ({low}) > high ({high}); low must be <= high")
    if log and low <= 0:
        problems.append(f"{name}: log scale needs low > 0, got low={low}")
    if log and step is not None:
        problems.append(f"{name}: 'log' and 'step' cannot be used together")
    if kind == "int":
        for key, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and value != int(value):
                problems.append(f"{name}: type 'int' needs an integer '{key}', got {value!r}")
        if field_type is not int:
            problems.append(f"{name}: type 'int' does not fit the TrainingConfig field's type "
                            f"({field_type.__name__}); use {_type_for(field_type)!r}")
    elif field_type is not float:
        problems.append(f"{name}: type 'float' does not fit the TrainingConfig field's type "
                        f"({field_type.__name__}); use {_type_for(field_type)!r}")
    if problems:
        return None, problems
    cast = int if kind == "int" else float
    return Param(name, kind, cast(low), cast(high), log, None if step is None else cast(step)), []


def _fits(value: Any, field_type: type) -> bool:
    from utils.training.config import type_matches

    return type_matches(value, field_type) and (field_type is not float or math.isfinite(value))


def _type_for(field_type: type) -> str:
    return {int: "int", float: "float"}.get(field_type, "categorical")


def _probe(params: Iterable[Param]) -> list[str]:
    """Ask TrainingConfig itself whether each bound/choice is a legal value of its field
    (ranges and allowed strings live there, not here). Only rules about the field alone
    count: a rule that names another field (n_head divides d_model...) depends on the
    rest of the config, so a combination it forbids fails its trial instead."""
    from utils.training.config import FIELD_NAMES, ConfigError, TrainingConfig

    problems = []
    for p in params:
        others = [f for f in FIELD_NAMES if f != p.name]
        values = list(p.choices) if p.type == "categorical" else [p.low, p.high]
        for v in values:
            try:
                TrainingConfig(**{p.name: v})
            except ConfigError as e:
                own = [q for q in e.problems
                       if q.field == p.name and not any(re.search(rf"\b{f}\b", q.message) for f in others)]
                problems += [f"{p.name}: value {v!r} is not allowed: {q.message}" for q in own]
    return problems


class SearchSpace:
    """The searched TrainingConfig fields and their distributions; `suggest(trial)` -> overrides."""

    def __init__(self, params: Iterable[Param]):
        self.params: dict[str, Param] = {p.name: p for p in params}
        if not self.params:
            raise SearchSpaceError(["the search space is empty: give at least one TrainingConfig field"])

    # --- construction ----------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
        if not isinstance(d, Mapping):
            raise SearchSpaceError([f"a search space is an object of field name -> entry, got {type(d).__name__}"])
        names, types = _config_fields()
        problems: list[str] = []
        params = []
        for name, entry in d.items():
            if name not in names:
                close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(f"{name}: unknown parameter, not a TrainingConfig field{hint}")
                continue
            if name in _NOT_SEARCHABLE:
                problems.append(f"{name}: names or places the run and cannot be searched; "
                                f"set it on the base config instead")
                continue
            param, errs = _check_entry(name, entry, types[name])
            problems += errs
            if param is not None:
                params.append(param)
        if not problems:
            problems = _probe(params)
        if problems:
            raise SearchSpaceError(problems)
        return cls(params)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> SearchSpace:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SearchSpaceError([f"search space file {str(path)!r} does not exist"]) from None
        except json.JSONDecodeError as e:
            raise SearchSpaceError([f"search space file {str(path)!r} is not valid JSON: {e}"]) from e
        return cls.from_dict(d)

    @classmethod
    def from_form(cls, **values: Any) -> SearchSpace:
        """From a notebook's #@param values; one keyword per searched field:

            learning_rate="1e-4:3e-3:log"   range (float fields), log scale
            n_layer="1:4"                   range (int fields)
            schedule="cosine,linear"        choices (any field)
            dropout=""                      empty or None: not searched

        Tuples `(low, high)` and lists of choices are accepted too.
        """
        names, types = _config_fields()
        d: dict[str, Any] = {}
        problems = []
        for name, value in values.items():
            if value is None or value == "" or value == ():
                continue
            if name not in names:
                d[name] = value  # from_dict names it, with a suggestion
                continue
            try:
                d[name] = _parse_form_value(name, value, types[name])
            except ValueError as e:
                problems.append(f"{name}: {e}")
        if problems:
            raise SearchSpaceError(problems)
        return cls.from_dict(d)

    # --- use -------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter for `trial`: the TrainingConfig overrides of this trial."""
        return {name: p.suggest(trial) for name, p in self.params.items()}

    def to_dict(self) -> dict[str, Any]:
        return {name: p.to_dict() for name, p in self.params.items()}

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def __iter__(self):
        return iter(self.params.values())

    def __len__(self) -> int:
        return len(self.params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_dict()!r})"


def _parse_form_value(name: str, value: Any, field_type: type) -> dict[str, Any]:
    from utils.training.config import parse_value

    if isinstance(value, tuple) and len(value) == 2:
        return {"type": _type_for(field_type), "low": value[0], "high": value[1]}
    if isinstance(value, list):
        return {"type": "categorical", "choices": value}
    if not isinstance(value, str):
        raise ValueError(f"give a range 'low:high[:log]', a comma list of choices, or a (low, high) tuple; "
                         f"got {value!r}")
    if ":" in value:
        parts = [p.strip() for p in value.split(":")]
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() != "log"):
            raise ValueError(f"a range is 'low:high' or 'low:high:log', got {value!r}")
        if field_type not in (int, float):
            raise ValueError(f"a range needs a numeric field ({field_type.__name__} is not); "
                             f"list the choices with commas instead")
        entry = {"type": _type_for(field_type), "low": parse_value(name, parts[0]),
                 "high": parse_value(name, parts[1])}
        if len(parts) == 3:
            entry["log"] = True
        return entry
    return {"type": "categorical", "choices": [parse_value(name, c) for c in value.split(",") if c.strip()]}


# --------------------------------------------------------------------------- pruning


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


class TrialFailed(RuntimeError):
    """The trial's training run ended as failed or interrupted (recorded as a FAIL trial)."""


# --------------------------------------------------------------------------- studies


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
    storage: Any = None,
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


TrainFn = Callable[[Any, list[TrainerCallback], Path], Any]


def run_study(
    base_config: Any,
    space: SearchSpace,
    *,
    n_trials: int,
    storage: Any = None,
    study_name: str = "hpo",
    workspace_dir: str | os.PathLike[str] = "workspace",
    db: Any = None,
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
    the real engine (`TrainingSession` when present). Tests pass a cheap one.
    """
    from utils.training.config import ConfigError

    workspace_dir = Path(workspace_dir)
    if storage is None:
        storage = workspace_dir / "results" / "hpo" / f"{study_name}.journal"
    study = create_study(study_name, storage, space=space, sampler_seed=sampler_seed,
                         worker_index=worker_index, pruner=pruner)
    study.set_user_attr("metric", metric)
    from utils.training.viz.style import (
        caveat,  # the figures say when the trials are smoke/cpu runs or synthetic tokens
    )

    study.set_user_attr("caveat", caveat(str(getattr(base_config, "preset", "") or ""),
                                         getattr(base_config, "data_source", "") == "synthetic"))
    # The real engine always tracks runs in the workspace's ExperimentDB; a cheap
    # train_fn (tests, custom loops) only gets one when given.
    db, owns_db = _open_db(db, workspace_dir, default=train_fn is None)
    train = train_fn or _engine_train_fn(db)
    extra = list(callbacks)

    def objective(trial: optuna.Trial) -> float:
        try:
            return trial_objective(trial)
        except (ConfigError, TrialFailed) as e:
            # Optuna logs why a trial failed but does not store it: the CLI names it when
            # every trial failed.
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:1000])
            raise

    def trial_objective(trial: optuna.Trial) -> float:
        overrides = space.suggest(trial)
        run_name = f"{study_name}-t{trial.number}"
        trial.set_user_attr("run_name", run_name)
        config = base_config.replace(**overrides, run_name=run_name)  # ConfigError -> FAIL trial
        pruning = OptunaPruningCallback(trial, metric=metric)
        fault = _injected_fault(trial)
        try:
            result = train(config, [pruning, *extra, *fault], workspace_dir)
        except RuntimeError as e:
            # A configuration too big for the device is a result of the search (FAIL),
            # not a reason to stop the worker; other errors are bugs and propagate.
            if type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower():
                raise TrialFailed(f"run {run_name}: out of memory ({e})") from e
            raise
        status = getattr(result, "status", RunStatus.COMPLETED)
        state = getattr(result, "state", None)
        tracking = dict(getattr(state, "tracking", {}) or {})
        trial.set_user_attr("run_status", status)
        if "db_run_id" in tracking:
            trial.set_user_attr("db_run_id", tracking["db_run_id"])
        value = _objective_value(result, metric)
        _log_trial(db, study_name, trial.number, tracking.get("db_run_id"), run_name, overrides, value, status)
        if status == RunStatus.PRUNED:
            raise optuna.TrialPruned(f"pruned at step {pruning.pruned_at_step}")
        if status in (RunStatus.FAILED, RunStatus.INTERRUPTED):
            raise TrialFailed(f"run {run_name} ended {status}")
        if value is None or not math.isfinite(value):
            raise TrialFailed(f"run {run_name} produced no finite {metric} ({value})")
        return value

    def on_dead(study: optuna.Study, trial: FrozenTrial) -> None:
        _log_trial(db, study_name, trial.number, trial.user_attrs.get("db_run_id"), trial.user_attrs.get("run_name"),
                   trial.params, None, RunStatus.FAILED)

    try:
        optimize_exactly(study, objective, n_trials, storage_spec=storage,
                         catch=(ConfigError, TrialFailed), on_dead_trial=on_dead)
    finally:
        if owns_db:
            db.close()
    return study


# Fault injection for the tests of dead workers (tests/test_hpo_cli.py): the worker that
# runs trial number N SIGKILLs itself after the first training step of that trial, a
# known point rather than a race with a timer. Unset in normal use.
SIGKILL_TRIAL_ENV = "SLM_HPO_SIGKILL_IN_TRIAL"


class _SigkillAfterFirstStep(TrainerCallback):
    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def on_step_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        import signal

        storage = self.trial.study._storage
        if hasattr(storage, "record_heartbeat"):
            # The heartbeat thread's first beat, made certain: the trial is known alive
            # once, so its silence afterwards is what marks it failed.
            storage.record_heartbeat(self.trial._trial_id)
        os.kill(os.getpid(), signal.SIGKILL)


def _injected_fault(trial: optuna.Trial) -> list[TrainerCallback]:
    raw = os.environ.get(SIGKILL_TRIAL_ENV, "")
    return [_SigkillAfterFirstStep(trial)] if raw.strip() == str(trial.number) else []


def _objective_value(result: Any, metric: str) -> float | None:
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


def _open_db(db: Any, workspace_dir: Path, *, default: bool) -> tuple[Any, bool]:
    """(ExperimentDB or None, whether run_study opened it and must close it)."""
    if db is not None and not isinstance(db, (str, os.PathLike)):
        return db, False
    if db is None and not default:
        return None, False
    from utils.training.tracking.experiment_db import ExperimentDB

    if db is not None:
        return ExperimentDB(db), True
    from utils.training.workspace import Workspace

    ws = Workspace(workspace_dir)
    ws.create()
    return ExperimentDB.open_local(ws.db_path, ws.db_mirror_path), True


def _log_trial(db: Any, study_name: str, number: int, run_id: Any, run_name: Any, params: dict,
               value: float | None, status: str) -> None:
    """Link the trial to its ExperimentDB run (by id, else by run name)."""
    if db is None:
        return
    run = run_id if run_id is not None else (run_name if run_name and db.find_run(run_name) is not None else None)
    db.log_trial(study_name, number, state=_TRIAL_STATE.get(status, status), value=value,
                 params=dict(params), run=run)
    if run is not None and status == RunStatus.FAILED and value is None:
        # A worker killed mid-run never closed its run row: say how it ended.
        if db.get_run(run).get("status") == RunStatus.RUNNING:
            db.update_run_status(run, RunStatus.FAILED)


_TRIAL_STATE = {
    RunStatus.COMPLETED: TrialState.COMPLETE.name,
    RunStatus.STOPPED_EARLY: TrialState.COMPLETE.name,
    RunStatus.PRUNED: TrialState.PRUNED.name,
    RunStatus.FAILED: TrialState.FAIL.name,
    RunStatus.INTERRUPTED: TrialState.FAIL.name,
}


def _engine_train_fn(db: Any) -> TrainFn:
    """One real training run per trial: TrainingSession (data, model, tracking into
    `db`) with the trial's callbacks added after the default ones."""

    def train(config: Any, callbacks: list[TrainerCallback], workspace_dir: Path) -> Any:
        from utils.training.session import TrackingOptions, TrainingSession

        session = TrainingSession(config, workspace_dir, tracking=TrackingOptions(progress_bar=False),
                                  callbacks=callbacks, db=db)
        try:
            return session.train()
        finally:
            session.close()

    return train

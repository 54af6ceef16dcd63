"""Exactly N trials across workers: the loop every worker runs on a shared study.

Every worker runs the same loop on the same storage (processes on one machine, or on
several machines pointing at one PostgreSQL server; storage.py names the storages and
their claim locks). Guarantees:

* `--n-trials N` means "until the study holds N counted trials", not "N more": running
  the line again resumes the study.
* Counted trials: complete, pruned, failed *by their own run* (a bad config, OOM, a
  non-finite loss: attribute `counted`), and running ones of live workers. A trial cut
  short (Ctrl-C, a killed worker) does not count: running the line again redoes it.
* Exactly N: Optuna's `MaxTrialsCallback` stops a worker only *after* its trial ends,
  so k workers racing for the last slot overshoot by up to k-1 trials. Here each worker
  counts the trials (enqueued ones are run first, not counted) and creates its next one
  while holding the storage's claim lock, which a dead worker never holds. A worker
  returns when N trials are counted and none is running, so that a survivor redoes the
  trial of a worker that dies.
* A dead worker's trial is marked FAIL: every trial records its owner (`worker_host`,
  `worker_pid`, process start time); before claiming a slot, a worker fails the RUNNING
  trials whose owner process on this host is gone and, on RDB storages, those whose
  heartbeat (Optuna's: `heartbeat_interval`, `grace_period`) stopped, on any machine.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from utils.training.hpo.storage import claim_lock, quiet_experimental

logger = logging.getLogger(__name__)

__all__ = ["ATTR_COUNTED", "ATTR_HOST", "ATTR_PID", "ATTR_PID_START", "UNOWNED_GRACE_S", "counts",
           "fail_dead_trials", "optimize_exactly", "owner_attrs"]

# Owner attributes written on every trial (user attrs, so they show in trials.csv).
ATTR_HOST = "worker_host"
ATTR_PID = "worker_pid"
ATTR_PID_START = "worker_pid_start"
# Set when the objective itself ended the trial (value, pruned, or a caught failure).
ATTR_COUNTED = "counted"

# A RUNNING trial with no owner attributes (its worker died between creating it and
# tagging it, inside the claim lock) is failed once it is this old.
UNOWNED_GRACE_S = 120.0


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first);
    [] where unknown (no /proc, or no such process)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()
    except OSError:
        return []


def _process_start_token(pid: int) -> str:
    """Start time of `pid` (field 22; guards against PID reuse); '' where unknown."""
    stat = _proc_stat(pid)
    return stat[19] if len(stat) > 19 else ""


def _process_alive(pid: int, start_token: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat[:1] in (["Z"], ["X"]):  # killed, not yet reaped by its parent
        return False
    return not (start_token and _process_start_token(pid) not in ("", start_token))


def owner_attrs() -> dict[str, Any]:
    """This process as a trial owner."""
    pid = os.getpid()
    return {ATTR_HOST: socket.gethostname(), ATTR_PID: pid, ATTR_PID_START: _process_start_token(pid)}


def fail_dead_trials(
    study: optuna.Study, storage: BaseStorage, on_failed: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker is gone; return their numbers.

    `storage` is the study's (as open_storage returned it). A trial's worker is gone when
    it ran on this host and that process no longer exists, when the trial has no owner
    attributes and started more than UNOWNED_GRACE_S ago, or (RDB storages with a
    heartbeat, workers on any machine) when its heartbeat stopped for grace_period seconds.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    host, now = socket.gethostname(), datetime.datetime.now()
    for t in running:
        attrs = t.user_attrs
        if ATTR_PID in attrs:
            alive = _process_alive(int(attrs[ATTR_PID]), str(attrs.get(ATTR_PID_START, "")))
            if attrs.get(ATTR_HOST) != host or alive:
                continue
        elif t.datetime_start is None or (now - t.datetime_start).total_seconds() < UNOWNED_GRACE_S:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            # The reason first: a finished trial takes no more attributes.
            storage.set_trial_user_attr(trial_id, "fail_reason", "worker process died")
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
    if isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None:
        with quiet_experimental():
            optuna.storages.fail_stale_trials(study)
    numbers = {t.number for t in running}
    failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
              if t.number in numbers and not t.user_attrs.get(ATTR_COUNTED)]
    for frozen in failed:
        logger.warning("trial %d of study %r: its worker is gone; marked failed", frozen.number, study.study_name)
        if on_failed is not None:
            on_failed(study, frozen)
    return [t.number for t in failed]


def _taken_over(study: optuna.Study, number: int) -> bool:
    """Whether another worker marked this worker's trial FAIL as stale."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(ATTR_COUNTED)


def counts(trial: FrozenTrial) -> bool:
    """Whether `trial` takes one of the study's N slots (see the module docstring)."""
    if trial.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get(ATTR_COUNTED))


def optimize_exactly(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    *,
    storage: BaseStorage,
    catch: tuple[type[Exception], ...] = (),
    on_dead_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    poll_s: float = 1.0,
) -> int:
    """Run trials of `study` in this worker until the study holds `n_trials` counted
    trials and none is running.

    Other workers may run the same loop on the same storage at the same time; together
    they create exactly `n_trials` counted trials. Returns how many this worker ran.
    `storage`: the storage open_storage returned, on which the study was created (it
    picks the claim lock). While the last slots are taken by other workers' running
    trials, this one checks every `poll_s` seconds whether they ended or died.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    lock = claim_lock(storage, study.study_name)
    ran = 0
    current: list[int] = []  # the number of the trial this worker is running
    while True:
        held = True
        current.clear()
        lock.__enter__()
        try:
            fail_dead_trials(study, storage, on_dead_trial)
            # Enqueued (WAITING) trials are run by popping them, not counted as done.
            trials = study.get_trials(deepcopy=False)
            if sum(counts(t) for t in trials) >= n_trials:
                if any(t.state == TrialState.RUNNING for t in trials):
                    lock.__exit__(None, None, None)
                    held = False
                    time.sleep(poll_s)
                    continue
                return ran

            def claimed(trial: optuna.Trial) -> float:
                # The trial exists and carries its owner: the slot is taken, so the
                # other workers may count again while this one trains.
                nonlocal held
                current.append(trial.number)
                for key, value in owner_attrs().items():
                    trial.set_user_attr(key, value)
                held = False
                lock.__exit__(None, None, None)
                try:
                    value = objective(trial)
                except (optuna.TrialPruned, *catch):
                    trial.set_user_attr(ATTR_COUNTED, True)  # a result of the search
                    raise
                trial.set_user_attr(ATTR_COUNTED, True)
                return value

            try:
                # gc_after_trial: a failed (OOM) trial frees its tensors
                study.optimize(claimed, n_trials=1, catch=catch, gc_after_trial=True)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                if not current or not _taken_over(study, current[0]):
                    raise
                # This worker was alive but silent past grace_period (an overloaded machine):
                # another one failed its trial, and the slot is redone. Not a reason to stop.
                logger.warning("trial %d of study %r was failed by another worker (no heartbeat for the "
                               "grace period); its result is dropped", current[0], study.study_name)
            ran += 1
        finally:
            if held:
                lock.__exit__(None, None, None)

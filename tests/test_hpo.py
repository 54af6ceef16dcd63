"""utils/training/hpo/study.py, pruning.py, storage.py, workers.py, figures.py (the
search space: tests/test_hpo_space.py; the command: tests/test_hpo_cli.py).

The study machinery (workers, claim lock, dead workers, pruning, results) runs here on
a cheap real training loop: gradient descent on a linear regression that speaks the
callback contract exactly as the trainer does (events, control.stop, on_train_end in
finally). The last tests run real trials of the engine on the built-in corpus.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from hpo_fixtures import SPACE, Teardown, toy_config, toy_train  # noqa: F401 - worker_main's too
from optuna.trial import TrialState

from utils.training.config import TrainingConfig
from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerControl, TrainerState
from utils.training.hpo.figures import write_study_results
from utils.training.hpo.pruning import OptunaPruningCallback
from utils.training.hpo.space import SearchSpace, SearchSpaceError
from utils.training.hpo.storage import StorageSpecError, open_storage
from utils.training.hpo.study import create_study, run_study
from utils.training.hpo.workers import fail_dead_trials

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

def _trial_number(config) -> int:
    return int(config.run_name.rsplit("-t", 1)[1])


def worker_main(argv: list[str]) -> None:
    """One worker process: `python -c ... worker_main([journal, workspace, n_trials, index, mode])`."""
    journal, workspace, n_trials, index, mode = argv
    workspace = Path(workspace)

    def hook(config, state):
        number = _trial_number(config)
        if mode == "kill":
            # Trial 1 hangs until the test kills its worker; trials 2+ wait for the kill so
            # that the surviving workers still have slots to claim afterwards.
            if number == 1:
                time.sleep(600)
            if number >= 2:
                while not (workspace / "killed").exists():
                    time.sleep(0.05)
        elif state.step == 1 and int(n_trials) - 4 <= number <= int(n_trials) - 2:
            # A barrier: these three trials end together, so that all three workers race
            # for the last slot at the same moment (without the claim lock they overshoot).
            (workspace / f"barrier-{number}").touch()
            deadline = time.monotonic() + 60
            while len(list(workspace.glob("barrier-*"))) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)

    if mode == "plain":
        # A slow storage: 0.2 s between counting the trials and creating the next one,
        # the window in which unlocked workers would all take the last slot.
        pop = optuna.Study._pop_waiting_trial_id

        def slow_pop(self):
            time.sleep(0.2)
            return pop(self)

        optuna.Study._pop_waiting_trial_id = slow_pop
    run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=int(n_trials), storage=journal,
              study_name="par", workspace_dir=workspace, worker_index=int(index), pruner="none",
              db=str(workspace / "experiments.db") if mode == "kill" else None,
              train_fn=lambda c, cbs, ws: toy_train(c, cbs, ws, hook=hook))


def _spawn_worker(journal: Path, workspace: Path, n_trials: int, index: int, mode: str) -> subprocess.Popen:
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(TESTS)!r}]; import test_hpo; "
            f"test_hpo.worker_main({[str(journal), str(workspace), str(n_trials), str(index), mode]!r})")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(procs: list[subprocess.Popen], timeout: float = 120) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode in (0, -signal.SIGKILL), out.decode(errors="replace")[-3000:]


# --------------------------------------------------------------------------- storage


def test_open_storage_accepts_the_documented_specs_and_names_them_when_wrong(tmp_path):
    assert isinstance(open_storage(tmp_path / "a" / "s.journal"), optuna.storages.JournalStorage)
    assert isinstance(open_storage(str(tmp_path / "s.log")), optuna.storages.JournalStorage)
    assert isinstance(open_storage(f"sqlite:///{tmp_path}/s.db"), optuna.storages.RDBStorage)
    with pytest.raises(StorageSpecError, match=r"\.journal.*sqlite:///.*postgresql://"):
        open_storage(tmp_path / "study.txt")


# --------------------------------------------------------------------------- the storage contract
# The same tests on every storage we support, as Optuna tests its own storages.


@pytest.fixture(params=["journal", "sqlite", "postgresql"])
def storage_spec(request, tmp_path) -> str:
    if request.param == "journal":
        return str(tmp_path / "s.journal")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    return request.getfixturevalue("postgres_url")  # a new database on a real server


def test_an_interrupted_study_resumes_to_exactly_n_trials(tmp_path, storage_spec):
    kw = dict(storage=storage_spec, study_name="resume", workspace_dir=tmp_path, pruner="none", train_fn=toy_train)
    run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=2, **kw)
    study = run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=5, **kw)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    # Nothing left to do: a third call runs no trial.
    assert len(run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=5, **kw).trials) == 5
    # A resumed study draws new points: the same seed does not replay the first trials.
    params = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(set(params)) == 5, params
    # A different search space under the same name is refused, not mixed in.
    with pytest.raises(SearchSpaceError, match="another search space"):
        run_study(toy_config(), SearchSpace.from_form(n_layer="1:2"), n_trials=6, **kw)


def test_a_trial_cut_short_does_not_count_and_is_redone(tmp_path, storage_spec):
    kw = dict(storage=storage_spec, study_name="cut", workspace_dir=tmp_path, pruner="none")

    def interrupted_at_trial_1(config, callbacks, ws):
        if config.run_name == "cut-t1":
            raise KeyboardInterrupt
        return toy_train(config, callbacks, ws)

    with pytest.raises(KeyboardInterrupt):
        run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=3, train_fn=interrupted_at_trial_1, **kw)
    study = run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=3, train_fn=toy_train, **kw)
    # Ctrl-C in trial 1: FAIL, not counted; "the same command again" runs trials 2 and 3.
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, *[TrialState.COMPLETE] * 2]
    assert "counted" not in study.trials[1].user_attrs
    # A run that fails by itself (here a config the model refuses) is a result and counts.
    bad = SearchSpace.from_dict({"n_head": {"type": "categorical", "choices": [4, 3]}})
    combo = create_study("combo", storage_spec)
    combo.enqueue_trial({"n_head": 3})
    combo = run_study(toy_config(n_kv_head=1), bad, n_trials=2, study_name="combo", storage=storage_spec,
                      workspace_dir=tmp_path, pruner="none", train_fn=toy_train)
    assert [t.state for t in combo.trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_without_postgres_binaries_the_tests_skip_locally_and_fail_in_ci(monkeypatch):
    import postgres_server

    monkeypatch.setattr(postgres_server, "PG_GLOB", "/nonexistent/postgresql/*/bin")
    reason = postgres_server.unavailable_reason()
    assert "make services" in reason
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make services"):
        postgres_server.skip_or_fail(reason)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI"):
        postgres_server.skip_or_fail(reason)


def test_a_live_worker_whose_trial_was_failed_as_stale_goes_on(tmp_path):
    """An overloaded worker may miss its heartbeats for the grace period: another worker
    then fails its trial. The slow worker must drop that result and carry on, not crash."""
    from utils.training.hpo.storage import open_storage as open_

    storage = open_(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=2)

    def failed_meanwhile(config, callbacks, ws):
        result = toy_train(config, callbacks, ws)
        if config.run_name == "stale-t0":  # what a stale check by another worker does
            study_id = storage.get_study_id_from_name("stale")
            storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(study_id, 0),
                                           state=TrialState.FAIL)
        return result

    study = run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=2, storage=storage, study_name="stale",
                      workspace_dir=tmp_path, pruner="none", train_fn=failed_meanwhile)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


def test_a_trial_whose_heartbeat_stopped_on_another_machine_is_failed_and_reported(tmp_path):
    """Its owner ran elsewhere (no process to look up here): only the heartbeat says it died."""
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=1)
    study = create_study("far", storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # a trial asked for by hand, as another machine's
        trial = study.ask()
    trial.set_user_attr("worker_host", "another-machine")
    trial.set_user_attr("worker_pid", 1)
    study_id = storage.get_study_id_from_name("far")
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
    reported = []
    assert fail_dead_trials(study, storage, lambda s, t: reported.append(t.number)) == []  # still beating
    time.sleep(2.5)  # its last beat is now older than the grace period
    assert fail_dead_trials(study, storage, lambda s, t: reported.append(t.number)) == [0]
    assert study.trials[0].state == TrialState.FAIL and reported == [0]


def test_workers_opening_an_empty_postgres_database_at_once_do_not_collide(postgres_url):
    """Six workers create Optuna's schema and the study on an empty database in the
    same instant (a barrier): without the advisory lock some die with UniqueViolation."""
    import threading

    barrier, errors, studies = threading.Barrier(6), [], []

    def worker(i):
        try:
            barrier.wait()
            studies.append(create_study("together", postgres_url, worker_index=i))
        except Exception as e:  # noqa: BLE001 - collected and reported by the assert below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len({s._study_id for s in studies}) == 1 and len(studies) == 6


def _heartbeat_trial(url: str) -> tuple[optuna.storages.BaseStorage, int]:
    """Our storage on `url` with a heartbeat, and the id of a running trial in it."""
    storage = open_storage(url, heartbeat_interval=1, grace_period=60)
    study = optuna.create_study(storage=storage, study_name="beating")
    with pytest.warns(UserWarning, match="Heartbeat"):  # a trial asked for by hand
        return storage, study.ask()._trial_id


def _beat(storage, trial_id: int, url: str, uncaught: list):
    """One pass of Optuna's own heartbeat loop on its own thread (its stop event set: no
    wait), then the trial's heartbeat time as the server holds it. An exception that
    would kill the thread (and print its traceback) lands in `uncaught`."""
    import threading

    import psycopg
    from optuna.storages._heartbeat import HeartbeatThread

    stop = threading.Event()
    stop.set()
    thread = threading.Thread(target=HeartbeatThread._record_heartbeat, args=(trial_id, storage, stop))
    hook, threading.excepthook = threading.excepthook, uncaught.append
    try:
        thread.start()
        thread.join(timeout=120)
    finally:
        threading.excepthook = hook
    assert not thread.is_alive()
    with psycopg.connect(url) as con:
        return con.execute("SELECT heartbeat FROM trial_heartbeats WHERE trial_id = %s", (trial_id,)).fetchone()[0]


def test_the_heartbeat_goes_on_after_a_postgres_restart(postgres_server, postgres_url, caplog):
    """A restart closes every pooled connection: the next beat must reconnect, not die with
    a StorageInternalError traceback (Optuna's heartbeat thread then beats no more)."""
    storage, trial_id = _heartbeat_trial(postgres_url)
    uncaught: list = []
    first = _beat(storage, trial_id, postgres_url, uncaught)
    postgres_server.restart()
    second = _beat(storage, trial_id, postgres_url, uncaught)
    assert not uncaught, [repr(u.exc_value) for u in uncaught]
    assert second > first
    assert "retrying" not in caplog.text  # reconnected at once (pool_pre_ping), not on a retry


def test_a_beat_while_the_postgres_server_is_down_is_retried_until_it_is_back(postgres_server, postgres_url,
                                                                              monkeypatch, caplog):
    """The server is down when the beat comes (mid-restart): the beat is tried again after a
    pause, during which the server comes back (the pause is the test's: no timer)."""
    from utils.training.hpo import storage as storage_module

    storage, trial_id = _heartbeat_trial(postgres_url)
    uncaught: list = []
    first = _beat(storage, trial_id, postgres_url, uncaught)
    pauses: list = []
    monkeypatch.setattr(storage_module, "_pause", lambda s: (pauses.append(s), postgres_server.resume()), raising=False)
    postgres_server.halt()
    try:
        second = _beat(storage, trial_id, postgres_url, uncaught)
    finally:
        postgres_server.resume()  # the session's server, for the tests after this one
    assert not uncaught, [repr(u.exc_value) for u in uncaught]
    assert second > first and pauses == [1]
    assert "heartbeat of trial" in caplog.text and "retrying" in caplog.text


def test_three_workers_create_exactly_n_trials_none_lost_or_duplicated(tmp_path):
    journal, n = tmp_path / "par.journal", 9
    _finish([_spawn_worker(journal, tmp_path, n, i, "plain") for i in range(3)])
    study = optuna.load_study(study_name="par", storage=open_storage(journal))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # Each trial trained exactly once, under its own run folder.
    executions = (tmp_path / "executions.log").read_text().split()
    assert sorted(executions) == sorted(f"par-t{i}" for i in range(n))
    assert len({t.user_attrs["run_name"] for t in trials}) == n
    # Different seeds per worker: the start-up trials are not copies of each other.
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == n


def test_a_killed_workers_trial_is_failed_and_the_study_continues(tmp_path):
    journal, n = tmp_path / "par.journal", 7
    procs = [_spawn_worker(journal, tmp_path, n, i, "kill") for i in range(3)]
    storage = open_storage(journal)
    deadline = time.monotonic() + 90
    victim = None
    while victim is None and time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name="par", storage=storage)
        except KeyError:  # not created yet
            time.sleep(0.1)
            continue
        running = [t for t in study.get_trials(states=(TrialState.RUNNING,)) if t.number == 1]
        if running and "worker_pid" in running[0].user_attrs and (tmp_path / "runs" / "par-t1").exists():
            victim = running[0].user_attrs["worker_pid"]
        time.sleep(0.1)
    assert victim is not None, "trial 1 never started"
    proc = next(p for p in procs if p.pid == victim)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (tmp_path / "killed").touch()
    _finish([p for p in procs if p is not proc])

    study = optuna.load_study(study_name="par", storage=open_storage(journal))
    by_number = {t.number: t for t in study.get_trials()}
    # The dead trial does not count: n counted trials, plus the dead one.
    assert sorted(by_number) == list(range(n + 1))
    assert by_number[1].state == TrialState.FAIL
    assert by_number[1].user_attrs["fail_reason"] == "worker process died"
    assert not (tmp_path / "runs" / "par-t1" / "teardown.json").exists()  # SIGKILL: no teardown possible
    assert all(t.state == TrialState.COMPLETE for k, t in by_number.items() if k != 1)
    # The ExperimentDB's trial table agrees, the dead one included.
    from utils.training.tracking.experiment_db import ExperimentDB

    with ExperimentDB(tmp_path / "experiments.db") as db:
        rows = db.get_trials("par")
    assert list(rows["trial_number"]) == list(range(n + 1))
    assert list(rows["state"]) == ["COMPLETE", "FAIL", *["COMPLETE"] * (n - 1)]


def test_an_invalid_combination_fails_its_trial_and_the_study_goes_on(tmp_path):
    # d_model 64 is not divisible by 3 heads: that trial's config is refused (FAIL), the rest run.
    space = SearchSpace.from_dict({"n_head": {"type": "categorical", "choices": [4, 3]}})
    study = create_study("combo", tmp_path / "c.journal")
    for heads in (4, 3, 4):
        study.enqueue_trial({"n_head": heads})
    study = run_study(toy_config(n_kv_head=1), space, n_trials=3, storage=tmp_path / "c.journal",
                      study_name="combo", workspace_dir=tmp_path, pruner="none", train_fn=toy_train)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


# --------------------------------------------------------------------------- pruning


def test_pruning_callback_stops_through_the_control_object():
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1.0))
    trial = study.ask()
    cb = OptunaPruningCallback(trial)
    state, control = TrainerState(step=5), TrainerControl()
    cb.on_evaluate(state, control, metrics={"val_loss": 0.5})
    assert not control.should_stop
    state.step = 10
    cb.on_evaluate(state, control, metrics={"val_loss": 2.0})
    assert control.should_stop and control.stop_status == RunStatus.PRUNED and cb.pruned_at_step == 10
    assert study.trials[0].intermediate_values == {5: 0.5, 10: 2.0}


def test_a_pruned_trial_ends_pruned_after_its_teardown_ran(tmp_path):
    # Trials whose loss is still above 1.0 at an evaluation are pruned: a tiny learning
    # rate keeps trial 1 there, a good one takes trial 0 below it.
    space = SearchSpace.from_form(learning_rate=[0.3, 1e-4])
    study = create_study("prune", tmp_path / "p.journal", sampler_seed=0, pruner="none")
    study.enqueue_trial({"learning_rate": 0.3})
    study.enqueue_trial({"learning_rate": 1e-4})
    study = run_study(toy_config(), space, n_trials=2, storage=tmp_path / "p.journal", study_name="prune",
                      workspace_dir=tmp_path, pruner=optuna.pruners.ThresholdPruner(upper=1.0), train_fn=toy_train)
    good, pruned = study.trials
    assert good.state == TrialState.COMPLETE and good.params == {"learning_rate": 0.3}
    assert pruned.state == TrialState.PRUNED and pruned.params == {"learning_rate": 1e-4}
    assert pruned.user_attrs["run_status"] == RunStatus.PRUNED
    teardown = json.loads((tmp_path / "runs" / "prune-t1" / "teardown.json").read_text())
    assert teardown == {"status": "pruned", "step": 3}  # stopped at its first evaluation
    assert list(pruned.intermediate_values) == [3]


# --------------------------------------------------------------------------- results


def test_results_files_are_written(tmp_path):
    study = run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=6, storage=tmp_path / "r.journal",
                      study_name="res", workspace_dir=tmp_path, pruner="median", train_fn=toy_train)
    summary = write_study_results(study, tmp_path / "out")
    out = tmp_path / "out"
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 6 and set(table["number"]) == set(range(6))
    best = json.loads((out / "best.json").read_text())
    assert best["best_value"] == pytest.approx(study.best_value)
    assert best["best_params"] == study.best_params and best["n_trials"] == 6
    for name in ("optimization_history", "intermediate_values", "param_importances", "parallel_coordinate"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", summary["skipped"]
    assert summary["skipped"] == {}


def test_results_say_why_a_figure_is_skipped(tmp_path, monkeypatch, capsys):
    import utils.training.hpo.figures as figures

    empty = write_study_results(optuna.create_study(), tmp_path / "empty")
    assert set(empty["skipped"]) == {"optimization_history", "intermediate_values", "param_importances",
                                     "parallel_coordinate"}
    assert (tmp_path / "empty" / "best.json").exists() and (tmp_path / "empty" / "trials.csv").exists()

    monkeypatch.setattr(figures, "_importance_evaluator", lambda: None)  # as if scikit-learn were absent
    study = run_study(toy_config(), SearchSpace.from_dict(SPACE), n_trials=3, storage=None, study_name="nosk",
                      workspace_dir=tmp_path, pruner="none", train_fn=toy_train)
    summary = write_study_results(study, tmp_path / "out")
    assert "scikit-learn is not installed" in summary["skipped"]["param_importances"]
    assert "param_importances.png skipped: scikit-learn is not installed" in capsys.readouterr().out
    assert not (tmp_path / "out" / "param_importances.png").exists()
    assert (tmp_path / "out" / "optimization_history.png").exists()


# --------------------------------------------------------------------------- real trials


class PruneTrial(optuna.pruners.BasePruner):
    """Prunes the given trial numbers at their first report (a pruner decision we control)."""

    def __init__(self, numbers):
        self.numbers = set(numbers)

    def prune(self, study, trial) -> bool:
        return trial.number in self.numbers


@pytest.fixture(scope="session")
def real_workspace(tmp_path_factory) -> Path:
    # One workspace for the engine tests of the hpo modules: the tokenizer and token
    # files of the built-in corpus are prepared once and cached under datasets/.
    return tmp_path_factory.getbasetemp() / "hpo-real-workspace"


def real_config(**kw) -> TrainingConfig:
    return TrainingConfig.preset("smoke", max_steps=4, eval_interval=2, log_interval=2, checkpoint_interval=1000,
                                 **kw)


def test_real_trials_on_the_builtin_corpus_link_runs_and_prune_with_teardown(real_workspace):
    from utils.training.tracking.experiment_db import ExperimentDB

    space = SearchSpace.from_form(learning_rate="1e-3:1e-2:log", schedule="cosine,linear")
    db = ExperimentDB(real_workspace / "experiments.db")
    study = run_study(real_config(), space, n_trials=2, study_name="real", workspace_dir=real_workspace, db=db,
                      pruner=PruneTrial([1]), callbacks=[Teardown(real_workspace)])
    done, pruned = study.trials
    assert done.state == TrialState.COMPLETE and math.isfinite(done.value)
    assert pruned.state == TrialState.PRUNED and list(pruned.intermediate_values) == [2]
    # Teardown ran for the pruned trial: our callback, the run log and the database all closed it as pruned.
    assert json.loads((real_workspace / "runs" / "real-t1" / "teardown.json").read_text()) == {"status": "pruned",
                                                                                               "step": 2}
    assert json.loads((real_workspace / "runs" / "real-t1" / "run.json").read_text())["status"] == "pruned"
    # Each trial is linked to its ExperimentDB run.
    trials = db.get_trials("real")
    assert list(trials["state"]) == ["COMPLETE", "PRUNED"]
    for t, row in zip(study.trials, trials.itertuples()):
        run = db.get_run(t.user_attrs["db_run_id"])
        assert run["run_name"] == f"real-t{t.number}" and row.run_id == t.user_attrs["db_run_id"]
        assert run["status"] == ("completed" if t.number == 0 else "pruned")
        assert run["config"]["learning_rate"] == pytest.approx(t.params["learning_rate"])
    db.close()
    summary = write_study_results(study, real_workspace / "results" / "hpo" / "real")
    assert summary["best_trial"] == 0 and (real_workspace / "results" / "hpo" / "real" / "trials.csv").exists()

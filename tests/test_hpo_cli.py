"""`python -m utils.training hpo` (utils/training/hpo/cli.py), driven through a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def hpo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "utils.training", "hpo", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def real_workspace(tmp_path_factory) -> Path:
    # Shared with tests/test_hpo.py: the built-in corpus is tokenized once per session.
    return tmp_path_factory.getbasetemp() / "hpo-real-workspace"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--param", "learnin_rate=1e-4:1e-3"], ["learnin_rate", "did you mean 'learning_rate'"]),
        (["--param", "n_layer=4:1"], ["n_layer", "low (4) > high (1)"]),
        (["--param", "schedule=cosine,zigzag"], ["schedule", "zigzag"]),
        (["--param", "n_layer=1:2", "--set", "n_layr=2"], ["n_layr"]),
        (["--param", "n_layer=1:2", "--storage", "study.txt"], ["study.txt", ".journal", "postgresql://"]),
        (["--param", "n_layer=1:2", "--storage", "postgresql://u@h/db", "--workers", "2"], ["--workers 2"]),
        ([], ["no search space"]),
        (["--param", "n_layer=1:2", "--study-name", "../../../../tmp/x"], ["--study-name", "../../../../tmp/x"]),
        (["--param", "n_layer=1:2", "--study-name", "s\n"], ["--study-name"]),
    ],
)
def test_bad_input_exits_2_naming_the_parameter(tmp_path, args, words):
    r = hpo("--workspace", str(tmp_path), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    for w in words:
        assert w in r.stderr
    assert not (tmp_path / "results").exists()  # nothing started


def test_bad_space_file_exits_2(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"n_layer": {"type": "normal", "low": 1, "high": 2}}))
    r = hpo("--workspace", str(tmp_path), "--space", str(space))
    assert r.returncode == 2 and "n_layer: unknown type 'normal'" in r.stderr


def test_a_study_runs_writes_results_and_resumes(real_workspace):
    ws = str(real_workspace)
    common = ["--workspace", ws, "--study-name", "cli", "--preset", "smoke", "--param", "learning_rate=1e-3:1e-2:log",
              "--set", "max_steps=4", "--set", "eval_interval=2", "--set", "checkpoint_interval=1000"]
    r = hpo(*common, "--n-trials", "1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = real_workspace / "results" / "hpo" / "cli"
    table = pd.read_csv(out / "trials.csv")
    assert list(table["number"]) == [0] and list(table["state"]) == ["COMPLETE"]
    best = json.loads((out / "best.json").read_text())
    assert best["best_trial"] == 0 and set(best["best_params"]) == {"learning_rate"}
    assert (out / "intermediate_values.png").exists()
    # One completed trial is no history: the figure is skipped with a line saying why.
    assert not (out / "optimization_history.png").exists()
    assert "needs at least 2 completed trials" in r.stdout + r.stderr
    assert "best val_loss" in r.stdout
    assert (real_workspace / "results" / "hpo" / "cli.journal").exists()  # the default storage

    # The same command again: the study is loaded, already has its trial, and runs none.
    again = hpo(*common, "--n-trials", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "cli: 1 trials (complete 1)" in again.stdout
    assert not (real_workspace / "runs" / "cli-t1").exists()
    # --results-only needs no search space.
    only = hpo("--workspace", ws, "--study-name", "cli", "--results-only")
    assert only.returncode == 0 and "results in" in only.stdout
    missing = hpo("--workspace", ws, "--study-name", "nope", "--results-only")
    assert missing.returncode == 2 and "no study 'nope'" in missing.stderr
    # Resuming the study with another search space is a usage error, not a failure.
    other = [a if a != "learning_rate=1e-3:1e-2:log" else "learning_rate=1e-4:1e-3:log" for a in common]
    changed = hpo(*other, "--n-trials", "2")
    assert changed.returncode == 2 and "another search space" in changed.stderr


def test_workers_are_started_with_the_same_study_arguments(tmp_path, monkeypatch):
    """--workers N hands each worker process the job the command checked, as JSON: the
    same study arguments, its own index, and nothing parsed or checked twice."""
    import argparse

    from utils.training.config import TrainingConfig
    from utils.training.hpo.cli import add_arguments, storage_spec, study_job
    from utils.training.hpo.job import StudyJob
    from utils.training.hpo.space import SearchSpace

    space_file = tmp_path / "s.json"
    space_file.write_text(json.dumps({"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--workspace", "W", "--space", str(space_file), "--param", "n_layer=1:2",
                              "--study-name", "s", "--n-trials", "9", "--workers", "3", "--preset", "fast",
                              "--set", "max_steps=5", "--pruner", "hyperband", "--seed", "4"])
    job = study_job(args, storage_spec(args))
    assert job.config == TrainingConfig.preset("fast", max_steps=5)
    assert job.space == SearchSpace.from_form(learning_rate="1e-4:1e-3:log", n_layer="1:2")
    assert job.storage == str(Path("W").resolve() / "results" / "hpo" / "s.journal")

    def parsed_again(*a, **kw):
        raise AssertionError("a worker parsed its search space again")

    for name in ("from_dict", "from_json", "from_form"):
        monkeypatch.setattr(SearchSpace, name, classmethod(parsed_again))
    children = [StudyJob.from_json(job.for_worker(i).to_json()) for i in range(3)]
    for i, child in enumerate(children):
        assert child.worker_index == i
        assert child.config == job.config and child.space == job.space
        for name in ("study_name", "n_trials", "storage", "workspace", "pruner", "seed", "metric",
                     "heartbeat_interval", "grace_period"):
            assert getattr(child, name) == getattr(job, name), name


@pytest.mark.parametrize(
    "args, words",
    [
        (["--n-trials", "0"], ["--n-trials", ">= 1", "'0'"]),
        (["--n-trials", "many"], ["--n-trials", ">= 1", "'many'"]),
        (["--workers", "0"], ["--workers", ">= 1"]),
        (["--heartbeat-interval", "0"], ["--heartbeat-interval", ">= 1"]),
    ],
)
def test_bad_counts_are_usage_errors_naming_the_flag(tmp_path, capsys, args, words):
    from utils.training.hpo.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--workspace", str(tmp_path), "--param", "n_layer=1:2", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err
    assert "search space" not in err  # a trial count is no search-space error
    assert not (tmp_path / "results").exists()


def test_a_heartbeat_not_below_the_grace_period_is_a_usage_error(tmp_path, capsys):
    from utils.training.hpo.cli import main

    code = main(["--workspace", str(tmp_path), "--param", "n_layer=1:2", "--heartbeat-interval", "5",
                 "--grace-period", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "--heartbeat-interval (5) must be below --grace-period (5)" in err
    assert "search space" not in err and not (tmp_path / "results").exists()


def test_workers_on_one_journal_share_the_study(real_workspace):
    """--workers 2: the command starts two processes of itself, hands each its job on
    stdin, waits for both, then writes the results of the one study they shared."""
    ws = str(real_workspace)
    r = hpo("--workspace", ws, "--study-name", "two", "--workers", "2", "--n-trials", "2", "--preset", "smoke",
            "--param", "learning_rate=1e-3:1e-2:log", "--set", "max_steps=2", "--set", "eval_interval=1",
            "--set", "checkpoint_interval=1000", "--pruner", "none")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[hpo] 2 workers on" in r.stdout
    table = pd.read_csv(real_workspace / "results" / "hpo" / "two" / "trials.csv")
    assert sorted(table["number"]) == [0, 1] and set(table["state"]) == {"COMPLETE"}
    # Each worker process printed its summary of the shared study, then the command its own.
    assert r.stdout.count("[hpo] study two: 2 trials (complete 2)") == 3, r.stdout[-3000:]


def test_three_workers_on_postgres_start_together_and_survive_a_killed_one(real_workspace, postgres_url):
    """Real processes on a real server: three workers started in the same instant on an
    empty database (Optuna's schema is created once), the one that draws trial 1
    SIGKILLs itself after that trial's first step (tests/hpo_sigkill_worker.py), the
    trial is marked FAIL (its process is gone; its heartbeat, 1 s beats, 10 s grace,
    stopped) and redone, and the study ends with exactly --n-trials counted trials, each
    linked to its ExperimentDB run."""
    import optuna

    from utils.training.hpo.storage import open_storage
    from utils.training.tracking.experiment_db import ExperimentDB

    n = 4
    cmd = [sys.executable, str(ROOT / "tests" / "hpo_sigkill_worker.py"), "1", "hpo", "--workspace",
           str(real_workspace), "--study-name", "pg",
           "--storage", postgres_url, "--n-trials", str(n), "--preset", "smoke",
           "--param", "learning_rate=1e-3:1e-2:log", "--set", "max_steps=3", "--set", "eval_interval=1",
           "--set", "checkpoint_interval=1000", "--pruner", "none", "--heartbeat-interval", "1",
           "--grace-period", "10", "--no-results"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(3)]
    outs = [w.communicate(timeout=600)[0] for w in workers]
    codes = sorted(w.returncode for w in workers)
    assert codes == [-9, 0, 0], "\n---\n".join(o[-2000:] for o in outs)

    study = optuna.load_study(study_name="pg", storage=open_storage(postgres_url))
    trials = study.get_trials()
    dead = [t for t in trials if t.number == 1][0]
    assert dead.state == optuna.trial.TrialState.FAIL and "counted" not in dead.user_attrs
    done = [t for t in trials if t.number != 1]
    assert len(done) == n and all(t.state == optuna.trial.TrialState.COMPLETE for t in done)
    with ExperimentDB(real_workspace / "experiments.db") as db:
        rows = db.get_trials("pg").set_index("trial_number")
        assert sorted(rows.index) == sorted(t.number for t in trials)
        for t in done:
            assert rows.loc[t.number, "run_id"] == t.user_attrs["db_run_id"]
            assert rows.loc[t.number, "state"] == "COMPLETE"
        assert rows.loc[1, "state"] == "FAIL"
        assert db.get_run("pg-t1")["status"] == "failed"  # the dead run's row is closed too


def test_a_study_whose_trials_all_failed_exits_1_naming_the_first_error(tmp_path):
    # n_head=3 cannot divide d_model=64: every trial's config is refused before any training.
    r = hpo("--workspace", str(tmp_path), "--param", "n_head=3:3", "--n-trials", "2", "--study-name", "bad")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "all 2 trials of study 'bad' failed" in r.stderr
    assert "trial 0" in r.stderr and "d_model" in r.stderr

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


def test_workers_are_started_with_the_same_study_arguments():
    import argparse

    from utils.training.hpo.cli import _child_argv, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--workspace", "W", "--space", "s.json", "--param", "n_layer=1:2", "--study-name", "s",
                              "--n-trials", "9", "--workers", "3", "--preset", "fast", "--set", "max_steps=5",
                              "--pruner", "hyperband", "--seed", "4"])
    children = [parser.parse_args(_child_argv(args, "W/s.journal", i)[3:]) for i in range(3)]
    for i, child in enumerate(children):
        assert child.worker_index == i and child.workers == 1 and child.no_results
        assert child.storage == "W/s.journal"
        for name in ("workspace", "space", "params", "study_name", "n_trials", "preset", "overrides", "pruner", "seed"):
            assert getattr(child, name) == getattr(args, name), name


def test_three_workers_on_postgres_start_together_and_survive_a_killed_one(real_workspace, postgres_url):
    """Real processes on a real server: three workers started in the same instant on an
    empty database (Optuna's schema is created once), the one that draws trial 1
    SIGKILLs itself after that trial's first step (SLM_HPO_SIGKILL_IN_TRIAL), its
    silence is caught by Optuna's heartbeat (1 s beats, 10 s grace), the trial is marked
    FAIL and redone, and the study ends with exactly --n-trials counted trials, each
    linked to its ExperimentDB run."""
    import optuna

    from utils.training.hpo.storage import open_storage
    from utils.training.hpo.study import SIGKILL_TRIAL_ENV
    from utils.training.tracking.experiment_db import ExperimentDB

    n = 4
    cmd = [sys.executable, "-m", "utils.training", "hpo", "--workspace", str(real_workspace), "--study-name", "pg",
           "--storage", postgres_url, "--n-trials", str(n), "--preset", "smoke",
           "--param", "learning_rate=1e-3:1e-2:log", "--set", "max_steps=3", "--set", "eval_interval=1",
           "--set", "checkpoint_interval=1000", "--pruner", "none", "--heartbeat-interval", "1",
           "--grace-period", "10", "--no-results"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           SIGKILL_TRIAL_ENV: "1"}
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

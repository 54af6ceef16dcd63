"""`python -m utils.training hpo`: an Optuna study of real training runs.

Every worker runs the same command; they cooperate through the storage (hpo/storage.py):

    # one process (journal file under WORKSPACE/results/hpo/ by default)
    python -m utils.training hpo --workspace W --space examples/search_space.json \
        --study-name s1 --n-trials 20
    # several workers on one machine: start that line in N terminals with the same
    # --storage, or let this command start them
    python -m utils.training hpo ... --storage W/results/hpo/s1.journal --workers 3
    # several machines: the same line on each, pointing at one PostgreSQL server
    # (pip install "psycopg[binary]"); a worker silent for --grace-period seconds is
    # presumed dead and its trial redone (recipes: docs/scale_out.md)
    python -m utils.training hpo ... --storage postgresql://optuna:PASS@db-host/optuna
    # afterwards (any machine): best params, trials.csv and the figures only
    python -m utils.training hpo ... --results-only

Running the line again resumes the study up to --n-trials. Results go to
WORKSPACE/results/hpo/STUDY/ (best.json, trials.csv, PNG figures). Exit codes: those of
`python -m utils.training` (contracts.py); a search whose trials all failed exits 1.

The arguments are checked once, into a StudyJob (hpo/job.py); `--workers N` hands that
job, as JSON on stdin, to N processes of this module started with `--job-stdin`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from utils.training.contracts import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:  # the command's parser is built for every `python -m utils.training`: no optuna here
    import optuna

    from utils.training.config import TrainingConfig
    from utils.training.hpo.job import StudyJob
    from utils.training.hpo.space import SearchSpace

ROOT = Path(__file__).resolve().parents[3]  # the repository: worker processes import utils.training from it


class UsageError(ValueError):
    """Command-line arguments that are wrong together (the message names the flags)."""


def at_least(minimum: int, meaning: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum. A bad value is argparse's usage error
    (exit 2), naming the flag, what it means and what is allowed."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum} ({meaning}), got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from utils.training.presets import PRESETS

    parser.add_argument("--workspace", default="workspace", help="workspace folder (default: workspace)")
    parser.add_argument("--space", type=Path, help="search space JSON file (see examples/search_space.json)")
    parser.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=SPEC",
                        help="a searched field, as in the notebook form: learning_rate=1e-4:3e-3:log, "
                             "n_layer=1:4, schedule=cosine,linear; repeatable, added to --space")
    parser.add_argument("--study-name", default="hpo", help="the study (and run-name prefix); default: hpo")
    parser.add_argument("--n-trials", type=at_least(1, "the number of trials the study grows to"), default=20,
                        help="the study grows to this many trials, all workers together (default: 20)")
    parser.add_argument("--storage",
                        help="PATH.journal (default: WORKSPACE/results/hpo/STUDY.journal), sqlite:///PATH.db, "
                             "or postgresql://USER:PASS@HOST/DB for workers on several machines")
    parser.add_argument("--heartbeat-interval", type=at_least(1, "seconds"), default=30, metavar="SECONDS",
                        help="RDB storages (SQLite, PostgreSQL): a running trial beats this often (default: 30)")
    parser.add_argument("--grace-period", type=at_least(1, "seconds"), default=120, metavar="SECONDS",
                        help="RDB storages: a trial silent this long is failed and redone (default: 120)")
    parser.add_argument("--workers", type=at_least(1, "worker processes"), default=1,
                        help="worker processes to run on this machine (journal file or SQLite storage)")
    # A worker process started by --workers: its StudyJob (JSON) is on stdin, already checked.
    parser.add_argument("--job-stdin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="base settings (default: smoke)")
    parser.add_argument("--config", type=Path, help="a TrainingConfig JSON file as the base (instead of --preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a base TrainingConfig field; repeatable")
    parser.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (worker i uses seed + i)")
    parser.add_argument("--metric", default="val_loss", help="the minimised eval metric (default: val_loss)")
    parser.add_argument("--results-only", action="store_true", help="write the results of the study; run no trial")
    parser.add_argument("--no-results", action="store_true", help="do not write results after the trials")


def base_config(args: argparse.Namespace) -> TrainingConfig:
    """--config or --preset with the --set overrides (one check for preset and overrides)."""
    from utils.training.config import TrainingConfig, parse_overrides
    from utils.training.config_rules import ConfigError, Problem

    if args.config and args.preset:
        raise ConfigError([Problem("--config/--preset", "both", "give one of them")])
    overrides = parse_overrides(args.overrides)
    if not args.config:
        return TrainingConfig.from_preset(args.preset or "smoke", **overrides)
    base = TrainingConfig.load(args.config)
    return base.replace(**overrides) if overrides else base


def search_space(args: argparse.Namespace) -> SearchSpace:
    """--space FILE and the --param entries, each parsed once (a --param wins a field both name)."""
    from utils.training.hpo.space import SearchSpace, SearchSpaceError

    form = {}
    for item in args.params:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip():
            raise SearchSpaceError([f"--param {item!r}: write NAME=SPEC, e.g. learning_rate=1e-4:3e-3:log"])
        form[name.strip()] = spec.strip()
    space = SearchSpace.from_json(args.space) if args.space else None
    if form:
        params = SearchSpace.from_form(**form)
        space = params if space is None else space | params
    if space is None:
        raise SearchSpaceError(["no search space: give --space FILE.json and/or --param NAME=SPEC"])
    return space


def storage_spec(args: argparse.Namespace) -> str:
    """--storage, checked against --workers; default: the workspace's journal file for the study."""
    from utils.training.config_rules import ConfigError, path_name_problem
    from utils.training.hpo.storage import spec_kind
    from utils.training.workspace import Workspace

    bad_name = path_name_problem("--study-name", args.study_name)  # it names the storage and results paths
    if bad_name:
        raise ConfigError([bad_name])
    storage = args.storage or str(Workspace(args.workspace).hpo_journal_path(args.study_name))
    kind = spec_kind(storage)  # StorageSpecError for a spec that names no storage
    if args.workers > 1 and kind not in ("journal", "sqlite"):
        raise UsageError(f"--workers {args.workers} starts processes on this machine and needs a journal "
                         f"file or SQLite storage; on several machines start one command per machine")
    return storage


def study_job(args: argparse.Namespace, storage: str) -> StudyJob:
    """Every argument of the search, checked once."""
    from utils.training.hpo.job import StudyJob

    if args.grace_period <= args.heartbeat_interval:
        raise UsageError(f"--heartbeat-interval ({args.heartbeat_interval}) must be below "
                         f"--grace-period ({args.grace_period})")
    return StudyJob(config=base_config(args), space=search_space(args), study_name=args.study_name,
                    n_trials=args.n_trials, storage=storage, workspace=str(args.workspace), seed=args.seed,
                    pruner=args.pruner, metric=args.metric, heartbeat_interval=args.heartbeat_interval,
                    grace_period=args.grace_period)


def run(args: argparse.Namespace) -> int:
    from utils.training.config_rules import ConfigError
    from utils.training.hpo.job import StudyJob
    from utils.training.hpo.space import SearchSpaceError
    from utils.training.hpo.storage import StorageSpecError

    try:
        if args.job_stdin:  # the command that started this worker writes the results
            return _run_worker(StudyJob.from_json(sys.stdin.read()))
        storage = storage_spec(args)
        if args.results_only:
            return _write_results(args.workspace, args.study_name, storage)
        job = study_job(args, storage)
        code = _run_workers(job, args.workers) if args.workers > 1 else _run_worker(job)
        if code == EXIT_OK and not args.no_results:
            code = _write_results(args.workspace, args.study_name, storage)
        return code
    except (ConfigError, SearchSpaceError, StorageSpecError, UsageError) as e:
        # Bad arguments, or a study resumed with another search space: nothing was run.
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: the study is kept; run the same command again to resume it", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, RuntimeError, ValueError, ImportError) as e:
        print(f"hpo failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED


def _run_worker(job: StudyJob) -> int:
    study = job.run()
    _print_summary(study)
    return _exit_for(study)


def _exit_for(study: optuna.Study) -> int:
    """EXIT_FAILED, naming the first error, when every trial of the study failed: a
    search that found nothing is no success."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if not trials or any(t.state != TrialState.FAIL for t in trials):
        return EXIT_OK
    first = min(trials, key=lambda t: t.number)
    why = first.user_attrs.get("error") or "no error recorded (see the log above)"
    print(f"error: all {len(trials)} trials of study {study.study_name!r} failed; the first (trial "
          f"{first.number}): {why}", file=sys.stderr)
    return EXIT_FAILED


WORKER_COMMAND = [sys.executable, "-m", "utils.training.hpo.cli", "--job-stdin"]


def _run_workers(job: StudyJob, workers: int) -> int:
    """Worker processes 0..N-1 of `job` on one storage; waits for all of them."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # Each worker trains on its own share of the cores instead of all fighting for all.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    procs = []
    for i in range(workers):
        proc = subprocess.Popen(WORKER_COMMAND, env=env, stdin=subprocess.PIPE, text=True)
        try:
            with proc.stdin:  # type: ignore[union-attr]
                proc.stdin.write(job.for_worker(i).to_json())  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # the worker died before reading its job: its exit code says so below
        procs.append(proc)
    print(f"[hpo] {workers} workers on {job.storage}: pids {[p.pid for p in procs]}")
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.wait()
        raise
    bad = {p.pid: c for p, c in zip(procs, codes) if c != 0}
    if bad:
        print(f"[hpo] workers exited with errors {bad}; the study keeps their trials (failed ones included)",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _write_results(workspace: str, study_name: str, storage: str) -> int:
    import optuna

    from utils.training.hpo.figures import write_study_results
    from utils.training.hpo.storage import open_storage
    from utils.training.workspace import Workspace

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        print(f"error: no study {study_name!r} in {storage}", file=sys.stderr)
        return EXIT_USAGE
    out = Workspace(workspace).hpo_study_dir(study_name)
    summary = write_study_results(study, out)
    _print_summary(study)
    print(f"[hpo] results in {out}: {', '.join(sorted(summary['files']))}")
    return EXIT_OK


def _print_summary(study: optuna.Study) -> None:
    from utils.training.hpo.figures import study_summary

    s = study_summary(study)
    counts = ", ".join(f"{k} {v}" for k, v in s["trial_counts"].items() if v)
    line = f"[hpo] study {s['study_name']}: {s['n_trials']} trials ({counts or 'none'})"
    if s["best_trial"] is not None:
        line += (f"; best {s['metric']} {s['best_value']:.4f} at trial {s['best_trial']} "
                 f"(run {s.get('best_run_name')}): {s['best_params']}")
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.training hpo", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

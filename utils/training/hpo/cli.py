"""`python -m utils.training hpo`: an Optuna study of real training runs.

Every worker runs the same command; they cooperate through the storage (see
hpo_storage.py for the contract):

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
WORKSPACE/results/hpo/STUDY/ (best.json, trials.csv, PNG figures).

Exit codes: 0 done; 2 bad arguments, search space, config or storage (the message
names the parameter); 1 a failure, with its cause; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from utils.training.config import PRESETS

    parser.add_argument("--workspace", default="workspace", help="workspace folder (default: workspace)")
    parser.add_argument("--space", type=Path, help="search space JSON file (see examples/search_space.json)")
    parser.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=SPEC",
                        help="a searched field, as in the notebook form: learning_rate=1e-4:3e-3:log, "
                             "n_layer=1:4, schedule=cosine,linear; repeatable, added to --space")
    parser.add_argument("--study-name", default="hpo", help="the study (and run-name prefix); default: hpo")
    parser.add_argument("--n-trials", type=int, default=20,
                        help="the study grows to this many trials, all workers together (default: 20)")
    parser.add_argument("--storage",
                        help="PATH.journal (default: WORKSPACE/results/hpo/STUDY.journal), sqlite:///PATH.db, "
                             "or postgresql://USER:PASS@HOST/DB for workers on several machines")
    parser.add_argument("--heartbeat-interval", type=int, default=30, metavar="SECONDS",
                        help="RDB storages (SQLite, PostgreSQL): a running trial beats this often (default: 30)")
    parser.add_argument("--grace-period", type=int, default=120, metavar="SECONDS",
                        help="RDB storages: a trial silent this long is failed and redone (default: 120)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes to run on this machine (journal file or SQLite storage)")
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="base settings (default: smoke)")
    parser.add_argument("--config", type=Path, help="a TrainingConfig JSON file as the base (instead of --preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a base TrainingConfig field; repeatable")
    parser.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (worker i uses seed + i)")
    parser.add_argument("--metric", default="val_loss", help="the minimised eval metric (default: val_loss)")
    parser.add_argument("--results-only", action="store_true", help="write the results of the study; run no trial")
    parser.add_argument("--no-results", action="store_true", help="do not write results after the trials")


def base_config(args: argparse.Namespace):
    from utils.training.config import ConfigError, Problem, TrainingConfig, parse_overrides

    if args.config and args.preset:
        raise ConfigError([Problem("--config/--preset", "both", "give one of them")])
    base = TrainingConfig.load(args.config) if args.config else TrainingConfig.preset(args.preset or "smoke")
    return base.replace(**parse_overrides(args.overrides))


def search_space(args: argparse.Namespace):
    from utils.training.hpo.study import SearchSpace, SearchSpaceError

    entries = SearchSpace.from_json(args.space).to_dict() if args.space else {}
    if args.params:
        form = {}
        for item in args.params:
            name, sep, spec = item.partition("=")
            if not sep or not name.strip():
                raise SearchSpaceError([f"--param {item!r}: write NAME=SPEC, e.g. learning_rate=1e-4:3e-3:log"])
            form[name.strip()] = spec.strip()
        entries.update(SearchSpace.from_form(**form).to_dict())
    if not entries:
        raise SearchSpaceError(["no search space: give --space FILE.json and/or --param NAME=SPEC"])
    return SearchSpace.from_dict(entries)


def _storage(args: argparse.Namespace) -> str:
    return args.storage or str(Path(args.workspace) / "results" / "hpo" / f"{args.study_name}.journal")


def run(args: argparse.Namespace) -> int:
    from utils.training.config import ConfigError
    from utils.training.hpo.storage import StorageSpecError, _spec_kind
    from utils.training.hpo.study import SearchSpaceError

    try:
        from utils.training.config import path_name_problem

        bad_name = path_name_problem("--study-name", args.study_name)  # it names the storage and results paths
        if bad_name:
            raise ConfigError([bad_name])
        if args.n_trials < 1:
            raise SearchSpaceError([f"--n-trials must be >= 1, got {args.n_trials}"])
        if args.workers < 1:
            raise SearchSpaceError([f"--workers must be >= 1, got {args.workers}"])
        if args.heartbeat_interval < 1 or args.grace_period <= args.heartbeat_interval:
            raise SearchSpaceError([f"--heartbeat-interval ({args.heartbeat_interval}) must be >= 1 and below "
                                    f"--grace-period ({args.grace_period})"])
        storage = _storage(args)
        kind = _spec_kind(storage)
        if args.workers > 1 and kind not in ("journal", "sqlite"):
            raise StorageSpecError(f"--workers {args.workers} starts processes on this machine and needs a journal "
                                   f"file or SQLite storage; on several machines start one command per machine")
        config = None if args.results_only else base_config(args)
        space = None if args.results_only else search_space(args)
    except (ConfigError, SearchSpaceError, StorageSpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    try:
        if args.results_only:
            return _write_results(args, storage)
        if args.workers > 1 and args.worker_index == 0:
            code = _run_workers(args, storage)
        else:
            code = _run_worker(args, storage, config, space)
        if code == EXIT_OK and args.worker_index == 0 and not args.no_results:
            code = _write_results(args, storage)
        return code
    except KeyboardInterrupt:
        print("interrupted: the study is kept; run the same command again to resume it", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SearchSpaceError, ConfigError) as e:  # e.g. resuming a study with another search space
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, RuntimeError, ValueError, ImportError) as e:
        print(f"hpo failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED


def _run_worker(args: argparse.Namespace, storage: str, config, space) -> int:
    from utils.training.hpo.storage import _spec_kind, open_storage
    from utils.training.hpo.study import run_study

    if _spec_kind(storage) != "journal":  # RDB: a heartbeat with this worker's timing
        storage = open_storage(storage, heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period)
    study = run_study(config, space, n_trials=args.n_trials, storage=storage, study_name=args.study_name,
                      workspace_dir=args.workspace, sampler_seed=args.seed, pruner=args.pruner,
                      metric=args.metric, worker_index=args.worker_index)
    _print_summary(study)
    return _exit_for(study)


def _exit_for(study) -> int:
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


def _child_argv(args: argparse.Namespace, storage: str, index: int) -> list[str]:
    argv = [sys.executable, "-m", "utils.training.hpo.cli", "--workspace", str(args.workspace),
            "--study-name", args.study_name, "--n-trials", str(args.n_trials), "--storage", storage,
            "--worker-index", str(index), "--pruner", args.pruner, "--seed", str(args.seed),
            "--metric", args.metric, "--no-results", "--heartbeat-interval", str(args.heartbeat_interval),
            "--grace-period", str(args.grace_period)]
    if args.space:
        argv += ["--space", str(args.space)]
    for p in args.params:
        argv += ["--param", p]
    if args.preset:
        argv += ["--preset", args.preset]
    if args.config:
        argv += ["--config", str(args.config)]
    for o in args.overrides:
        argv += ["--set", o]
    return argv


def _run_workers(args: argparse.Namespace, storage: str) -> int:
    """Worker processes 0..N-1 of this command on one storage; waits for all of them."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # Each worker trains on its own share of the cores instead of all fighting for all.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.workers)))
    procs = [subprocess.Popen(_child_argv(args, storage, i), env=env) for i in range(args.workers)]
    print(f"[hpo] {args.workers} workers on {storage}: pids {[p.pid for p in procs]}")
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


def _write_results(args: argparse.Namespace, storage: str) -> int:
    import optuna

    from utils.training.hpo.storage import open_storage
    from utils.training.hpo.study import write_study_results

    try:
        study = optuna.load_study(study_name=args.study_name, storage=open_storage(storage))
    except KeyError:
        print(f"error: no study {args.study_name!r} in {storage}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.workspace) / "results" / "hpo" / args.study_name
    summary = write_study_results(study, out)
    _print_summary(study)
    print(f"[hpo] results in {out}: {', '.join(sorted(summary['files']))}")
    return EXIT_OK


def _print_summary(study) -> None:
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

"""`python -m utils.training {train,runs,hpo,generate,export}`: the notebooks' library on the command line.

Exit codes: 0 completed or stopped early; 1 failure (the cause is printed); 2 bad
arguments or config (the message names the field); 130 interrupted (Ctrl-C) and 143
stopped by SIGTERM, after a checkpoint of the current step was written.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from utils.training.config import TrainingConfig, parse_overrides, read_config_file
from utils.training.config_rules import ConfigError, Problem
from utils.training.contracts import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from utils.training.engine import signals
from utils.training.engine.disk_full import describe_full_disk, full_disk_error
from utils.training.presets import PRESETS, preset_values
from utils.training.registries import DATA_SOURCES
from utils.training.tracking.db_access import check_health, check_link, check_writable
from utils.training.tracking.db_file import DatabaseFileError

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")  # what `runs compare --out` can draw

# Data options that are TrainingConfig fields, offered as their own flags.
_DATA_FLAGS = ("data_source", "data_path", "hf_dataset", "hf_config", "text_column", "tokenizer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m utils.training", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) one run")
    t.add_argument("--workspace", default="workspace", help="workspace folder (default: workspace)")
    t.add_argument("--run-name", help="run folder name under WORKSPACE/runs/ (default: the preset's)")
    t.add_argument("--preset", choices=sorted(PRESETS), help="base settings (default: fast; --test: smoke)")
    t.add_argument("--config", type=Path, help="a TrainingConfig JSON file (instead of a preset)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainingConfig field; repeatable")
    for name in _DATA_FLAGS:
        t.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"TrainingConfig.{name}")
    t.add_argument("--mode", choices=("packed", "sample", "chunk"), default="packed",
                   help="packed windows (default), one document per row (sample), or streaming chunks (chunk)")
    t.add_argument("--doc-split", choices=("auto", "paragraph", "line", "file"),
                   help="local/drive/upload .txt files: one document per paragraph, per line, or per file; auto "
                        "(default): paragraphs when the file has blank-line separated ones, else lines")
    t.add_argument("--max-chunks", type=int, default=0, help="chunk mode: stop after this many chunks (0 = all)")
    t.add_argument("--tokens-per-chunk", type=int, default=0, help="chunk mode: tokens per chunk (0 = default)")
    t.add_argument("--viz-interval", type=int, default=None,
                   help="write the 7-chart report (viz/) every N steps (default: every eval_interval; 0 = off)")
    t.add_argument("--checkpoint-interval", type=int, help="TrainingConfig.checkpoint_interval")
    t.add_argument("--timeout", type=float, help="stop cleanly with a checkpoint after SECONDS (time_limit_s)")
    t.add_argument("--test", action="store_true", help="the smoke preset on the built-in corpus: a quick check")
    t.add_argument("--wandb-project", default="", help="also log to this W&B project")
    t.add_argument("--wandb-entity", default="")
    t.add_argument("--wandb-mode", choices=("online", "offline", "disabled"), default="online")
    t.add_argument("--trackio-project", default="",
                   help="also log to this local Trackio project (WORKSPACE/trackio; offline; `trackio show`)")
    t.add_argument("--no-export", action="store_true", help="skip the save_pretrained export at the end")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--predict", action="store_true",
                   help="first print this run's predicted wall time: a few real steps, an evaluation, a "
                        "checkpoint, samples and a report timed here (engine/timing.py), then train")

    r = sub.add_parser("runs", help="list, plot and compare runs")
    rsub = r.add_subparsers(dest="runs_command", required=True)
    rl = rsub.add_parser("list", help="runs in WORKSPACE/experiments.db")
    rl.add_argument("--workspace", default="workspace")
    rp = rsub.add_parser("plot", help="the six-panel analysis of each RUN")
    rp.add_argument("runs", nargs="+", metavar="RUN", help="a run log file, a folder of them, or db:NAME")
    rp.add_argument("--workspace", default="workspace")
    rp.add_argument("--out", type=Path, help="output folder (default: WORKSPACE/results)")
    ri = rsub.add_parser("import", help="copy a seed notebook experiments.db into WORKSPACE/experiments.db")
    ri.add_argument("path", type=Path, metavar="PATH", help="the seed's experiments.db (read only, left unchanged)")
    ri.add_argument("--workspace", default="workspace")
    rc = rsub.add_parser("compare", help="one comparison figure and table for several RUNs")
    rc.add_argument("runs", nargs="+", metavar="RUN")
    rc.add_argument("--workspace", default="workspace")
    rc.add_argument("--out", type=Path, required=True, help="figure file (.png/.pdf/.svg); the table goes beside it")

    h = sub.add_parser("hpo", help="Optuna hyperparameter search")
    from utils.training.hpo.cli import add_arguments

    add_arguments(h)
    from utils.training.export import commands as export_commands

    export_commands.add_generate_arguments(sub.add_parser("generate", help="talk to a run's model (streamed)"))
    export_commands.add_export_arguments(sub.add_parser("export", help="model card, Hub upload, GGUF"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits 2 on bad arguments
    try:
        if args.command == "train":
            return train_command(args)
        if args.command == "runs":
            return runs_command(args)
        if args.command in ("generate", "export"):
            from utils.training.export import commands as export_commands

            return getattr(export_commands, f"{args.command}_command")(args)
        from utils.training.hpo.cli import run as run_hpo

        return run_hpo(args)
    except (ConfigError, DatabaseFileError) as e:  # bad input: a usage error, nothing written
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (signals.Terminated)
        print(f"{signals.describe(stop)}: the last checkpoint is kept; run the same command again to resume",
              file=sys.stderr)
        return signals.exit_code(stop)


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    """--config or --preset, then the data flags, --checkpoint-interval, --timeout,
    --run-name and the --set overrides, merged as plain values and validated together,
    once (the preset or file alone is not validated first: only the config that runs)."""
    if args.config and args.preset:
        raise ConfigError([Problem("--config/--preset", "both", "give one of them")])
    if args.config:
        base = read_config_file(args.config)
        if not isinstance(base, dict):  # a JSON list or number: from_dict says what a config is
            return _naming_file(args.config, base)
    else:
        base = preset_values("smoke" if args.test else args.preset or "fast")
    if args.test:
        base.update(data_source="builtin")
    changes = {name: getattr(args, name) for name in _DATA_FLAGS if getattr(args, name) is not None}
    if args.checkpoint_interval is not None:
        changes["checkpoint_interval"] = args.checkpoint_interval
    if args.timeout is not None:
        changes["time_limit_s"] = float(args.timeout)
    if args.run_name:
        changes["run_name"] = args.run_name
    changes.update(parse_overrides(args.overrides))
    if args.config:
        return _naming_file(args.config, {**base, **changes})
    return TrainingConfig.from_dict({**base, **changes})


def _naming_file(path: Path, values) -> TrainingConfig:
    """TrainingConfig.from_dict(values), its ConfigError naming the --config file first."""
    try:
        return TrainingConfig.from_dict(values)
    except ConfigError as e:
        n = len(e.problems)
        raise ConfigError([Problem("--config", str(path), f"the config made from this file (and the flags) has "
                                   f"{n} problem{'s' if n != 1 else ''}:"), *e.problems]) from None


def train_command(args: argparse.Namespace) -> int:
    from utils.training.contracts import RunStatus
    from utils.training.data.readers import DataError
    from utils.training.engine.distributed import DistributedContext, world_size_from_env
    from utils.training.engine.run_lock import RunLock, RunLockedError
    from utils.training.engine.trainer import ResumeError
    from utils.training.session import ReportingOptions, TrainingSession
    from utils.training.text import chinchilla_share
    from utils.training.workspace import Workspace

    config = config_from_args(args)
    config.rank_batch(world_size_from_env())  # a world size that cannot split the batch: exit 2, no data touched
    data_options = {"mode": args.mode}
    if args.doc_split:
        file_sources = DATA_SOURCES.where("reads", "files")
        if config.data_source not in file_sources:
            raise ConfigError([Problem("--doc-split", args.doc_split, "applies to .txt files of data_source "
                                       f"{', '.join(file_sources)} (data_source is {config.data_source!r})")])
        if args.mode == "chunk" and args.doc_split not in ("paragraph", "line"):
            raise ConfigError([Problem("--doc-split", args.doc_split, "streaming (--mode chunk) splits by "
                                       "'paragraph' or 'line'")])
        data_options["doc_split"] = args.doc_split
    if args.mode == "chunk":  # 0 on the command line means: the streaming module's default
        if args.tokens_per_chunk > 0:
            data_options["tokens_per_chunk"] = args.tokens_per_chunk
        if args.max_chunks > 0:
            data_options["max_chunks"] = args.max_chunks
    workspace = Workspace(args.workspace)
    # A writing command: a read-only workspace, a damaged database or a dangling symlink is
    # refused here, before any data or model is built (exit 2 naming the path).
    check_writable(workspace.root, "workspace folder")
    check_writable(workspace.db_path)
    check_health(workspace.db_path)
    dist = DistributedContext.from_env()
    tracking = ReportingOptions(
        wandb_project=args.wandb_project,
        wandb_entity=args.wandb_entity,
        wandb_mode=args.wandb_mode,
        trackio_project=args.trackio_project,
        viz_interval=config.eval_interval if args.viz_interval is None else args.viz_interval,
        progress_bar=not args.no_progress,
    )
    lock = RunLock(workspace.checkpoint_run_dir(config.run_name))
    if dist.is_main:  # one trainer per run: a second process on this run name stops here (exit 2)
        try:
            lock.acquire()
        except RunLockedError as e:
            raise ConfigError([Problem("--run-name", config.run_name, str(e))]) from None
    try:
        session = TrainingSession(config, args.workspace, tracking=tracking, data_options=data_options, dist=dist)
    except BaseException:
        lock.release()
        raise
    interrupted = quiet_close = False
    try:
        if dist.is_main:
            session.db  # noqa: B018 - open (and check) the database before data and model are built
        session.prepare()
        if dist.is_main:
            s = session.summary()
            stats = session.data.stats
            if stats.get("doc_split"):  # which split turned the .txt files into documents
                print(f"data: {stats['documents']:,} documents from {stats['name']} (one per {stats['doc_split']})")
            print(f"{config.run_name}: {s['model_family']} {s['parameters'] / 1e6:.2f}M parameters, "
                  f"{s['max_steps']} steps x {s['tokens_per_step']} tokens "
                  f"({chinchilla_share(s['tokens_planned'], s['parameters'])} of the Chinchilla-optimal "
                  f"{s['chinchilla_tokens'] / 1e6:.1f}M tokens)" + (f" [{s['caveat']}]" if s["caveat"] else ""))
            if args.predict:
                _print_prediction(session)
        result = session.train()
        if dist.is_main and result.status in (RunStatus.COMPLETED, RunStatus.STOPPED_EARLY):
            if not args.no_export:
                print(f"exported model and tokenizer to {session.export()}")
            _write_dashboard(session)
        if dist.is_main:
            best = result.state.best_val_loss
            note = f" [{session.caveat}]" if session.caveat else ""
            from utils.training.throughput import throughput_text

            print(f"{config.run_name}: {result.status} at step {result.state.step}, best val_loss "
                  f"{best:.4f} (step {result.state.best_step}), "
                  f"{throughput_text(result.state.tokens_seen, result.state.elapsed_s)}; "
                  f"run folder {session.run_dir}{note}")
        # Ctrl-C: the trainer checkpoints and re-raises KeyboardInterrupt; main() returns 130.
        return EXIT_OK if result.status in (RunStatus.COMPLETED, RunStatus.STOPPED_EARLY) else EXIT_FAILED
    except KeyboardInterrupt:
        interrupted = True
        raise
    except (DataError, ResumeError) as e:  # bad data, or a config that cannot resume: usage errors
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, DatabaseFileError):  # usage errors: main() prints them and exits 2
        raise
    except (ValueError, OSError, RuntimeError, sqlite3.OperationalError) as e:
        if signals.stop_received():  # an error a stop signal caused (an import it cut short): the stop
            interrupted = True
            raise KeyboardInterrupt from e
        full = describe_full_disk(e, workspace.db_path)
        if full:  # one line; closing (which writes again) stays quiet about the same full disk
            quiet_close = True
            print(f"error: {full}", file=sys.stderr)
            return EXIT_FAILED
        print(f"error: training failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        try:
            _close(session, dist, interrupted, quiet_close)
        finally:
            lock.release()


def _close(session, dist, interrupted: bool, quiet: bool = False) -> None:
    """Close the database (and its mirror backup) and the process group. After Ctrl-C a
    failure here is reported, not raised: it would turn exit 130 into a traceback; after a
    full disk (`quiet`) a second full-disk error here says nothing new."""
    for step in (session.close, dist.cleanup):
        try:
            step()
        except Exception as e:  # noqa: BLE001 - re-raised unless an interrupt or a full disk is in flight
            if quiet and full_disk_error(e) is not None:
                continue
            if not (interrupted or quiet):
                raise
            print(f"after the {'interrupt' if interrupted else 'error'}, {step.__qualname__} failed: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)


def _print_prediction(session) -> None:
    """The step-time table of this run (the notebook's, for one row): its wall time as the
    last line will print it, predicted from parts timed once here."""
    from utils.training.engine.timing import format_timings, measure_presets
    from utils.training.viz.report import TrainingReport

    print(format_timings(measure_presets([session.config], vocab_size=session.config.vocab_size,
                                         report=TrainingReport, viz_interval=session.tracking.viz_interval)),
          flush=True)


def _write_dashboard(session) -> None:
    from utils.training.viz.dashboard import TrainingDashboard

    name = session.config.run_name
    path = TrainingDashboard.from_db(session.db, name).save(session.workspace.dashboard_path(name))
    print(f"dashboard: {path}")


def runs_command(args: argparse.Namespace) -> int:
    from utils.training.tracking.experiment_db import ExperimentDB
    from utils.training.workspace import Workspace

    workspace = Workspace(args.workspace)  # paths only: `runs` creates no folder
    db_path = _as_given(args.workspace, workspace, workspace.db_path)
    check_link(db_path)  # a dangling experiments.db symlink is an error, not "no runs yet"
    if args.runs_command == "import":
        check_link(args.path)
        if not args.path.exists():
            raise ConfigError([Problem("PATH", str(args.path), "does not exist")])
        if args.path.resolve() == db_path.resolve():
            raise DatabaseFileError(args.path, f"is this workspace's own database ({db_path}"
                                    f"{', through a symlink' if args.path.is_symlink() else ''})",
                                    "Import from the seed notebook's experiments.db at another path")
        check_writable(db_path)  # a writing command: refused up front on a read-only workspace
        check_health(db_path)
        try:
            with ExperimentDB(db_path) as db:
                print(db.import_db(args.path))
                print(f"into {db_path}; see them with: python -m utils.training runs list --workspace "
                      f"{args.workspace}")
        except (sqlite3.OperationalError, OSError) as e:
            full = describe_full_disk(e, db_path, "Free space and run the import again (no run of this import "
                                      "was kept)")
            if full is None:
                raise
            print(f"error: {full}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    if args.runs_command == "list":
        if not db_path.exists():
            print(f"no runs yet: {db_path} does not exist")
            return EXIT_OK
        with ExperimentDB(db_path, read_only=True) as db:
            runs = db.list_runs()
        if len(runs) == 0:
            print("no runs yet")
        else:
            print(runs.to_string(index=False))
        return EXIT_OK

    records = _load_records(args.runs, db_path)
    if args.runs_command == "plot":
        from utils.training.viz.analysis import plot_run

        out_dir = args.out or _as_given(args.workspace, workspace, workspace.results_dir)
        with _writing("--out", out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
            for record in records:
                path = out_dir / f"{_safe(record.name)}_analysis.png"
                plot_run(record, out_path=path)
                print(path)
        return EXIT_OK

    from utils.training.viz.analysis import compare_runs, write_summary_table

    if args.out.suffix.lower() not in FIGURE_SUFFIXES:
        raise ConfigError([Problem("--out", str(args.out), f"is a figure file: end it in {', '.join(FIGURE_SUFFIXES)} "
                                   "(the table goes beside it as .csv and .md)")])
    with _writing("--out", args.out):
        args.out.parent.mkdir(parents=True, exist_ok=True)
        _, table = compare_runs(records, out_path=args.out)
        csv_path, md_path = args.out.with_suffix(".csv"), args.out.with_suffix(".md")
        write_summary_table(table, csv_path, md_path)
    print(f"{args.out}\n{csv_path}\n{md_path}")
    return EXIT_OK


@contextmanager
def _writing(flag: str, path: Path) -> Iterator[None]:
    """An output path that cannot be written (a file where a folder must be, a read-only
    folder, a full disk) is the user's to fix: ConfigError naming it, exit 2."""
    try:
        yield
    except OSError as e:
        where = e.filename or path
        raise ConfigError([Problem(flag, str(path), f"cannot be written ({e.strerror or e}: {where})")]) from None


def _load_records(specs: list[str], db_path: Path) -> list:
    """Each RUN: a run log file, a run folder, a folder of run logs, or db:NAME. A bad
    file given by name is an error (exit 2, naming it); in a folder of runs the bad
    ones are listed and the good ones read; a folder with none good is an error."""
    from utils.training.tracking.readers import load_run, run_log_specs
    from utils.training.tracking.run_log_format import RunLogError

    db = None
    records = []
    try:
        for spec in specs:
            if spec.startswith("db:"):
                if db is None:
                    if not db_path.exists():
                        raise ConfigError([Problem("RUN", spec, f"{db_path} does not exist")])
                    from utils.training.tracking.experiment_db import ExperimentDB

                    db = ExperimentDB(db_path, read_only=True)
                try:
                    records.append(load_run(spec, db=db))
                except KeyError:
                    raise ConfigError([Problem("RUN", spec, f"no run named {spec[3:]!r} in {db_path} "
                                               "(`runs list` shows them)")]) from None
            elif Path(spec).is_dir():
                found = run_log_specs(spec)
                good, bad = [], []
                for path in found:
                    try:
                        good.append(load_run(path))
                    except RunLogError as e:
                        bad.append(str(e))
                    except (TypeError, ValueError, KeyError, AttributeError) as e:  # a field no check foresaw
                        bad.append(f"{path}: a field of an unexpected type ({type(e).__name__}: {e})")
                for message in bad:
                    print(f"skipped: {message}", file=sys.stderr)
                if not good:
                    why = f"holds no readable run log ({len(bad)} unreadable)" if found else "holds no run log"
                    raise ConfigError([Problem("RUN", spec, why)])
                records.extend(good)
            elif Path(spec).is_file():
                try:
                    records.append(load_run(spec))
                except RunLogError as e:
                    raise ConfigError([Problem("RUN", spec, str(e))]) from None
                except (TypeError, ValueError, KeyError, AttributeError) as e:  # a field no check foresaw
                    raise ConfigError([Problem("RUN", spec, f"a field of an unexpected type ({type(e).__name__}: "
                                               f"{e})")]) from None
            else:
                raise ConfigError([Problem("RUN", spec, "is not a run log file, a folder of run logs, or db:NAME")])
    finally:
        if db is not None:
            db.close()
    return records


def _as_given(given: str, workspace, path: Path) -> Path:
    """`path` of `workspace` spelled from the --workspace the user gave (relative stays
    relative), as the messages always printed it."""
    return Path(given) / path.relative_to(workspace.root)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)

"""Which sinks a run writes to: `ReportingOptions` (the one home of the W&B settings) and
`sinks_for`, the one factory the session, the Hugging Face callback and the seed
MetricsTracker call.

    sinks = sinks_for(options, run_name="r1", config=cfg, db=db, run_log_path=path)

`SINK_BUILDERS` is the registry: each entry is a function (options, target) -> a sink or
None (not asked for). A new sink is one function and one line in that dict.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.training.config_rules import ConfigError, Problem
from utils.training.tracking.db_sink import ExperimentDBSink
from utils.training.tracking.run_log import RunLogWriter
from utils.training.tracking.wandb_logger import MODES, WandbRunSink, WandbSink

if TYPE_CHECKING:
    from utils.training.contracts import MetricsSink
    from utils.training.tracking.experiment_db import ExperimentDB


@dataclass
class ReportingOptions:
    """What a run reports besides SQLite (always on) and the JSON run log (always on):
    W&B, Trackio, the live plot, the training report's figures, the progress bar. Checked when
    made (ConfigError naming the field), before any data is prepared."""

    wandb_project: str = ""  # "" = no W&B run started by us
    wandb_entity: str = ""
    wandb_mode: str = "online"  # online | offline | disabled (online falls back on its own)
    wandb_tags: tuple[str, ...] = ()
    # The key itself, when the caller resolved it (the notebook does, in the foreground, so a
    # hidden prompt can work); None = the sink looks in Colab Secrets and the environment.
    # Never shown: excluded from repr.
    wandb_api_key: str | None = field(default=None, repr=False)
    # Log to the W&B run the caller's own code started (wandb.init) instead of starting one.
    wandb_attach: bool = False
    trackio_project: str = ""  # "" = no Trackio; else a local, offline Trackio project
    trackio_dir: str | os.PathLike | None = None  # None = the workspace's trackio/ (Trackio's own folder elsewhere)
    live_plot: bool = False  # LivePlotter in Jupyter/Colab (text table when headless)
    live_plot_interval_s: float = 2.0
    viz_interval: int = 0  # the seven-chart training report every N steps; 0 = off
    progress_bar: bool = True
    system_interval_s: float = 5.0  # the live system panel's sampling period (tracking/system_monitor.py); 0 = off

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """ConfigError listing every bad field (called again by whoever runs with them, as
        a field may be set after construction)."""
        problems = []
        if self.wandb_mode not in MODES:
            problems.append(Problem("wandb_mode", self.wandb_mode, f"must be one of {', '.join(MODES)}"))
        if not isinstance(self.wandb_project, str):
            problems.append(Problem("wandb_project", self.wandb_project, "must be a string ('' = no W&B)"))
        if not isinstance(self.trackio_project, str):
            problems.append(Problem("trackio_project", self.trackio_project, "must be a string ('' = no Trackio)"))
        if isinstance(self.wandb_tags, str) or not all(isinstance(t, str) for t in self.wandb_tags):
            problems.append(Problem("wandb_tags", self.wandb_tags, "must be a tuple of strings"))
        if problems:
            raise ConfigError(problems)

    @property
    def wandb_wanted(self) -> bool:
        return self.wandb_attach or (bool(self.wandb_project) and self.wandb_mode != "disabled")


@dataclass
class SinkTarget:
    """Where one run's record goes; a field left None means: no sink of that kind."""

    run_name: str
    config: Any = None
    db: ExperimentDB | None = None
    db_run_id: int | None = None  # continue this row (a resumed run)
    run_log_path: Path | None = None
    run_dir: Path | None = None  # W&B's local files
    wandb_timeout_s: float = 15.0  # the config's wandb_timeout_s
    trackio_dir: Path | None = None  # the workspace's trackio/ when options.trackio_dir is None


def _db_sink(options: ReportingOptions, target: SinkTarget) -> MetricsSink | None:
    if target.db is None:
        return None
    return ExperimentDBSink(target.db, target.run_name, target.config, run_id=target.db_run_id)


def _run_log(options: ReportingOptions, target: SinkTarget) -> MetricsSink | None:
    if target.run_log_path is None:
        return None
    return RunLogWriter(target.run_log_path, config=target.config, name=target.run_name, db=target.db)


def _wandb(options: ReportingOptions, target: SinkTarget) -> MetricsSink | None:
    if options.wandb_attach:
        return WandbRunSink()
    if not options.wandb_wanted:
        return None
    return WandbSink(options.wandb_project, entity=options.wandb_entity or None, run_name=target.run_name,
                     config=target.config, tags=options.wandb_tags, mode=options.wandb_mode,
                     init_timeout_s=target.wandb_timeout_s, run_dir=None if target.run_dir is None else str(target.run_dir),
                     api_key=options.wandb_api_key)


def _trackio(options: ReportingOptions, target: SinkTarget) -> MetricsSink | None:
    if not options.trackio_project:
        return None
    # trackio is optional: imported only when asked for
    from utils.training.tracking.trackio_sink import TrackioSink

    directory = options.trackio_dir if options.trackio_dir is not None else target.trackio_dir
    return TrackioSink(options.trackio_project, target.run_name, target.config, directory)


# name -> builder, in the order the sinks are written to (the database first: the source of truth)
SINK_BUILDERS: dict[str, Callable[[ReportingOptions, SinkTarget], Any]] = {
    "db": _db_sink,
    "run_log": _run_log,
    "wandb": _wandb,
    "trackio": _trackio,
}


def sinks_for(options: ReportingOptions | None, *, run_name: str, config: Any = None, db: ExperimentDB | None = None,
              db_run_id: int | None = None, run_log_path: str | os.PathLike | None = None,
              run_dir: str | os.PathLike | None = None, wandb_timeout_s: float = 15.0,
              trackio_dir: str | os.PathLike | None = None) -> list[MetricsSink]:
    """The sinks `options` ask for, for run `run_name` (SinkTarget says what each argument is)."""
    options = options if options is not None else ReportingOptions()
    options.check()
    target = SinkTarget(run_name, config, db, db_run_id, None if run_log_path is None else Path(run_log_path),
                        None if run_dir is None else Path(run_dir), float(wandb_timeout_s),
                        None if trackio_dir is None else Path(trackio_dir))
    sinks = (build(options, target) for build in SINK_BUILDERS.values())
    return [s for s in sinks if s is not None]

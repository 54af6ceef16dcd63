"""Trackio (Hugging Face's local-first tracker, wandb-like API) as a MetricsSink.

Local and offline by default: the run goes to a SQLite file under `directory` (the
workspace's trackio/ folder), never to a Space or a server unless `space_id` is given
(TRACKIO_SPACE_ID / TRACKIO_SERVER_URL in the environment are ignored then). The
dashboard: `trackio show --project PROJECT` with TRACKIO_DIR=WORKSPACE/trackio.

Same names as the database: the run is `run_name`, the config is the TrainingConfig,
the metrics keep our keys (train_loss, val_loss, lr, ...) at our `step`.

Resume: the run name goes into `tracking` (saved with each checkpoint), and a resumed
run re-opens the same Trackio run (resume="allow") after deleting the points it holds
after the checkpoint's step, which the resumed run logs again: every step is there
once, as in the database. sync() (before each checkpoint) and flush() (after each
evaluation) write Trackio's queue to its file at once.

Trackio reads its storage folder (TRACKIO_DIR) once, when first imported: the sink
sets it before that import; a process that imported trackio earlier keeps its folder
(a line says where the run went).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

_RESERVED = ("step", "time", "timestamp", "project", "run", "metrics")  # trackio renames these: we drop them


class TrackioSink:
    """MetricsSink logging to a local Trackio project."""

    def __init__(self, project: str, run_name: str, config: Any = None, directory: str | os.PathLike | None = None,
                 space_id: str | None = None):
        if not project:
            raise ValueError("trackio_project: empty; give a project name (runs of one project are compared)")
        self.project, self.run_name, self.config = project, run_name, config
        self.directory = Path(directory) if directory is not None else None
        self.space_id = space_id
        self.run = None
        self.reason = "not started"

    # -- start ---------------------------------------------------------------------------
    def start(self, run_info: dict) -> None:
        tracking = run_info.get("tracking")
        if tracking is None:
            tracking = {}
        name = tracking.get("trackio_run") or self.run_name or run_info.get("run_name")
        self.run_name = name
        resumed = run_info.get("resumed_from_step")
        trackio = self._import()
        if trackio is None:
            return
        if resumed is not None:
            self._drop_after(trackio, int(resumed))
        try:
            with self._local_only():
                self.run = trackio.init(project=self.project, name=name, config=_plain(self.config),
                                        resume="allow" if resumed is not None or "trackio_run" in tracking else "never",
                                        space_id=self.space_id, embed=False, auto_log_gpu=False, auto_log_cpu=False)
        except (OSError, ValueError, RuntimeError, sqlite3.Error) as e:
            self._report(f"start failed: {type(e).__name__}: {e}")
            return
        tracking["trackio_run"] = name
        where = f"Space {self.space_id}" if self.space_id else f"{self.storage_dir} (local)"
        self._report(f"run {name!r} of project {self.project!r} in {where}")

    def _import(self):
        if "trackio" not in sys.modules and self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            os.environ["TRACKIO_DIR"] = str(self.directory)  # read once, at trackio's import
        try:
            import trackio
        except ImportError:
            self._report("trackio is not installed (pip install trackio)")
            return None
        from trackio import utils

        self.storage_dir = Path(utils.TRACKIO_DIR)
        if self.directory is not None and self.storage_dir.resolve() != self.directory.resolve():
            print(f"Trackio: trackio was imported before with TRACKIO_DIR={self.storage_dir}; the run goes there, "
                  f"not to {self.directory}", flush=True)
        return trackio

    @contextlib.contextmanager
    def _local_only(self):
        """Without space_id, the environment's Space or server is not used: local means local."""
        saved = {k: os.environ.pop(k) for k in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL")
                 if k in os.environ and not self.space_id}
        try:
            yield
        finally:
            os.environ.update(saved)

    def _drop_after(self, trackio, step: int) -> None:
        """Delete this run's points after `step` (logged before a crash; logged again now)."""
        from trackio.sqlite_storage import SQLiteStorage

        path = SQLiteStorage.get_project_db_path(self.project)
        if not path.exists():
            return
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as con, con:
                con.execute("DELETE FROM metrics WHERE run_name = ? AND step > ?", (self.run_name, step))
        except sqlite3.Error as e:  # Trackio is a view: the run goes on, the database holds the record
            self._report(f"could not drop the points after step {step} ({type(e).__name__}: {e}); "
                         "they may appear twice in Trackio")

    def _report(self, reason: str) -> None:
        self.reason = reason
        print(f"Trackio: {reason}", flush=True)

    # -- MetricsSink -------------------------------------------------------------------------
    def write(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        if self.run is None:
            return
        values = {k: float(v) for k, v in metrics.items() if v is not None and k not in _RESERVED
                  and isinstance(v, (int, float))}
        if values:
            self.run.log(values, step=int(step))

    def add_samples(self, step: int, samples: list[dict]) -> None:
        """Text samples stay in the database and run log (Trackio tables would copy them)."""

    def add_checkpoint(self, step: int, path: str) -> None:
        """Checkpoints are the database's business."""

    def flush(self) -> None:
        self._write_queue()

    def sync(self) -> None:
        """Trackio's queued points written to its SQLite file now (it otherwise writes every
        0.5 s from a thread). Uses Trackio's own inline flush; a Trackio without it keeps
        its 0.5 s cadence (a kill may then lose the last half second of points)."""
        self._write_queue()

    def _write_queue(self) -> None:
        run = self.run
        flush = getattr(run, "_flush_queues_inline", None)  # trackio >= 0.4: no public flush
        lock = getattr(run, "_client_lock", None)
        if run is None or flush is None or lock is None:
            return
        with lock:
            flush()

    def close(self, status: str, summary: dict) -> None:
        if self.run is None:
            return
        try:
            self._write_queue()
            self.run.finish()
        except (OSError, RuntimeError, sqlite3.Error) as e:
            print(f"Trackio: finish failed ({type(e).__name__}: {e}); metrics are in the experiments database")
        finally:
            self.run = None

def _plain(config: Any) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"Trackio config must be a dict or have to_dict(); got {type(config).__name__}")

"""ExperimentDBSink: the MetricsSink (utils.training.contracts) that writes a run to the
experiments database, the source of truth of every run's record (docs/storage.md)."""

from __future__ import annotations

import os
from typing import Any

from utils.training.tracking.experiment_db import ExperimentDB, config_to_dict


class ExperimentDBSink:
    """MetricsSink writing to an ExperimentDB.

    start() creates the run row, or continues the one in run_info["tracking"]["db_run_id"]
    (resume) or `run_id`; it stores db_run_id in that tracking dict (the checkpoint's)."""

    def __init__(self, db: ExperimentDB | str | os.PathLike, run_name: str, config_dict: Any = None,
                 run_id: int | None = None):
        self._own = not isinstance(db, ExperimentDB)
        self.db = ExperimentDB(db) if self._own else db
        self.run_name, self.config, self.run_id = run_name, config_dict, run_id
        self.tracking: dict = {}  # set by start(): the checkpoint's ids (db_run_id, wandb_run_id)

    def start(self, run_info: dict[str, Any]) -> None:
        tracking = run_info.get("tracking")
        if tracking is None:
            tracking = {}
        run_id = self.run_id or tracking.get("db_run_id")
        resumed = run_info.get("resumed_from_step")
        if run_id is None:
            run_id = self._same_run_restarting()
            resumed = 0 if run_id is not None and resumed is None else resumed
        if run_id is not None:
            run_id = self.db.resolve_run(int(run_id))
            if resumed is not None:
                # Resumed from the checkpoint at step S (restarted from scratch: S = 0): what
                # the last process logged after S is logged again by this one.
                self.db.truncate_after(run_id, int(resumed))
            self.db.update_run_status(run_id, "running")
        else:
            info = {k: v for k, v in run_info.items() if k not in ("tracking", "config")}
            run_id = self.db.log_run(self.run_name, self.config if self.config is not None
                                     else run_info.get("config"), run_info=info,
                                     run_dir=run_info.get("run_dir"))
        self.run_id = run_id
        tracking["db_run_id"] = run_id
        self.tracking = tracking  # the checkpoint's ids; the W&B sink adds its id after this one starts

    def _same_run_restarting(self) -> int | None:
        """The row of this run when it starts again from step 0 (killed before its first
        checkpoint, or every checkpoint was unreadable): same name, same config. Another
        run under the same name is an error (RunExistsError from log_run)."""
        run_id = self.db.find_run(self.run_name)
        if run_id is None or self.config is None:
            return None
        from utils.training.config import config_dict_hash

        same = self.db.get_run(run_id)["config_hash"] == config_dict_hash(config_to_dict(self.config))
        return run_id if same else None

    def write(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        self.db.log_metrics(self.run_id, {k: v for k, v in metrics.items() if k != "step" and v is not None}, step)

    def add_samples(self, step: int, samples: list[dict[str, str]]) -> None:
        self.db.log_artifact(self.run_id, "samples", f"samples@{int(step)}", step=step, samples=samples)

    def add_checkpoint(self, step: int, path: str) -> None:
        self.db.log_artifact(self.run_id, "checkpoint", path, step=step)

    def flush(self) -> None:
        self.db.flush()

    def sync(self) -> None:
        """Durable now (a committed WAL transaction survives a killed process)."""
        self.db.flush()

    def close(self, status: str, summary: dict[str, Any]) -> None:
        try:
            if self.run_id is not None:
                summary = dict(summary or {})
                wandb_id = self.tracking.get("wandb_run_id")
                if wandb_id and "wandb_run_id" not in summary:
                    summary["wandb_run_id"] = wandb_id  # so the database row links to the W&B run
                self.db.update_run_status(self.run_id, status, **summary)
        finally:
            if self._own:
                self.db.close()

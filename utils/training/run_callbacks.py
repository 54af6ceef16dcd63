"""The session's own callbacks: the last text samples (for the notebook to print) and the
database backup to the durable folder (Drive)."""

from __future__ import annotations

from typing import Any

from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState


class LastSamples(TrainerCallback):
    """Keeps the most recent text samples (on_sample's `samples`) for the notebook to print."""

    def __init__(self) -> None:
        self.samples: list[dict] = []

    def on_sample(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.samples = list(kwargs.get("samples", []))


class DatabaseBackup(TrainerCallback):
    """Copies the live SQLite database to the durable folder (Drive) with the SQLite
    backup API after every checkpoint and at the end, so a dead runtime loses at most
    what happened since the last checkpoint."""

    def __init__(self, db: Any):
        self.db = db  # an ExperimentDB opened with a mirror_path

    def on_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.db.backup_to()

    def on_train_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.db.backup_to()

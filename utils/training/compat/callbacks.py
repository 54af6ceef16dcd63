"""CheckpointCallback: a checkpoint every `interval` steps, for code written before
FlowCallback owned all cadence (the trainer's FlowCallback already asks for one every
config.checkpoint_interval steps)."""

from __future__ import annotations

from utils.training.engine.callbacks import FlowCallback


class CheckpointCallback(FlowCallback):
    """Asks for a checkpoint every `interval` optimizer steps, nothing else."""

    def __init__(self, interval: int):
        if interval < 1:
            raise ValueError(f"checkpoint_interval must be >= 1, got {interval}")
        super().__init__(checkpoint_interval=interval, ends_run=False)
        self.interval = interval

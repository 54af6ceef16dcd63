"""The seams of the library, in code: what a metrics sink and a batch source must do,
and how a run can end. Modules type their parameters with these instead of `Any`, and
a third party's sink or sampler is checked against them (`isinstance(x, MetricsSink)`
works: the Protocols are runtime-checkable, which checks the methods' presence only).

Like Optuna's BaseStorage, each method says what it may raise; callers rely on that and
on nothing else. Importing this module imports no torch (it is read by the database
side of the library, which must stay light).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


class RunStatus:
    """How a run ended. Plain strings so they store as-is in SQLite, JSON and W&B; the
    database refuses any other value."""

    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED_EARLY = "stopped_early"
    PRUNED = "pruned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    ENDED = (COMPLETED, STOPPED_EARLY, PRUNED, FAILED, INTERRUPTED)
    ALL = (RUNNING, *ENDED)


# Exit codes of `python -m utils.training train|runs|hpo`: done; a failure (its cause
# printed); bad arguments, config or storage (the message names the field); Ctrl-C.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@runtime_checkable
class MetricsSink(Protocol):
    """One destination of a run's record (the database, the JSON run log, W&B, a
    progress bar). `MetricsTracker` calls every sink in this order: start once, then
    write/add_* any number of times, sync before each checkpoint, close once.

    A sink may raise only from `start` (it cannot record this run: the run stops before
    its first step, with the sink's message). After `start`, a sink that fails logs a
    warning and keeps the run going, except `sync`, whose failure means a checkpoint
    would claim steps that are not durable: it raises OSError (or sqlite3.Error), and
    the checkpoint is not written.
    """

    def start(self, run_info: dict[str, Any]) -> None:
        """run_info: config, run facts, `tracking` (ids saved in the checkpoint, so a
        resumed run continues the same database row / W&B run) and
        `resumed_from_step` (None for a new run; steps after it are dropped)."""

    def write(self, step: int, metrics: dict[str, float], kind: str) -> None:
        """kind: "train" or "eval". One call per log step; values are floats (NaN and
        infinity kept as themselves)."""

    def add_samples(self, step: int, samples: list[dict[str, str]]) -> None:
        """Generated text at `step`: [{"prompt", "output", "accuracy"}] (accuracy: share of greedy
        tokens equal to the reference continuation, or None)."""

    def add_checkpoint(self, step: int, path: str) -> None:
        """A checkpoint for `step` was written at `path`."""

    def flush(self) -> None:
        """Push buffered writes on; may be throttled (not a durability point)."""

    def sync(self) -> None:
        """Durable now: everything written so far survives a SIGKILL. Called before each
        checkpoint. Raises OSError or sqlite3.Error when that cannot be made true."""

    def close(self, status: str, summary: dict[str, Any]) -> None:
        """The run ended with `status` (a RunStatus value). Never raises; bounded in
        time (W&B's wait is capped by `wandb_timeout_s`)."""


@runtime_checkable
class BatchSource(Protocol):
    """Every batch source the trainer takes (RandomBatchSampler, SequentialBatchSampler,
    ChunkStream). Each DDP rank has its own, seeded by rank: ranks never draw the same
    batch. The position in `state_dict()` is enough to draw, after a restart, exactly
    the batch an uninterrupted run would have drawn next."""

    batch_size: int  # sequences per micro-batch on this rank
    block_size: int  # tokens per sequence

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y: (batch_size, block_size) int64 on the CPU, y = x shifted by one token.
        Raises StopIteration only for a finite stream that is exhausted."""

    def state_dict(self) -> dict[str, Any]:
        """The position; goes in the checkpoint (plain ints and lists only)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position. Raises ValueError naming the field when the
        state belongs to other data (another corpus size, block size or seed)."""

    def eval_batches(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same n held-out batches on every call (validation is comparable across
        steps and runs)."""

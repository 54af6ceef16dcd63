"""The checkpoint payload (what one checkpoint file holds) and the resume policy: which
checkpoint may be continued by which config, and how a continuation restores
everything an uninterrupted run would have in memory at that step (model, optimizer,
scheduler, scaler, every rank's RNG states and sampler position, the TrainerState),
so that it is bit-identical on CPU. checkpoint.py owns the files; this module owns
what is in them.

Payload (format 1; torch.load(weights_only=True) reads it):
    format, step, tokens_seen, model, optimizer, scheduler, scaler,
    rng: [per rank, capture_rng()], sampler: [per rank, BatchSource.state_dict()],
    world_size, trainer_state: TrainerState.to_dict(), config: TrainingConfig.to_dict(), config_hash
"""

from __future__ import annotations

from typing import Any

from utils.training.contracts import BatchSource
from utils.training.engine.callbacks import TrainerState
from utils.training.engine.distributed import DistributedContext
from utils.training.engine.rng import restore_rng, seed_everything

CHECKPOINT_FORMAT = 1
# What a resume reads: a checkpoint lacking one of these is skipped like a damaged one.
CHECKPOINT_KEYS = ("format", "step", "tokens_seen", "model", "optimizer", "scheduler", "rng", "sampler",
                   "trainer_state", "config")


class ResumeError(ValueError):
    """A checkpoint exists but this config may not continue it."""


def checkpoint_payload(*, state: TrainerState, config, model, optimizer, scheduler, scaler, rngs: list,
                       samplers: list, world_size: int) -> dict[str, Any]:
    """The dict one checkpoint file holds (see the module docstring)."""
    return {
        "format": CHECKPOINT_FORMAT, "step": state.step, "tokens_seen": state.tokens_seen,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
        "rng": rngs, "sampler": samplers, "world_size": world_size,
        "trainer_state": state.to_dict(), "config": config.to_dict(), "config_hash": config.config_hash,
    }


def saved_config_problem(config, payload: dict) -> str | None:
    """Why a checkpoint that loaded cannot be resumed from (its saved config does not
    validate as `config`'s type), or None. A config that differs is not this: that is
    a ResumeError (check_resumable). CheckpointManager's `validate` hook."""
    from utils.training.config_rules import ConfigError

    try:
        type(config).from_dict(payload["config"])
    except ConfigError as e:
        return f"its saved config is not valid: {'; '.join(str(p) for p in e.problems[:3])}"
    return None


def check_resumable(config, payload: dict, path) -> None:
    """Raises ResumeError naming every field whose change would alter training (the
    config's resume_blockers) between the checkpoint at `path` and `config`."""
    saved = type(config).from_dict(payload["config"])
    blockers = config.resume_blockers(saved)
    if blockers:
        detail = ", ".join(f"{k} ({payload['config'][k]!r} -> {getattr(config, k)!r})" for k in blockers)
        raise ResumeError(
            f"run {config.run_name!r} has a checkpoint at step {payload['step']} ({path}) written with a "
            f"different config; these fields change training: {detail}. Use the saved values, a new "
            "run_name, or delete the run folder to start over."
        )


def restore(payload: dict, *, model, optimizer, scheduler, scaler, batches: BatchSource, dist: DistributedContext,
            seed: int, state: TrainerState) -> TrainerState:
    """Load `payload` into the run's objects (in place) and return the TrainerState to
    continue with: the saved one, with this process's facts (`state`'s run name, world,
    max_steps, and tracking ids it already holds) on top."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    if payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    rank = dist.rank
    if payload.get("world_size", 1) == dist.world_size and rank < len(payload["rng"]):
        restore_rng(payload["rng"][rank])
    else:  # a different world size cannot continue bit-exactly; keep it reproducible
        seed_everything(seed + rank + payload["step"])
    batches.load_state_dict(payload["sampler"][rank if rank < len(payload["sampler"]) else 0])
    restored = TrainerState.from_dict(payload["trainer_state"])
    restored.tracking = {**payload["trainer_state"].get("tracking", {}), **state.tracking}
    restored.resumed_from_step = payload["step"]
    restored.run_name = state.run_name  # resume-safe: the run may have been renamed
    restored.world_size, restored.is_world_process_zero = state.world_size, state.is_world_process_zero
    restored.max_steps = state.max_steps
    restored.last_save_step = payload["step"]  # also for checkpoints written before the field existed
    return restored


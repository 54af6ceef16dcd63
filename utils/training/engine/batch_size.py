"""The micro-batch: measured on the device for batch_size="auto", halved on an
out-of-memory error in the middle of a step, and the step redone exactly.

Two numbers describe a step on one rank: `accumulation` batches drawn from the batch
source (the data, fixed by the config: batch_size sequences each), each cut into
`split` equal micro-batches for the forward and backward passes. The sequences of a
step, and their order, depend on the config alone, never on the split: a run that
backed off from 8 to 4 sequences per pass sees exactly the batches of a run that
started with 4 (`split=2`); only the summation order of the gradient differs.

    probe   choose_batch(config, model, device, world_size, ops)  -> BatchChoice
            "auto" on a GPU: real forward and backward steps of the configured model
            at the configured block size, growing over the divisors of the rank's
            share of the global batch until out of memory (memory freed after each);
            the accumulation rises to keep the global batch. On CPU: the preset's
            micro-batch, not probed (out of memory there is the host's swap, not an
            error to recover from), and the choice says so.
    back-off OOMBackOff.run(attempt, batches, zero_grad): an out-of-memory error in the
            forward/backward of a step frees memory, halves the micro-batch (doubles
            the split), rewinds the batch source to the start of the step and redoes it.
            The optimizer has not stepped yet, so nothing is lost or repeated.

Every device operation goes through one seam, `DeviceOps` (forward_backward, try_step,
free, max_memory_allocated): tests pass a subclass whose forward_backward raises
torch.OutOfMemoryError above a chosen micro-batch, and so drive both the probe and the
back-off on the CPU.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from utils.training.config_rules import AUTO, ConfigError, Problem
from utils.training.engine.device import autocast_context, resolve_device

GIB = 2**30


class DeviceOps:
    """The device operations of a training step, the probe and the back-off. `probes`:
    whether "auto" measures on this device (CUDA); a test double sets it."""

    def __init__(self, device: torch.device | str, precision: str = "fp32", scaler: Any = None):
        self.device = torch.device(device)
        self.precision = precision
        self.scaler = scaler  # the run's GradScaler (fp16); None: the loss is not scaled

    @property
    def probes(self) -> bool:
        return self.device.type == "cuda"

    def forward_backward(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                         divisor: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One micro-batch: forward (autocast), mean cross-entropy in fp32, backward of
        loss / divisor (scaled for fp16). -> (the loss, detached; the logits (B, T, V))."""
        with autocast_context(self.device.type, self.precision):
            logits = model(input_ids=x, use_cache=False).logits  # (B, T, V)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        scaled = loss / divisor if divisor > 1 else loss
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return loss.detach(), logits

    def try_step(self, model: torch.nn.Module, micro_batch: int, block_size: int, vocab_size: int) -> None:
        """A forward and backward at micro_batch x block_size random tokens (a private
        generator: the run's RNG streams are untouched); the gradients are dropped and the
        memory freed whatever happens. Raises torch.OutOfMemoryError when it does not fit."""
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab_size, (micro_batch, block_size + 1), generator=gen)
        x, y = ids[:, :-1].contiguous().to(self.device), ids[:, 1:].contiguous().to(self.device)
        try:
            self.forward_backward(model, x, y, 1)
        finally:
            model.zero_grad(set_to_none=True)
            del x, y
            self.free()

    def hold(self, n_bytes: int) -> Any:
        """Memory the run will hold that a probe step does not allocate (AdamW's two fp32
        moments, created at the first optimizer step), kept while probing."""
        if not self.probes or n_bytes <= 0:
            return None
        return torch.empty(n_bytes // 4, dtype=torch.float32, device=self.device)

    def free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def max_memory_allocated(self) -> int:
        """Bytes: the allocator's peak since reset_peak (0 off CUDA)."""
        return torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else 0


def ops_for(device: Any = None) -> DeviceOps:
    """The real device's operations (`device` None: the trainer's choice, resolve_device)."""
    return DeviceOps(resolve_device(device))


@dataclass(frozen=True)
class BatchChoice:
    """The micro-batch and accumulation of each rank, and how they were chosen."""

    micro_batch: int  # sequences per forward/backward pass on each rank
    accumulation: int  # micro-steps per optimizer step on each rank
    world_size: int
    how: str  # "config" (a number given) | "measured" (probed) | "preset" (auto, not probed) | "resumed"
    note: str  # one line for the summary card and the run's record
    peak_memory_gb: float | None = None  # the probe's measured peak at the chosen size (GPU only)

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.accumulation * self.world_size

    def config_values(self) -> dict[str, int]:
        """The TrainingConfig fields that give this choice: rank_batch(world_size) of a
        config with them returns (micro_batch, accumulation)."""
        return {"batch_size": self.micro_batch, "gradient_accumulation_steps": self.accumulation * self.world_size}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def probe_micro_batch(ops: DeviceOps, model: torch.nn.Module, *, rank_batch: int, block_size: int,
                      vocab_size: int, hold_bytes: int = 0) -> tuple[int, list[int], float | None]:
    """The largest divisor of `rank_batch` (this rank's share of the global batch) whose
    step fits: (size, the sizes tried, its peak in GiB or None). Grows from 1 and stops
    at the first out-of-memory error. ConfigError naming batch_size when not even 1 fits."""
    held = ops.hold(hold_bytes)
    fits, tried, peak = 0, [], None
    try:
        for size in divisors(rank_batch):
            tried.append(size)
            ops.reset_peak()
            try:
                ops.try_step(model, size, block_size, vocab_size)
            except torch.OutOfMemoryError:
                ops.free()
                break
            fits, peak = size, ops.max_memory_allocated() / GIB or None
    finally:
        del held
        ops.free()
    if not fits:
        raise ConfigError([Problem("batch_size", AUTO, f"not even one sequence of block_size {block_size} fits "
                                   f"on {ops.device}: lower block_size, d_model or n_layer")])
    return fits, tried, peak


def choose_batch(config: Any, model: torch.nn.Module | None, ops: DeviceOps, *, world_size: int = 1,
                 stored: tuple[int, int] | None = None) -> BatchChoice:
    """The run's (micro-batch, accumulation) per rank. A number in the config is used as
    given; "auto" resumes with `stored` (the config values a checkpointed run trained
    with), else is measured where `ops.probes`, else is the preset's micro-batch."""
    micro, accum = config.rank_batch(world_size)
    if config.batch_size != AUTO:
        return BatchChoice(micro, accum, world_size, "config", f"batch_size {config.batch_size} from the config")
    if stored is not None:
        m, a = config.replace(batch_size=stored[0], gradient_accumulation_steps=stored[1]).rank_batch(world_size)
        if m * a != micro * accum:
            raise ConfigError([Problem("batch_size", AUTO, f"the checkpointed run trained with batch_size "
                                       f"{stored[0]} x gradient_accumulation_steps {stored[1]}, another global batch "
                                       f"than this config's {config.global_batch}: use a new run_name")])
        return BatchChoice(m, a, world_size, "resumed", "auto: as the checkpointed run chose it (not measured again)")
    if not ops.probes:
        return BatchChoice(micro, accum, world_size, "preset", f"auto on {ops.device.type}: the preset's micro-batch, "
                           "not probed (out-of-memory is a GPU limit)")
    rank_share = micro * accum  # sequences per step on this rank
    n_params = sum(p.numel() for p in model.parameters())
    fits, tried, peak = probe_micro_batch(ops, model, rank_batch=rank_share, block_size=config.block_size,
                                          vocab_size=config.vocab_size, hold_bytes=8 * n_params)
    failed = f", {tried[-1]} did not" if tried[-1] != fits else f" (the whole share of {rank_share})"
    peak_text = f", peak {peak:.2f} GiB" if peak else ""
    return BatchChoice(fits, rank_share // fits, world_size, "measured",
                       f"auto on {ops.device}: micro-batch {fits} fits{peak_text}{failed}; accumulation "
                       f"{rank_share // fits} keeps the global batch of {rank_share * world_size}", peak)


class OOMBackOff:
    """Runs a step's forward/backward passes, and on an out-of-memory error halves the
    micro-batch and redoes the step from the same batches (see the module docstring).
    `batch_size`: sequences per drawn batch on this rank; `split`: passes per batch."""

    def __init__(self, ops: DeviceOps, batch_size: int, split: int = 1, say: Callable[[str], None] = print):
        if split < 1 or batch_size % split:
            raise ValueError(f"split {split} must divide the batch of {batch_size} sequences")
        self.ops, self.batch_size, self.split, self.say = ops, batch_size, split, say
        self.backoffs = 0

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.split

    def set_micro_batch(self, micro_batch: int) -> None:
        """Continue with `micro_batch` sequences per pass (a resumed run's backed-off size)."""
        if micro_batch < 1 or self.batch_size % micro_batch:
            raise ValueError(f"micro-batch {micro_batch} must divide the batch of {self.batch_size} sequences")
        self.split = self.batch_size // micro_batch

    def run(self, attempt: Callable[[int], Any], batches: Any, zero_grad: Callable[[], None], *,
            step: int, accumulation: int) -> Any:
        """attempt(split) draws the step's batches and runs its passes. On OOM: drop the
        partial gradients, free memory, rewind `batches` to where the step began, halve."""
        while True:
            start = batches.state_dict()
            try:
                return attempt(self.split)
            except torch.OutOfMemoryError:
                zero_grad()
                self.ops.free()
                if self.micro_batch % 2:
                    self.say(f"Out of memory at step {step} with a micro-batch of {self.micro_batch}, which cannot "
                             "be halved: lower block_size, d_model or n_layer")
                    raise
                batches.load_state_dict(start)
                old = self.micro_batch
                self.split *= 2
                self.backoffs += 1
                self.say(f"Out of memory at step {step}: micro-batch {old} -> {self.micro_batch}, accumulation "
                         f"{accumulation * self.split // 2} -> {accumulation * self.split} (same global batch); "
                         "redoing the step from the same batch")

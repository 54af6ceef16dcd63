"""DDP under torchrun: who we are (rank, world size) and the few collectives the
trainer needs.

    torchrun --nproc_per_node=2 -m utils.training train ...

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without
them (a notebook, plain python) the context is a single process and every helper
is a no-op, so the trainer calls them unconditionally.
"""

from __future__ import annotations

import gc
import os
import sys
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


def pick_backend(device_type: str) -> str:
    """nccl between CUDA GPUs, gloo everywhere else (CPU tests, MPS)."""
    return "nccl" if device_type == "cuda" else "gloo"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer (torchrun sets it)") from None


def world_size_from_env() -> int:
    """WORLD_SIZE as torchrun sets it (1 without torchrun), read before joining any
    process group: the CLI checks the config against it before preparing data."""
    return max(1, _env_int("WORLD_SIZE", 1))


def init_process_group(backend: str, rank: int, world_size: int, **kwargs: Any) -> None:
    """dist.init_process_group, with torch.distributed.nn imported first: it binds
    group.WORLD into its functions' defaults when first imported (DDP pulls it in through
    torch._dynamo), so imported after the group exists it would pin the group for the
    life of the process and DistributedContext.cleanup could not free it. Imported
    before, those defaults are None."""
    import torch.distributed as dist
    import torch.distributed.nn as _dist_nn  # noqa: F401 - imported for the side effect above

    dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: not initialised by us (single process)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls, device: str | torch.device | None = None) -> DistributedContext:
        """Read torchrun's variables and join the process group when WORLD_SIZE > 1.

        device: "cpu" forces gloo on CPU (the CI test); None picks cuda:LOCAL_RANK when
        CUDA is available, else cpu.
        """
        world_size = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        local_rank = _env_int("LOCAL_RANK", 0)
        if device is None:
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
        if world_size <= 1:
            return cls(device=device)
        if not 0 <= rank < world_size:
            raise ValueError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size})")
        import torch.distributed as dist

        backend = pick_backend(device.type)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            init_process_group(backend, rank, world_size)
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend, device=device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    # -- collectives (no-ops in a single process) ------------------------------------

    def barrier(self) -> None:
        if self.is_distributed:
            import torch.distributed as dist

            dist.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """In place and returned; t lives on self.device (nccl needs CUDA tensors)."""
        if self.is_distributed:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.all_reduce_sum(t).div_(self.world_size) if self.is_distributed else t

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """rank `src`'s obj on every rank (pickled; small control data only)."""
        if not self.is_distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=src, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def adopt_main(self, obj: Any) -> None:
        """Every rank takes rank 0's values of dataclass `obj`'s fields, in place (the
        loop's control before collective work: every rank must do the same)."""
        if self.is_distributed:
            for name, value in self.broadcast_object(asdict(obj)).items():
                setattr(obj, name, value)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        if not self.is_distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def cleanup(self) -> None:
        """Destroy the process group and free it now, so that its worker threads are
        joined while the interpreter is still whole.

        A gloo worker thread frees each finished collective after the caller's wait has
        returned, and that takes the GIL (the collective's tensors have Python objects).
        A group still alive at exit leaves those threads running into interpreter
        finalization, where a thread that asks for the GIL is ended in the middle of a C++
        destructor: "terminate called without an active exception", SIGABRT, after a
        completed run. Freeing the group runs its destructor, which joins the threads.
        Whoever wrapped a model in DDP must drop the wrapper first (it holds the group);
        the trainer does so when train() ends.
        """
        if self.backend is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                group = weakref.ref(dist.group.WORLD)
                dist.destroy_process_group()
                if group() is not None:
                    gc.collect()  # a holder in a reference cycle
                if group() is not None:
                    print(f"warning: rank {self.rank}: the process group is still referenced after "
                          "destroy_process_group, so its worker threads outlive it and may abort the "
                          "process at exit", file=sys.stderr, flush=True)
            self.backend = None

"""The seed notebook's seeding functions (utils.training.seed_manager) over the trainer's.

set_random_seed seeds Python, NumPy and torch (every GPU) with engine.rng.seed_everything,
and with deterministic=True switches kernels to deterministic ones with
engine.device.configure_backends, the set-up a run with TrainingConfig(deterministic=True)
gets. It prints the seed's two lines. Unlike the seed, the fast mode leaves
cudnn.benchmark alone: autotuned kernels change results from run to run, which is what a
seed is set to avoid (docs/seed_api.md)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np

FAST_MODE_LINE = "   Fast mode (may have minor non-determinism from cuDNN)"
DETERMINISTIC_MODE_LINE = "   Fully deterministic mode enabled"


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    import torch

    from utils.training.engine.device import configure_backends
    from utils.training.engine.rng import seed_everything

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed_everything(seed)
    if deterministic:
        # cpu: only the process-wide switches, not the CUDA matmul settings of a run's device
        configure_backends(SimpleNamespace(deterministic=True), torch.device("cpu"))
        # Autotuning may pick a different (each deterministic) convolution algorithm per run.
        torch.backends.cudnn.benchmark = False
    print(f"Random seed set to {seed}")
    print(DETERMINISTIC_MODE_LINE if deterministic else FAST_MODE_LINE)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: NumPy and Python seeded from the worker's torch seed."""
    import torch

    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def create_seeded_generator(seed: int):
    """A torch.Generator seeded with `seed` (DataLoader(generator=...))."""
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    return g


__all__ = ["set_random_seed", "seed_worker", "create_seeded_generator"]

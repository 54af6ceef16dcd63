"""The seed notebook's seeding functions, over the trainer's one seeding rule.

set_random_seed seeds Python, NumPy and torch (all GPUs) with trainer.seed_everything, and
with deterministic=True makes kernels deterministic the way TrainingConfig.deterministic
does. Unlike the seed, the fast mode leaves cudnn.benchmark alone: autotuned kernels change
results from run to run, which is what a seed is set to avoid."""

from __future__ import annotations

import os
import random

import numpy as np


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    import torch

    from utils.training.engine.rng import seed_everything

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed_everything(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    print(f"random seed {seed}" + (" (deterministic kernels)" if deterministic else ""))


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

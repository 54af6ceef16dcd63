"""The random number generators of a process: seed them, capture them into a
checkpoint, restore them from one (what makes a resumed run bit-identical on CPU)."""

from __future__ import annotations

import random

import numpy as np
import torch


def capture_rng() -> dict:
    """Every RNG this process draws from, as tensors and plain types (weights_only).
    The Mersenne Twister keys (624 words each) go in int64 tensors: as lists of Python
    ints they would cost a restricted-unpickler call per word on every load."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }


def restore_rng(rng: dict) -> None:
    """Put back what `capture_rng` returned."""
    version, mt, gauss = rng["python"]
    random.setstate((version, tuple(mt.tolist()), gauss))
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every GPU) with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

"""Batches and their position (the BatchSource protocol of docs/ARCHITECTURE.md).

`RandomBatchSampler` draws random windows from a 1-D token array (a numpy memmap or
any array-like). Batch i comes from a generator seeded by (seed, rank, i), so the
position i alone determines the next batch: resume = load the position.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def _as_array(tokens) -> np.ndarray:
    if isinstance(tokens, torch.Tensor):
        return tokens.detach().cpu().numpy()
    if isinstance(tokens, np.ndarray):  # includes np.memmap: no copy
        return tokens
    return np.asarray(tokens)


def _gather(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """starts: (B,) window starts -> x, y: (B, T) int64; y is x shifted by one token."""
    idx = starts[:, None] + np.arange(block_size + 1)[None, :]  # (B, T+1)
    win = torch.from_numpy(np.asarray(tokens[idx]).astype(np.int64))
    return win[:, :-1].contiguous(), win[:, 1:].contiguous()


class RandomBatchSampler:
    """Random (x, y) windows; each DDP rank draws its own seeded stream."""

    kind = "random"

    def __init__(self, tokens, batch_size: int, block_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.tokens = _as_array(tokens)
        if self.tokens.ndim != 1:
            raise ValueError(f"tokens must be 1-D, got shape {self.tokens.shape}")
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, {block_size}")
        if len(self.tokens) < block_size + 1:
            raise ValueError(
                f"corpus has {len(self.tokens)} tokens, fewer than one block + 1 ({block_size + 1}); "
                "use a smaller block_size or more text"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.position = 0  # batches drawn so far by this rank

    @property
    def num_windows(self) -> int:
        return len(self.tokens) - self.block_size  # valid starts: [0, N - T - 1]

    def batch_at(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, i])
        starts = rng.integers(0, self.num_windows, size=self.batch_size)
        return _gather(self.tokens, starts, self.block_size)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.batch_at(self.position)
        self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {"kind": self.kind, "position": self.position, "seed": self.seed, "rank": self.rank}

    def load_state_dict(self, state: dict) -> None:
        if "position" not in state:
            raise ValueError(f"sampler state has no 'position' (keys: {sorted(state)})")
        self.position = int(state["position"])

    def eval_batches(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """n fixed batches: windows evenly spaced over the whole array (same every call,
        independent of seed and position); ranks take interleaved windows."""
        total = n * self.batch_size * self.world_size
        starts = np.linspace(0, self.num_windows - 1, num=total).astype(np.int64)
        starts = starts[self.rank :: self.world_size]
        for j in range(n):
            yield _gather(self.tokens, starts[j * self.batch_size : (j + 1) * self.batch_size], self.block_size)

    def __len__(self) -> int:  # windows per epoch-equivalent, for progress displays
        return max(1, self.num_windows // (self.batch_size * self.block_size))

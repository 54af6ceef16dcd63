"""Batches and their position: batch sources (utils.training.contracts.BatchSource).

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


def gather_windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (x, y) batch of windows at `starts` (B,): x, y are (B, T) int64, y is x shifted
    by one token. Every batch source draws its windows with this (ChunkStream too)."""
    idx = starts[:, None] + np.arange(block_size + 1)[None, :]  # (B, T+1)
    win = torch.from_numpy(np.asarray(tokens[idx]).astype(np.int64))
    return win[:, :-1].contiguous(), win[:, 1:].contiguous()


class _PositionedSampler:
    """What every sampler shares: batch i is a pure function of (seed, rank, i), so the
    number of batches drawn is the whole resumable state. Subclasses define batch_at."""

    kind = "positioned"
    position = 0  # batches drawn so far by this rank

    def batch_at(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.batch_at(self.position)
        self.position += 1
        return batch

    def state_dict(self) -> dict:
        state = {"kind": self.kind, "position": self.position, "rank": self.rank}
        if getattr(self, "seed", None) is not None:
            state["seed"] = self.seed
        return state

    def load_state_dict(self, state: dict) -> None:
        if "position" not in state:
            raise ValueError(f"sampler state has no 'position' (keys: {sorted(state)})")
        self.position = int(state["position"])


class RandomBatchSampler(_PositionedSampler):
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
        return gather_windows(self.tokens, starts, self.block_size)

    def eval_batches(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """n fixed batches: windows evenly spaced over the whole array (same every call,
        independent of seed and position); ranks take interleaved windows."""
        total = n * self.batch_size * self.world_size
        starts = np.linspace(0, self.num_windows - 1, num=total).astype(np.int64)
        starts = starts[self.rank :: self.world_size]
        for j in range(n):
            yield gather_windows(self.tokens, starts[j * self.batch_size : (j + 1) * self.batch_size], self.block_size)

    def __len__(self) -> int:  # windows per epoch-equivalent, for progress displays
        return max(1, self.num_windows // (self.batch_size * self.block_size))


class SequentialBatchSampler(_PositionedSampler):
    """Consecutive non-overlapping windows in file order (wrapping at the end).

    Batch i, rank r takes windows (i * world_size + r) * B ... + B - 1 of the array;
    position i is the whole state.
    """

    kind = "sequential"

    def __init__(self, tokens, batch_size: int, block_size: int, rank: int = 0, world_size: int = 1):
        self.tokens = _as_array(tokens)
        self.batch_size, self.block_size, self.rank, self.world_size = batch_size, block_size, rank, world_size
        self.n_windows = (len(self.tokens) - 1) // block_size
        if self.n_windows < 1:
            raise ValueError(f"corpus has {len(self.tokens)} tokens, fewer than one block + 1 ({block_size + 1})")
        self.position = 0

    def batch_at(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = (i * self.world_size + self.rank) * self.batch_size
        windows = (first + np.arange(self.batch_size)) % self.n_windows
        return gather_windows(self.tokens, windows * self.block_size, self.block_size)

    def eval_batches(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for j in range(n):
            yield self.batch_at(j)


IGNORE_INDEX = -100  # targets at padding: skipped by F.cross_entropy's default ignore_index


class DocumentBatchSampler(_PositionedSampler):
    """Sample mode: one document per row, truncated to block_size or padded.

    Documents are the eos-terminated runs of `tokens` (the packed array). Each row is the
    document's first T+1 tokens; x is padded with `pad_id`, and y with IGNORE_INDEX (-100)
    where there is no real next token, so padding never enters the loss.
    Batch i, rank r: documents drawn by a generator seeded by (seed, rank, i).
    """

    kind = "documents"

    def __init__(self, tokens, eos_id: int, batch_size: int, block_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, pad_id: int | None = None):
        self.tokens = _as_array(tokens)
        ends = np.flatnonzero(self.tokens == eos_id)  # inclusive end of each document
        if len(ends) == 0 or ends[-1] != len(self.tokens) - 1:
            ends = np.append(ends, len(self.tokens) - 1)
        starts = np.concatenate([[0], ends[:-1] + 1])
        keep = ends > starts  # a document needs at least one (x, y) pair
        self.starts, self.lengths = starts[keep], (ends - starts + 1)[keep]
        if len(self.starts) == 0:
            raise ValueError("no document has two or more tokens: nothing to train on in sample mode")
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.pad_id = eos_id if pad_id is None else pad_id
        self.position = 0

    def _rows(self, docs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.block_size
        lens = np.minimum(self.lengths[docs], T + 1)  # (B,) tokens used per row
        offs = np.arange(T + 1)[None, :]  # (1, T+1)
        idx = np.minimum(self.starts[docs][:, None] + offs, len(self.tokens) - 1)
        win = np.asarray(self.tokens[idx]).astype(np.int64)  # (B, T+1)
        valid = offs < lens[:, None]
        x = np.where(valid[:, :-1], win[:, :-1], self.pad_id)
        y = np.where(valid[:, 1:], win[:, 1:], IGNORE_INDEX)
        return torch.from_numpy(x), torch.from_numpy(y)

    def batch_at(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, i])
        return self._rows(rng.integers(0, len(self.starts), size=self.batch_size))

    def eval_batches(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first documents in order (rank-interleaved), wrapping: same every call."""
        per = self.batch_size * self.world_size
        for j in range(n):
            docs = (j * per + self.rank + self.world_size * np.arange(self.batch_size)) % len(self.starts)
            yield self._rows(docs)

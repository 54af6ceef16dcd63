"""sampler.py: the BatchSource protocol, per-rank streams, resume = same next batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.training.data.sampler import (
    IGNORE_INDEX,
    DocumentBatchSampler,
    RandomBatchSampler,
    SequentialBatchSampler,
)

TOKENS = np.random.default_rng(0).integers(0, 500, size=5000).astype(np.uint16)


def _eq(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_random_batches_shape_and_shift():
    s = RandomBatchSampler(TOKENS, 4, 16, seed=1)
    x, y = s.next_batch()
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert s.state_dict()["position"] == 1


def test_resume_gives_the_uninterrupted_batch():
    run = RandomBatchSampler(TOKENS, 4, 16, seed=3)
    for _ in range(7):
        run.next_batch()
    state = run.state_dict()
    expected = [run.next_batch() for _ in range(3)]
    restarted = RandomBatchSampler(TOKENS, 4, 16, seed=3)  # a fresh process
    restarted.load_state_dict(state)
    assert all(_eq(restarted.next_batch(), e) for e in expected)


def test_ranks_draw_different_streams_and_seeds_matter():
    a = RandomBatchSampler(TOKENS, 4, 16, seed=0, rank=0, world_size=2).next_batch()
    b = RandomBatchSampler(TOKENS, 4, 16, seed=0, rank=1, world_size=2).next_batch()
    c = RandomBatchSampler(TOKENS, 4, 16, seed=1, rank=0, world_size=2).next_batch()
    assert not torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_eval_batches_identical_every_call_and_not_moving_position():
    s = RandomBatchSampler(TOKENS, 4, 16, seed=0)
    first = list(s.eval_batches(3))
    s.next_batch()
    assert len(first) == 3 and all(_eq(p, q) for p, q in zip(first, s.eval_batches(3)))
    assert s.state_dict()["position"] == 1


def test_too_small_corpus():
    with pytest.raises(ValueError, match="fewer than one block"):
        RandomBatchSampler(TOKENS[:10], 2, 16, seed=0)


def test_works_on_memmap(tmp_path):
    path = tmp_path / "t.bin"
    TOKENS.tofile(path)
    mm = np.memmap(path, dtype=np.uint16, mode="r")
    assert _eq(RandomBatchSampler(mm, 2, 8, 0).next_batch(), RandomBatchSampler(TOKENS, 2, 8, 0).next_batch())


def test_sequential_walks_in_order_and_resumes():
    s = SequentialBatchSampler(np.arange(100), 2, 10)
    x, y = s.next_batch()
    assert x[0].tolist() == list(range(10)) and x[1].tolist() == list(range(10, 20)) and y[0, -1] == 10
    state = s.state_dict()
    nxt = s.next_batch()
    r = SequentialBatchSampler(np.arange(100), 2, 10)
    r.load_state_dict(state)
    assert _eq(r.next_batch(), nxt)


def test_document_rows_truncate_and_pad():
    eos = 0
    tokens = np.array([5, 6, 7, eos, 8, 9, eos] + list(range(1, 30)) + [eos])
    s = DocumentBatchSampler(tokens, eos, batch_size=3, block_size=6, seed=0)
    x, y = s._rows(np.array([0, 1, 2]))
    assert x[0].tolist() == [5, 6, 7, eos, eos, eos] and y[0].tolist() == [6, 7, eos] + [IGNORE_INDEX] * 3
    assert y[1].tolist() == [9, eos] + [IGNORE_INDEX] * 4
    assert x[2].tolist() == [1, 2, 3, 4, 5, 6] and y[2].tolist() == [2, 3, 4, 5, 6, 7]  # truncated
    state = s.state_dict()
    nxt = s.next_batch()
    r = DocumentBatchSampler(tokens, eos, 3, 6, seed=0)
    r.load_state_dict(state)
    assert _eq(r.next_batch(), nxt)
    assert all(_eq(p, q) for p, q in zip(s.eval_batches(2), r.eval_batches(2)))


def test_every_sampler_is_a_batch_source():
    from utils.training.contracts import BatchSource

    samplers = [RandomBatchSampler(TOKENS, 4, 16, seed=0), SequentialBatchSampler(TOKENS, 4, 16),
                DocumentBatchSampler(TOKENS, 0, 4, 16, seed=0)]
    assert all(isinstance(s, BatchSource) for s in samplers)
    assert not isinstance(TOKENS, BatchSource)

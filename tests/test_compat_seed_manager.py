"""compat/seed_manager.py: the seed's set_random_seed prints the seed's lines and uses the
trainer's seeding and backend set-up (not a copy of them)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from utils.training.compat.seed_manager import set_random_seed


@pytest.fixture
def restore_determinism():
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.benchmark = before[2]


def test_fast_mode_prints_the_seeds_lines_and_repeats_draws(capsys):
    set_random_seed(42)
    a = (random.random(), np.random.rand(), torch.rand(2))
    set_random_seed(42)
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["Random seed set to 42", "   Fast mode (may have minor non-determinism from cuDNN)"]


def test_deterministic_mode_uses_the_trainers_backend_setup(capsys, monkeypatch, restore_determinism):
    import utils.training.engine.device as device

    calls = []
    real = device.configure_backends
    monkeypatch.setattr(device, "configure_backends", lambda config, dev: calls.append(config) or real(config, dev))
    set_random_seed(7, deterministic=True)
    assert [c.deterministic for c in calls] == [True]
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert capsys.readouterr().out.splitlines() == ["Random seed set to 7", "   Fully deterministic mode enabled"]


@pytest.mark.parametrize("seed", [-1, 1.5, True, "42"])
def test_a_seed_that_is_not_a_non_negative_int_is_refused(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        set_random_seed(seed)

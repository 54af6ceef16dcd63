"""Exact resume: a run stopped and restarted ends with the same parameters, bit for
bit, as one that never stopped; restoring only model and optimizer does not (so the
comparison can fail). Dropout is on, so RNG states matter."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from engine_fixtures import ArrayBatches, Zygote, make_tokens, tiny_config

from utils.training.callbacks import TrainerCallback
from utils.training.models import build_model
from utils.training.trainer import Trainer

torch.set_num_threads(1)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state, control, **kw):
        if state.step == self.step:
            raise KeyboardInterrupt


class ModelAndOptimizerOnly(Trainer):
    """The usual incomplete resume: weights and optimizer, but not the scheduler, RNG
    states or data position."""

    def _maybe_resume(self):
        path = self.checkpoints.latest_valid()
        ckpt = self.checkpoints.load(path)
        self.raw_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state.step = ckpt["step"]
        self._saved_step = ckpt["step"]


def run(run_dir, stop_at=None, cls=Trainer, steps=16, optimizer="adamw"):
    cfg = tiny_config(max_steps=steps, checkpoint_interval=5, dropout=0.1, optimizer=optimizer)
    model = build_model(cfg)
    trainer = cls(cfg, model, ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1),
                  ArrayBatches(make_tokens(seed=5), cfg.batch_size, cfg.block_size), run_dir=run_dir,
                  callbacks=[StopAt(stop_at)] if stop_at else [], progress_bar=False)
    if stop_at:
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
        return None
    trainer.train()
    return model.state_dict()


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_interrupted_run_resumes_bit_exact_and_partial_restore_diverges(tmp_path, optimizer):
    reference = run(tmp_path / "ref", optimizer=optimizer)
    run(tmp_path / "full", stop_at=7, optimizer=optimizer)
    random.seed(99)
    torch.manual_seed(99)  # the restarted process's RNGs start elsewhere
    assert same(run(tmp_path / "full", optimizer=optimizer), reference)
    run(tmp_path / "partial", stop_at=7, optimizer=optimizer)
    assert not same(run(tmp_path / "partial", cls=ModelAndOptimizerOnly, optimizer=optimizer), reference)


def test_muon_resume_needs_its_momentum(tmp_path):
    """Without Muon's momentum buffers (AdamW's state restored, Muon's fresh) the
    continuation differs: the bit-exact result above depends on saving both."""

    class WithoutMuonState(Trainer):
        def _maybe_resume(self):
            super()._maybe_resume()
            if self.state.resumed_from_step:
                self.optimizer.muon.state.clear()

    reference = run(tmp_path / "ref", optimizer="muon")
    run(tmp_path / "lost", stop_at=7, optimizer="muon")
    assert not same(run(tmp_path / "lost", cls=WithoutMuonState, optimizer="muon"), reference)


def _latest_step(ckpt_dir: Path) -> int:
    steps = [int(p.name[5:13]) for p in ckpt_dir.glob("step_*.pt")] if ckpt_dir.is_dir() else []
    return max(steps, default=0)


@pytest.mark.slow
def test_sigkilled_at_random_steps_resumes_bit_exact(tmp_path):
    """Separate processes (forked from a server that imported torch once), each
    SIGKILLed once a checkpoint at a random step exists, i.e. mid-step or mid-write."""
    steps = 40
    server = Zygote()
    try:
        server.start(str(tmp_path / "ref"), "--max-steps", str(steps))
        code, out = server.wait()
        assert code == 0, out
        reference = torch.load(tmp_path / "ref" / "final.pt", weights_only=True)

        run_dir = tmp_path / "killed"
        args = [str(run_dir), "--max-steps", str(steps), "--step-sleep", "0.01"]
        for target in sorted(random.Random(3).sample(range(4, steps - 4), 3)):
            pid = server.start(*args)
            deadline = time.monotonic() + 120
            while _latest_step(run_dir / "checkpoints") < target:
                assert time.monotonic() < deadline, "training did not reach the kill step"
                time.sleep(0.002)
            time.sleep(random.Random(target).uniform(0, 0.02))
            os.kill(pid, signal.SIGKILL)
            code, out = server.wait()
            assert code == -signal.SIGKILL, out
        server.start(*args)
        code, out = server.wait()
    finally:
        server.close()
    assert code == 0, out
    assert any(line.startswith("Resuming tiny from step") for line in out)
    assert f"STATUS completed STEP {steps} TOKENS {steps * 64}" in out
    assert same(torch.load(run_dir / "final.pt", weights_only=True), reference)

"""DDP under torchrun: the single-process context, and a real 2-process gloo run."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from utils.training.distributed import DistributedContext, pick_backend

FIXTURE = Path(__file__).with_name("engine_fixtures.py")


def test_backend_choice():
    assert pick_backend("cuda") == "nccl"
    assert pick_backend("cpu") == "gloo" and pick_backend("mps") == "gloo"


def test_without_torchrun_it_is_one_process_and_helpers_are_no_ops(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = DistributedContext.from_env(device="cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (0, 1, True, False)
    t = torch.tensor([3.0])
    assert ctx.all_reduce_mean(t) is t and t.item() == 3.0
    assert ctx.broadcast_object({"a": 1}) == {"a": 1} and ctx.all_gather_object(5) == [5]
    ctx.barrier()
    ctx.cleanup()


def test_bad_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        DistributedContext.from_env(device="cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="RANK=5"):
        DistributedContext.from_env(device="cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run_keeps_ranks_in_step(tmp_path):
    steps = 6
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(FIXTURE), str(tmp_path), "--ddp", "--accum", "2", "--max-steps", str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # accumulation 2 over 2 ranks: one micro-batch per rank per step; tokens count both ranks.
    assert f"STATUS completed STEP {steps} TOKENS {steps * 4 * 16 * 2}" in done.stdout
    r0 = torch.load(tmp_path / "final.pt", weights_only=True)
    r1 = torch.load(tmp_path / "final_rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # DDP kept the replicas identical
    ckpt = torch.load(tmp_path / "checkpoints" / f"step_{steps:08d}.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and len(ckpt["sampler"]) == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # per-rank dropout streams
    assert [s["position"] for s in ckpt["sampler"]] == [steps, steps]


@pytest.mark.slow
def test_two_process_gloo_run_with_muon_keeps_replicas_identical(tmp_path):
    """Muon orthogonalises each rank's copy of the all-reduced gradient: the same input on
    every rank, so the replicas stay bit-identical without any extra communication."""
    steps = 4
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(FIXTURE), str(tmp_path), "--ddp", "--accum", "2", "--max-steps", str(steps), "--optimizer", "muon"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"STATUS completed STEP {steps}" in done.stdout
    r0 = torch.load(tmp_path / "final.pt", weights_only=True)
    r1 = torch.load(tmp_path / "final_rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    ckpt = torch.load(tmp_path / "checkpoints" / f"step_{steps:08d}.pt", weights_only=True)
    assert set(ckpt["optimizer"]) == {"adamw", "muon"} and ckpt["optimizer"]["muon"]["state"]

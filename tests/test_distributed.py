"""DDP under torchrun: the single-process context, and real 2-process gloo runs (kept in step, exact resume after SIGKILL)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_fixtures import KILL_ENV

from utils.training.engine.distributed import (
    DistributedContext,
    init_process_group,
    pick_backend,
    world_size_from_env,
)

FIXTURE = Path(__file__).with_name("engine_fixtures.py")


def test_backend_choice():
    assert pick_backend("cuda") == "nccl"
    assert pick_backend("cpu") == "gloo" and pick_backend("mps") == "gloo"


def test_without_torchrun_it_is_one_process_and_helpers_are_no_ops(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = DistributedContext.from_env(device="cpu")
    assert world_size_from_env() == 1
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
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        world_size_from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="RANK=5"):
        DistributedContext.from_env(device="cpu")


def test_cleanup_frees_the_process_group_so_its_threads_end_before_exit(capsys):
    """A gloo group alive at interpreter exit aborts the process ("terminate called without
    an active exception": its worker threads free finished collectives under the GIL, and
    finalization ends such a thread inside a C++ destructor). cleanup() must free the group,
    which joins the threads; a holder left behind (here a live DDP wrapper) is reported.
    One process, world size 1, no clock."""
    import gc
    import weakref

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    def join() -> tuple[DistributedContext, weakref.ref]:
        init_process_group("gloo", 0, 1, store=dist.HashStore())
        return DistributedContext(backend="gloo"), weakref.ref(dist.group.WORLD)

    ctx, group = join()
    model = DDP(torch.nn.Linear(4, 4))  # constructing DDP imports torch.distributed.nn if not yet imported
    model(torch.randn(2, 4)).sum().backward()  # gradient all-reduce on the worker threads
    assert ctx.all_gather_object({"step": 1}) == [{"step": 1}]
    del model  # as the trainer does when train() ends
    ctx.cleanup()
    assert group() is None and not dist.is_initialized()
    assert "still referenced" not in capsys.readouterr().err

    ctx, group = join()
    held = DDP(torch.nn.Linear(4, 4))
    ctx.cleanup()
    assert group() is not None
    assert "rank 0: the process group is still referenced after destroy_process_group" in capsys.readouterr().err
    del held
    gc.collect()
    assert group() is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_fixture(run_dir: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(FIXTURE), str(run_dir), "--ddp", "--accum", "2", "--max-steps", "12", "--ckpt-every", "3", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _final(run_dir: Path) -> list[dict]:
    return [torch.load(run_dir / name, weights_only=True) for name in ("final.pt", "final_rank1.pt")]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_ranks_stay_in_step_and_a_sigkilled_run_resumes_bit_exact(tmp_path):
    """A 2-process gloo run keeps its replicas identical and checkpoints every rank's
    state. Then rank 0 SIGKILLs itself at the end of step 8 (checkpoint at step 6 on disk, step 9
    not yet); torchrun then tears rank 1 down. The same command again must end with the
    parameters of an uninterrupted 2-rank run, bit for bit on CPU; restoring only model
    and optimizer from the same checkpoint must not."""
    steps = 12
    done = _torchrun_fixture(tmp_path / "ref")
    assert done.returncode == 0, done.stderr[-3000:]
    # accumulation 2 over 2 ranks: one micro-batch per rank per step; tokens count both ranks.
    assert f"STATUS completed STEP {steps} TOKENS {steps * 4 * 16 * 2}" in done.stdout
    reference = _final(tmp_path / "ref")
    assert _same(*reference)  # DDP kept the replicas identical
    ckpt = torch.load(tmp_path / "ref" / "checkpoints" / f"step_{steps:08d}.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and len(ckpt["sampler"]) == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # per-rank dropout streams
    assert [s["position"] for s in ckpt["sampler"]] == [steps, steps]

    run_dir = tmp_path / "killed"
    killed = _torchrun_fixture(run_dir, env={KILL_ENV: "8"})
    assert killed.returncode != 0 and "STATUS" not in killed.stdout
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt"))
    assert ckpts[-1] == "step_00000006.pt", ckpts
    shutil.copytree(run_dir, tmp_path / "partial")

    resumed = _torchrun_fixture(run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming tiny from step 6" in resumed.stdout
    assert f"STATUS completed STEP {steps} TOKENS {steps * 4 * 16 * 2}" in resumed.stdout
    assert all(_same(a, b) for a, b in zip(_final(run_dir), reference))

    partial = _torchrun_fixture(tmp_path / "partial", "--partial-resume")
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert not _same(_final(tmp_path / "partial")[0], reference[0])

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

"""SIGKILL a training run while it writes checkpoints, again and again.

Each round forks a training process (it auto-resumes from the run folder), waits
until a checkpoint write is under way (its temp file exists), waits a random
0-`--jitter-ms` more, and sends SIGKILL. After every kill it counts the step_*.pt
files that do not load with torch.load(weights_only=True), and asks a fresh
CheckpointManager for the newest valid checkpoint, as the next resume will.

    .venv/bin/python bench/checkpoint_kill.py            # 30 kills
    .venv/bin/python bench/checkpoint_kill.py --quick    # 6 kills

The parent imports torch and transformers once and forks the runs (a fresh Python
start costs tens of seconds on a busy 2-core machine); it never runs a
multi-threaded op, so forking it is safe. POSIX only.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository root first, and bench/ off the path: a script here must never shadow a package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from utils.training.config import TrainingConfig  # noqa: E402
from utils.training.data.sampler import RandomBatchSampler  # noqa: E402
from utils.training.engine.checkpoint import CheckpointManager  # noqa: E402
from utils.training.engine.models import build_model  # noqa: E402
from utils.training.engine.trainer import Trainer  # noqa: E402

# ~1.3 M parameters: with AdamW's two moments a checkpoint is ~15 MB, so a write
# takes long enough to be hit.
CONFIG = dict(run_name="killed", n_layer=2, n_head=4, n_kv_head=2, d_model=128, block_size=32, vocab_size=4096,
              batch_size=4, max_steps=10**6, log_interval=50, eval_interval=10**6, checkpoint_interval=1,
              keep_checkpoints=2, dropout=0.0)


def child(run_dir: Path) -> None:
    torch.set_num_threads(1)
    cfg = TrainingConfig.from_dict(CONFIG)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 50_000)
    trainer = Trainer(cfg, build_model(cfg), RandomBatchSampler(tokens, cfg.batch_size, cfg.block_size, seed=0),
                      run_dir=run_dir, progress_bar=False)
    trainer.train()


def unreadable(ckpt_dir: Path) -> list[str]:
    bad = []
    for p in sorted(ckpt_dir.glob("step_*.pt")):
        try:
            torch.load(p, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError, ValueError) as e:
            bad.append(f"{p.name}: {e.__class__.__name__}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="6 kills")
    ap.add_argument("--jitter-ms", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    kills = 6 if a.quick else a.kills
    rng = random.Random(a.seed)
    torch.set_num_threads(1)
    build_model(TrainingConfig.from_dict(CONFIG))  # import transformers' model code before forking
    run_dir = Path(tempfile.mkdtemp(prefix="checkpoint-kill-"))
    ckpt_dir = run_dir / "checkpoints"
    mid_write = resumable = 0
    bad_total: list[str] = []
    steps = []
    for i in range(kills):
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            try:
                child(run_dir)
            finally:
                os._exit(0)
        before = {p.name for p in ckpt_dir.glob("step_*.pt")} if ckpt_dir.is_dir() else set()
        deadline = time.monotonic() + 120
        # Wait for a write of a new checkpoint to begin (its temp file appears), once the
        # run has at least one complete checkpoint to lose.
        def writing(before=before) -> bool:
            names = [p.name for p in ckpt_dir.iterdir()] if ckpt_dir.is_dir() else []
            done = any(n.startswith("step_") and n.endswith(".pt") for n in names)
            return done and any(".tmp-" in n and n.split(".tmp-")[0] not in before for n in names)

        while not writing():
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                print(f"round {i}: no checkpoint write started within 120 s", file=sys.stderr)
                return 1
            time.sleep(0.0005)
        time.sleep(rng.uniform(0, a.jitter_ms) / 1000)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        mid_write += any(".tmp-" in p.name for p in ckpt_dir.iterdir())  # the kill interrupted a write
        bad = unreadable(ckpt_dir)
        bad_total += bad
        latest = CheckpointManager(ckpt_dir, keep=2).latest_valid()  # also sweeps the temp file
        resumable += latest is not None
        steps.append(int(latest.name[5:13]) if latest else -1)
        print(f"kill {i + 1:2d}: newest valid step {steps[-1]:4d}, unreadable files {len(bad)}", flush=True)
    print()
    print(f"SIGKILLs:                              {kills}")
    print(f"  landed while a checkpoint was being written: {mid_write}")
    print(f"unreadable checkpoint files found:     {len(bad_total)} {bad_total if bad_total else ''}")
    print(f"resume found a valid checkpoint:       {resumable}/{kills}")
    print(f"steps reached (progress kept across kills): {steps[0]} -> {steps[-1]}")
    return 0 if not bad_total and resumable == kills else 1


if __name__ == "__main__":
    sys.exit(main())

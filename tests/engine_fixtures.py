"""Small real fixtures for the engine tests: a token array with learnable structure,
a minimal BatchSource, the tiny config every engine test shares, and a command-line
entry point that the subprocess tests (resume after SIGKILL, DDP) run.

    python tests/engine_fixtures.py RUN_DIR [--max-steps N] [--ckpt-every K] [--ddp] ...
    python tests/engine_fixtures.py --zygote     # fork server, see `zygote`
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from utils.training.config import TrainingConfig  # noqa: E402
from utils.training.engine.callbacks import TrainerCallback  # noqa: E402
from utils.training.engine.trainer import Trainer  # noqa: E402

VOCAB = 300


def make_tokens(n: int = 20_000, vocab: int = VOCAB, seed: int = 0) -> np.ndarray:
    """A noisy affine chain: t[i+1] = (7·t[i] + 3) mod vocab, re-drawn at random 10% of
    the time. Learnable in a few dozen steps, never trivially so."""
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.int64)
    out[0] = 1
    resets = rng.random(n) < 0.1
    draws = rng.integers(0, vocab, size=n)
    for i in range(1, n):
        out[i] = draws[i] if resets[i] else (7 * out[i - 1] + 3) % vocab
    return out


class ArrayBatches:
    """The BatchSource protocol over a 1-D token array: batch i is drawn from a
    generator seeded by (seed, rank, i), so the position is the whole state."""

    def __init__(self, tokens, batch_size: int, block_size: int, seed: int = 0, rank: int = 0):
        self.tokens = torch.as_tensor(tokens, dtype=torch.int64)
        self.batch_size, self.block_size, self.seed, self.rank = batch_size, block_size, seed, rank
        self.position = 0

    def _gather(self, starts: torch.Tensor):
        idx = starts[:, None] + torch.arange(self.block_size + 1)[None, :]
        win = self.tokens[idx]
        return win[:, :-1].contiguous(), win[:, 1:].contiguous()

    def next_batch(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank * 7919 + self.position)
        self.position += 1
        starts = torch.randint(0, len(self.tokens) - self.block_size - 1, (self.batch_size,), generator=g)
        return self._gather(starts)

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])

    def eval_batches(self, n: int):
        span = len(self.tokens) - self.block_size - 1
        for j in range(n):
            yield self._gather(torch.linspace(0, span, self.batch_size * n).long()[j::n])


def tiny_config(**overrides) -> TrainingConfig:
    """1 layer, 32 wide, vocab 300, 16-token blocks: a step takes milliseconds."""
    base = dict(run_name="tiny", n_layer=1, n_head=2, n_kv_head=2, d_model=32, block_size=16,
                vocab_size=VOCAB, batch_size=4, max_steps=12, learning_rate=3e-3, warmup_ratio=0.1,
                log_interval=2, eval_interval=4, eval_batches=2, checkpoint_interval=3, keep_checkpoints=2,
                dropout=0.1)
    base.update(overrides)
    return TrainingConfig.from_dict(base)


# Fault injection for the kill tests: the process SIGKILLs itself at the end of this
# step (before that step's checkpoint), a known point instead of a race with a timer.
KILL_ENV = "ENGINE_SIGKILL_AT_STEP"


class SigkillAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state, control, **kw):
        if state.step == self.step:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


class ModelAndOptimizerOnly(Trainer):
    """The usual incomplete resume: weights and optimizer, but not the scheduler, RNG
    states or data position."""

    def _maybe_resume(self):
        path = self.checkpoints.latest_valid()
        ckpt = self.checkpoints.load(path)
        self.raw_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state.step = ckpt["step"]
        self.state.last_save_step = ckpt["step"]


def main(argv=None) -> int:
    from utils.training.engine.distributed import DistributedContext
    from utils.training.engine.models import build_model

    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--ckpt-every", type=int, default=1)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--ddp", action="store_true")
    p.add_argument("--step-sleep", type=float, default=0.0)
    p.add_argument("--partial-resume", action="store_true",
                   help="restore only model and optimizer (the control that must diverge)")
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--trackio", metavar="DIR", help="also log to a local Trackio project in DIR (TrackioSink)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    dist = DistributedContext.from_env(device="cpu") if a.ddp else None
    rank = dist.rank if dist else 0
    cfg = tiny_config(max_steps=a.max_steps, checkpoint_interval=a.ckpt_every, keep_checkpoints=2,
                      gradient_accumulation_steps=a.accum, log_interval=5, eval_interval=10,
                      optimizer=a.optimizer)
    micro, _ = cfg.rank_batch(dist.world_size if dist else 1)
    model = build_model(cfg)
    callbacks = []
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    if kill_at:
        callbacks.append(SigkillAt(kill_at))
    if a.trackio:
        from utils.training.tracking.metrics import MetricsTracker
        from utils.training.tracking.trackio_sink import TrackioSink

        callbacks.insert(0, MetricsTracker([TrackioSink("fixture", cfg.run_name, cfg, a.trackio)]))
    if a.step_sleep:
        import time

        class Slow(TrainerCallback):  # widens the window in which a SIGKILL lands mid-step
            def on_step_end(self, state, control, **kw):
                time.sleep(a.step_sleep)

        callbacks.append(Slow())
    cls = ModelAndOptimizerOnly if a.partial_resume else Trainer
    trainer = cls(cfg, model, ArrayBatches(make_tokens(), micro, cfg.block_size, seed=1, rank=rank),
                  ArrayBatches(make_tokens(seed=5), micro, cfg.block_size, rank=rank),
                  run_dir=a.run_dir, dist=dist, callbacks=callbacks, progress_bar=False)
    result = trainer.train()
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(final, Path(a.run_dir) / ("final.pt" if rank == 0 else f"final_rank{rank}.pt"))
    if rank == 0:
        print(f"STATUS {result.status} STEP {result.state.step} TOKENS {result.state.tokens_seen}", flush=True)
    if dist:
        dist.cleanup()
    return 0


def zygote() -> None:
    """A fork server for the kill tests: it imports torch and transformers once (tens
    of seconds on a busy 2-core machine), then forks one training process per line
    of arguments on stdin. Protocol on stdout: "PID n" when a child starts, the
    child's own prints, "EXIT n code" when it ends (code -9 after SIGKILL).
    The parent never runs a multi-threaded op, so forking it is safe."""
    import traceback

    from utils.training.engine.models import build_model
    from utils.training.engine.trainer import Trainer  # noqa: F401 - imported for the children

    torch.set_num_threads(1)
    build_model(tiny_config())  # pulls in transformers' lazily imported model code
    print("READY", flush=True)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = main(line.split())
            except BaseException:  # noqa: BLE001 - a child must never return into the server loop
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                os._exit(code)
        print(f"PID {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


class Zygote:
    """The test side of `zygote`."""

    def __init__(self):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), "--zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self._expect("READY")

    def _expect(self, prefix: str) -> tuple[str, list[str]]:
        seen = []
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line.strip(), seen
            seen.append(line.rstrip("\n"))
        raise RuntimeError(f"fork server ended before {prefix!r}; output: {seen[-20:]}")

    def start(self, *args: str) -> int:
        self.proc.stdin.write(" ".join(args) + "\n")
        self.proc.stdin.flush()
        return int(self._expect("PID ")[0].split()[1])

    def wait(self) -> tuple[int, list[str]]:
        line, output = self._expect("EXIT ")
        return int(line.split()[2]), output

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        zygote()
        sys.exit(0)
    sys.exit(main())

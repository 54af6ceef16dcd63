"""The checks of issue 25 that need a real GPU, in one short script (about 2 minutes on a
T4-class card; the budget of a lent GPU is 15 minutes, all tries together).

1. probe:    batch_size="auto" for a preset on this GPU: the chosen micro-batch and
             accumulation, the probe's measured peak (torch.cuda.max_memory_allocated)
             against the summary card's estimate for that micro-batch.
2. back-off: a real out-of-memory error mid-run (the allocator capped with
             torch.cuda.set_per_process_memory_fraction after step N): the step is redone
             with half the micro-batch, and the losses after it match a run started with
             it (relative difference printed).
3. sampler:  SystemSampler on this GPU through real NVML: one reading, and the cost of a
             reading in ms against the step time (goal < 0.5%).

Every number printed comes from this run. Writes results to $OUT/gpu_checks.json when
OUT is set.

    .venv/bin/python bench/gpu_checks.py [--preset fast] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils.training.config import TrainingConfig  # noqa: E402
from utils.training.engine.batch_size import DeviceOps, choose_batch  # noqa: E402
from utils.training.engine.callbacks import TrainerCallback  # noqa: E402
from utils.training.engine.memory import estimate_training_memory_gb  # noqa: E402
from utils.training.engine.models import build_model  # noqa: E402
from utils.training.engine.trainer import Trainer  # noqa: E402
from utils.training.tracking.system_monitor import SystemSampler  # noqa: E402

GIB = 2**30


class Losses(TrainerCallback):
    def __init__(self, cap_after: int | None = None, fraction: float = 1.0):
        self.by_step, self.cap_after, self.fraction = {}, cap_after, fraction

    def on_step_end(self, state, control, **kw):
        if self.cap_after is not None and state.step == self.cap_after:
            torch.cuda.set_per_process_memory_fraction(self.fraction)  # the next step no longer fits

    def on_log(self, state, control, logs, **kw):
        self.by_step[state.step] = logs["train_loss"]


def batches(cfg, micro):
    import numpy as np

    from utils.training.data.sampler import RandomBatchSampler

    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, 2_000_000)
    return RandomBatchSampler(ids, micro, cfg.block_size, seed=1)


def train(cfg, micro_split: int, cap: Losses, run_dir):
    torch.manual_seed(0)
    trainer = Trainer(cfg, build_model(cfg), batches(cfg, cfg.rank_batch(1)[0]), None, run_dir=run_dir,
                      callbacks=[cap], progress_bar=False)
    if micro_split > 1:  # a run started with the smaller pass
        trainer.state.micro_batch = cfg.rank_batch(1)[0] // micro_split
    t0 = time.perf_counter()
    result = trainer.train()
    torch.cuda.set_per_process_memory_fraction(1.0)
    return trainer, result, (time.perf_counter() - t0) / max(1, result.state.step)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        # Skipped, not failed: `make bench` runs every script on whatever machine it is on.
        print("gpu_checks.py: skipped, no CUDA GPU here (the CPU tests drive the same logic through the DeviceOps seam)")
        return
    dev = torch.device("cuda")
    out: dict = {"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__}

    # 1. probe
    cfg = TrainingConfig.preset(args.preset, batch_size="auto", max_steps=args.steps, log_interval=1,
                                eval_interval=10**6, checkpoint_interval=10**6, sample_interval=0, vocab_size=4096)
    model = build_model(cfg).to(dev)
    choice = choose_batch(cfg, model, DeviceOps(dev), world_size=1)
    n_params = sum(p.numel() for p in model.parameters())
    resolved = cfg.replace(**choice.config_values())
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    estimate = estimate_training_memory_gb(resolved, n_params, precision)
    out["probe"] = {**choice.to_dict(), "estimate_gb": estimate}
    print(f"probe: {choice.note}; estimate {estimate:.2f} GiB vs measured peak {choice.peak_memory_gb} GiB")
    del model
    torch.cuda.empty_cache()

    # 2. back-off: the step after step 3 runs under a memory cap the chosen micro-batch exceeds
    run = resolved.replace(batch_size=choice.micro_batch, gradient_accumulation_steps=choice.accumulation)
    with tempfile.TemporaryDirectory() as tmp:
        if choice.micro_batch % 2 == 0 and choice.peak_memory_gb:
            total = torch.cuda.get_device_properties(dev).total_memory / GIB
            capped = Losses(cap_after=3, fraction=min(0.95, 0.8 * choice.peak_memory_gb / total))
            backed, result, _ = train(run, 1, capped, Path(tmp) / "backoff")
            small = Losses()
            _, _, step_s = train(run, 2, small, Path(tmp) / "small")
            rel = max(abs(capped.by_step[s] - small.by_step[s]) / abs(small.by_step[s])
                      for s in capped.by_step if s > 3 and s in small.by_step)
            out["backoff"] = {"micro_batch_after": backed.backoff.micro_batch, "backoffs": backed.backoff.backoffs,
                              "max_rel_loss_diff_after": rel, "status": result.status}
            print(f"back-off: {backed.backoff.backoffs} back-off(s), micro-batch now {backed.backoff.micro_batch}; "
                  f"losses after it vs a run started with it: max relative difference {rel:.2e}")
        else:
            step_s = float("nan")
            print("back-off: skipped (the chosen micro-batch is odd or nothing was measured)")

    # 3. sampler on real NVML
    sampler = SystemSampler(str(dev), interval_s=3600.0)
    sampler._open()
    t0 = time.perf_counter()
    reading = {}
    for _ in range(20):
        reading = sampler.sample_once()
    each = (time.perf_counter() - t0) / 20
    sampler.stop()
    out["sampler"] = {"reading": reading, "ms_per_reading": 1000 * each,
                      "pct_of_step_at_5s": 100 * each / 5.0 if step_s == step_s else None, "step_s": step_s}
    print(f"sampler: {reading}; {1000 * each:.2f} ms per reading = {100 * each / 5.0:.4f}% of wall time at 5 s")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_checks.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Speedrun: the `speedrun` preset on one GPU: MFU, tokens/s and minutes to a fixed val bits/byte.

The preset (utils/training/presets.py, docs/speedrun.md) is GPT-2-124M's shape with
modded-nanogpt's recipe (Muon, our `nanogpt` family with QK-norm, ReLU², zero-initialised
projections, untied head, logit soft-capping, value embeddings, U-net skips), bf16,
compiled, on the built-in ICD-10-CM corpus. One run, the library's own Trainer, and three
figures:

- tokens/s: the steady training rate, the median over the log windows after the first
  (the trainer's per-log `tokens_per_sec`: compile and evaluation excluded; the first
  window holds the warm-up after compiling).
- MFU: that rate x FLOPs per token (engine.models.flops_per_token: 6N + 12·L·H·Q·T, PaLM
  appendix B; N the weights that do a matmul per token, the untied head included, the
  embedding and value-embedding lookups not) over the GPU's peak dense bf16 FLOP/s, read
  from the one peak table, tracking.metrics.PEAK_FLOPS, which cites NVIDIA's datasheets
  (dense bf16 TFLOPS: H100 SXM 989, H100 PCIe 756, H200 989, A100 312, L4 121; T4 65
  fp16, it has no bf16; the H100/H200/L4 datasheets print the 2:4-sparse figure, halved
  there). A GPU not in the table gets "n/a (unknown peak)", never a guessed figure; a CPU
  gets "n/a (cpu)".
- minutes to TARGET_BPB val bits/byte: training time (compile and evaluation excluded)
  until the first evaluation at or below the target, interpolated between evaluations;
  first the same for REFERENCE_BPB, the CPU model's quality, so a run that misses the
  target still times something.

The last lines are machine-readable:

    speedrun device NAME                 (torch.cuda.get_device_name; cpu)
    speedrun compile_s S                 (the compiling first step, not counted anywhere else)
    speedrun peak_memory_gib G           (n/a (cpu) off CUDA)
    speedrun flops_per_token F
    speedrun tokens_per_sec T
    speedrun mfu M                       (a fraction of the peak; n/a (cpu); n/a (unknown peak: ...))
    speedrun minutes_to_bpb 0.667 MIN    (REFERENCE_BPB)
    speedrun minutes_to_bpb TARGET MIN   (MIN is not-reached when no evaluation got there)

    .venv/bin/python bench/speedrun.py                              # the preset, on the GPU
    .venv/bin/python bench/speedrun.py --set compile=off --steps 60 # overrides
    .venv/bin/python bench/speedrun.py --smoke                      # tiny shape, a few steps: any CPU (--quick)

Writes its figures and the val curve to $OUT/speedrun.json (--label names it) when OUT is
set. Peak memory is torch.cuda.max_memory_allocated over the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository root first, and bench/ off the path: a script here must never shadow a package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from utils.training.config import ConfigError, TrainingConfig, parse_overrides  # noqa: E402
from utils.training.engine.callbacks import TrainerCallback, due  # noqa: E402
from utils.training.tracking.metrics import mfu_pct, peak_flops  # noqa: E402

# Val bits/byte the run must reach, on the built-in corpus's val split. 0.55 is 18% below
# the best this project has measured on that corpus (0.667: `make run`, the cpu preset's
# 1M-parameter model after 0.93 epochs; docs/results.md): a 116M-parameter model has to
# learn well past the CPU model to get there, so the figure measures training, not the
# warm-up, yet it stays above where 6 epochs of a GPT-2-class model should end. If a GPU
# run ends above it, the run prints its best value: set --target-bpb from that once, and
# record both in docs/results.md.
TARGET_BPB = 0.55
# The quality of the cpu preset's `make run` (the same figure): printed before the target.
REFERENCE_BPB = 0.667
# --smoke: the preset's family, options, optimizer and precision at a toy shape, a few
# steps, compile off (compiling takes minutes on a CPU): proves the command on any machine.
SMOKE = dict(n_layer=2, n_head=2, n_kv_head=2, d_model=64, block_size=64, vocab_size=512, batch_size=8,
             gradient_accumulation_steps=1, max_steps=8, compile="off", log_interval=2, eval_interval=4,
             eval_batches=1, checkpoint_interval=1000)


class Clock(TrainerCallback):
    """Training seconds at each evaluation (evaluation excluded; the compiling step still
    in: the caller subtracts compile_s) and each log window's tokens/s. `sync` waits for
    the device's queued work: called only at evaluation steps, so no extra host sync."""

    def __init__(self, eval_interval: int, sync):
        self.eval_interval, self.sync = eval_interval, sync
        self.curve: list[tuple[int, float, float]] = []  # (step, val_bpb, training seconds)
        self.window_tps: list[float] = []
        self.train_s, self._t = 0.0, None

    def on_train_begin(self, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, state, control, **kw):
        if due(state.step, self.eval_interval) or state.step >= state.max_steps:
            self.sync()
            now = time.perf_counter()
            self.train_s += now - self._t
            self._t = now

    def on_log(self, state, control, logs=None, **kw):
        if logs and logs.get("tokens_per_sec"):
            self.window_tps.append(float(logs["tokens_per_sec"]))

    def on_evaluate(self, state, control, metrics=None, **kw):
        self.curve.append((state.step, float(metrics["val_bpb"]), self.train_s))
        print(f"  step {state.step} val bpb {metrics['val_bpb']:.4f}", file=sys.stderr, flush=True)
        self._t = time.perf_counter()  # the evaluation is not training time


def steady_tokens_per_sec(window_tps: list[float]) -> float:
    """The median log window after the first (warm-up after compiling); all when fewer than 2."""
    if not window_tps:
        return float("nan")
    return statistics.median(window_tps[1:] if len(window_tps) > 1 else window_tps)


def seconds_to_reach(curve: list[tuple[int, float, float]], target: float) -> float | None:
    """Training seconds at which val_bpb first reaches `target` (linear between evaluations,
    from the start of training when the first evaluation is already there); None if never."""
    prev_s, prev_b = 0.0, None
    for _, bpb, seconds in curve:
        if bpb <= target:
            if prev_b is None:
                return seconds
            return prev_s + (seconds - prev_s) * (prev_b - target) / (prev_b - bpb)
        prev_s, prev_b = seconds, bpb
    return None


def mfu_text(tokens_per_sec: float, flops_per_token: float, device_name: str) -> tuple[float | None, str]:
    """(MFU as a fraction of the GPU's peak dense bf16 FLOP/s, or None; the printed value).
    device_name: runtime.gpu_name's answer ("" or "cpu": no GPU)."""
    if not device_name or device_name.lower().startswith("cpu"):
        return None, "n/a (cpu)"
    peak, source, estimated = peak_flops(device_name)
    if peak is None:
        return None, f"n/a ({source})"
    if estimated:  # the tracker's fallback figure: a benchmark prints no guessed MFU
        return None, f"n/a (unknown peak: {device_name!r} is not in tracking.metrics.PEAK_FLOPS)"
    if tokens_per_sec != tokens_per_sec:
        return None, "n/a (no timed log window)"
    value = mfu_pct(tokens_per_sec, flops_per_token, peak) / 100.0
    return value, f"{value:.3f}"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def build_config(preset: str, overrides: dict, steps: int, smoke: bool) -> TrainingConfig:
    """The preset with --smoke's toy shape, then --set, then --steps (ConfigError if invalid)."""
    values = {**(SMOKE if smoke else {}), **overrides}
    if steps:
        values["max_steps"] = steps
    return TrainingConfig.preset(preset, **values)


def run(cfg: TrainingConfig, workspace: str, targets: list[float], run_dir: str) -> dict:
    """Train `cfg` once in the empty folder `run_dir` (never a resume), the data prepared or
    read back under `workspace`; -> every figure printed (also what $OUT/LABEL.json holds)."""
    import torch

    from utils.training.data.pipeline import prepare_data
    from utils.training.engine.batch_size import DeviceOps
    from utils.training.engine.device import resolve_device
    from utils.training.engine.models import build_model, count_parameters, flops_per_token
    from utils.training.engine.trainer import Trainer
    from utils.training.runtime import gpu_name

    device = resolve_device()
    name = gpu_name(device) or device.type
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    data = prepare_data(cfg, workspace)
    cfg = cfg.replace(vocab_size=data.vocab_size)
    model = build_model(cfg)
    counts = count_parameters(model)
    fpt = flops_per_token(cfg, counts["non_embedding"])
    train_tokens = int(data.stats["train_tokens"])
    print(f"speedrun: {cfg.n_layer} x {cfg.d_model} {cfg.model_family}, block {cfg.block_size}, vocab "
          f"{cfg.vocab_size} ({data.bytes_per_token:.2f} bytes/token), {counts['total'] / 1e6:.1f}M parameters "
          f"({counts['non_embedding'] / 1e6:.1f}M non-embedding), {fpt:.3e} FLOPs/token; {cfg.max_steps} steps x "
          f"{cfg.tokens_per_step:,} tokens = {cfg.max_steps * cfg.tokens_per_step / train_tokens:.1f} epochs of "
          f"{train_tokens:,}; {cfg.optimizer}, {cfg.precision}, compile {cfg.compile}; on {name}, torch "
          f"{torch.__version__}; data ready in {time.perf_counter() - t0:.0f} s", flush=True)
    ops = DeviceOps(device)
    ops.reset_peak()
    clock = Clock(cfg.eval_interval, sync)
    trainer = Trainer(cfg, model, data.train, data.val, run_dir=run_dir,
                      callbacks=[clock], bytes_per_token=data.bytes_per_token, progress_bar=False,
                      run_info={"train_tokens": train_tokens})
    result = trainer.train()
    compile_s = float(getattr(trainer, "compile_s", 0.0))
    curve = [(step, bpb, max(0.0, s - compile_s)) for step, bpb, s in clock.curve]
    tps = steady_tokens_per_sec(clock.window_tps)
    mfu, mfu_shown = mfu_text(tps, fpt, "" if device.type == "cpu" else name)
    reached = {t: seconds_to_reach(curve, t) for t in targets}  # training seconds, or None
    return {
        "device": name, "status": result.status, "steps": result.state.step, "flops_per_token": fpt,
        "parameters": counts["total"], "non_embedding_parameters": counts["non_embedding"],
        "tokens_per_step": cfg.tokens_per_step, "train_tokens": train_tokens,
        "epochs": result.state.tokens_seen / train_tokens, "tokens_per_sec": tps, "window_tokens_per_sec": clock.window_tps,
        "mfu": mfu, "mfu_text": mfu_shown, "compile_s": compile_s, "train_s": curve[-1][2] if curve else None,
        "peak_memory_gib": ops.max_memory_allocated() / 2**30 or None,
        "minutes_to_bpb": [(t, None if reached[t] is None else reached[t] / 60.0) for t in targets],
        "final_val_bpb": curve[-1][1] if curve else None, "best_val_bpb": min((b for _, b, _ in curve), default=None),
        "curve": curve, "config": cfg.to_dict(),
    }


def report(r: dict) -> None:
    """The human lines, then the machine-readable ones (last)."""
    if r["curve"]:
        best_step, best, _ = min(r["curve"], key=lambda c: c[1])
        bpb = f"val bpb final {r['final_val_bpb']:.4f}, best {best:.4f} at step {best_step}"
    else:
        bpb = "no evaluation"
    print(f"status {r['status']} after {r['steps']} steps ({r['epochs']:.1f} epochs); training "
          f"{r['train_s'] or 0:.1f} s (compile {r['compile_s']:.1f} s and evaluations not counted); {bpb}; "
          "log windows tokens/s: " + ", ".join(f"{t:,.0f}" for t in r["window_tokens_per_sec"]))
    memory = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] else f"n/a ({r['device']})"
    print(f"speedrun device {r['device']}")
    print(f"speedrun compile_s {r['compile_s']:.1f}")
    print(f"speedrun peak_memory_gib {memory}")
    print(f"speedrun flops_per_token {r['flops_per_token']:.4g}")
    print(f"speedrun tokens_per_sec {r['tokens_per_sec']:.0f}")
    print(f"speedrun mfu {r['mfu_text']}")
    for target, minutes in r["minutes_to_bpb"]:
        print(f"speedrun minutes_to_bpb {target:g} {'not-reached' if minutes is None else f'{minutes:.3f}'}")
    sys.stdout.flush()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="speedrun", help="the preset to run (default: speedrun)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeatable)")
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps; 0 = the preset's")
    ap.add_argument("--target-bpb", type=float, default=TARGET_BPB, help=f"val bits/byte to reach (default {TARGET_BPB}; "
                    f"{REFERENCE_BPB}, the cpu preset's, is timed first)")
    ap.add_argument("--smoke", "--quick", action="store_true",
                    help="a toy shape, a few steps, compile off: runs on any CPU (--quick: make bench's name)")
    ap.add_argument("--workspace", default="", help="keep the prepared data here (default: a temporary folder): "
                    "runs sharing one make the tokenizer and token files once; each run trains afresh")
    ap.add_argument("--label", default="speedrun", help="$OUT/LABEL.json holds this run's figures (default: speedrun)")
    a = ap.parse_args(argv)
    if a.preset == "speedrun" and not a.smoke and not cuda_available():
        print("speedrun: no CUDA GPU here, and the speedrun preset (116M parameters, 6.6M tokens, bf16, compiled) "
              "would take hours on a CPU: --smoke runs the same command at a toy shape", file=sys.stderr)
        return 2
    try:
        cfg = build_config(a.preset, parse_overrides(a.set), a.steps, a.smoke)
    except ConfigError as e:
        print(f"speedrun: preset {a.preset!r} with these settings is not a valid config here:\n{e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:  # the run's checkpoint: dropped with it
        result = run(cfg, a.workspace or tmp, [REFERENCE_BPB, a.target_bpb], str(Path(tmp) / "run"))
    if a.smoke:
        print("(smoke run: a toy shape; its figures prove the command, they measure nothing)")
    report(result)
    if os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / f"{a.label}.json"
        out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

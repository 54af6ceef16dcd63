"""Time to quality: how long each recipe needs to reach AdamW's validation bits per byte.

Same corpus (built-in ICD-10-CM), same BPE tokenizer, same model shape and budget: the
`cpu` preset's (600 optimizer steps of 16 x 128 tokens), 3 seeds (model init and batch
order; the data split and tokenizer stay those of seed 42). Recipes: AdamW, Muon, and
Muon with torch.compile where compile=auto would compile (a CUDA GPU of capability >= 8.0;
--compile on adds it anywhere: on 2 CPU cores it was measured not to pay, see README).

Robust to a shared, busy machine: quality is measured against optimizer steps, which
no load can change (one run per seed and recipe; --jobs runs them in parallel
processes). Time is a step count times a median step time, and the step times come from
one more run in which the recipes take turns step by step (threads pass a baton at every
step end, as in loop_overhead.py), so every recipe sees the same load within
milliseconds; evaluations are not timed, and a compiled recipe's compile time is
printed apart and not counted.

Printed, per recipe: final val bits/byte (mean and spread over seeds), step time
relative to AdamW, and the time to reach AdamW's final val bits/byte (same seed, linear
interpolation between evaluations) as a fraction of AdamW's time. The last line is the
ratio for the second recipe, e.g. `time_to_quality muon/adamw 0.71 (3 seeds)`.

    .venv/bin/python bench/time_to_quality.py --jobs 6   # the full run (~20 min on 2 idle cores)
    .venv/bin/python bench/time_to_quality.py --quick    # 1 seed, 60 steps (make bench)
    .venv/bin/python bench/time_to_quality.py --recipe muon01 optimizer=muon muon_lr=0.01 ...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository root first, and bench/ off the path: a script here must never shadow a package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from bench._baton import Baton  # noqa: E402  (the root is on sys.path; bench/ a namespace package)
from utils.training.config import TrainingConfig, parse_overrides  # noqa: E402
from utils.training.data.pipeline import prepare_data  # noqa: E402
from utils.training.data.sampler import RandomBatchSampler  # noqa: E402
from utils.training.engine.callbacks import TrainerCallback  # noqa: E402
from utils.training.engine.device import resolve_compile, resolve_device  # noqa: E402
from utils.training.engine.models import build_model  # noqa: E402
from utils.training.engine.trainer import Trainer  # noqa: E402

RECIPES = {
    "adamw": {"optimizer": "adamw", "compile": "off"},
    "muon": {"optimizer": "muon", "compile": "off"},
    "muon+compile": {"optimizer": "muon", "compile": "on"},
}
DATA_SEED = 42  # the split and tokenizer: the same for every run


class Recorder(TrainerCallback):
    """Passes the baton at every step end; keeps (step, val_bpb) of every evaluation."""

    def __init__(self, baton, name):
        self.baton, self.name, self.curve = baton, name, []

    def on_step_end(self, state, control, **kw):
        self.baton.step_done(self.name)

    def on_evaluate(self, state, control, metrics=None, **kw):
        self.curve.append((state.step, metrics["val_bpb"]))
        if state.step % 200 == 0:  # progress, off the printed results
            print(f"  {self.name} step {state.step} val bpb {metrics['val_bpb']:.4f}", file=sys.stderr, flush=True)
        self.baton.restart_clock()


def run_seed(recipes, base, data, seed, workdir, tag="q"):
    """All recipes of one seed, interleaved step by step. -> {name: result dict}."""
    baton = Baton(recipes)
    out = {}

    def target(name):
        try:
            cfg = base.replace(**recipes[name], random_seed=seed, run_name=f"{tag}-{name.replace('+', '-')}-s{seed}")
            model = build_model(cfg)
            train = RandomBatchSampler(data.train.tokens, cfg.batch_size, cfg.block_size, seed)
            val = RandomBatchSampler(data.val.tokens, cfg.batch_size, cfg.block_size, DATA_SEED)
            rec = Recorder(baton, name)
            trainer = Trainer(cfg, model, train, val, run_dir=Path(workdir) / cfg.run_name, callbacks=[rec],
                              bytes_per_token=data.bytes_per_token, progress_bar=False)
            baton.start(name)
            result = trainer.train()
            out[name] = {"curve": rec.curve, "compile_s": getattr(trainer, "compile_s", 0.0),
                         "status": result.status}
        finally:
            baton.finish(name)

    threads = [threading.Thread(target=target, args=(n,)) for n in recipes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in recipes:
        if name not in out:
            raise RuntimeError(f"recipe {name} failed in seed {seed} (see the traceback above)")
        times = baton.times[name]  # the first two steps (setup; compiling, when compiled) are dropped
        out[name]["step_s"] = statistics.median(times[2:] if len(times) > 4 else times)
    return out


_SHARED = None  # (base config, prepared data, workspace, threads), inherited by forked seed workers


def _quality_job(seed, name, recipe):
    base, data, ws, threads = _SHARED
    if threads:
        torch.set_num_threads(threads)
    t = time.perf_counter()
    return run_seed({name: recipe}, base, data, seed, ws)[name], time.perf_counter() - t


def steps_to_reach(curve, target):
    """First step (interpolated between evaluations) at which val_bpb <= target; None if never."""
    prev = None
    for step, bpb in curve:
        if bpb <= target:
            if prev is None:
                return float(step)
            s0, b0 = prev
            return s0 + (step - s0) * (b0 - target) / (b0 - bpb)
        prev = (step, bpb)
    return None


def spread(xs):
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 60 steps, no compiled recipe (about 2 min)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps; 0 = the preset's")
    ap.add_argument("--eval-interval", type=int, default=25)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--recipe", nargs="+", action="append", metavar=("NAME", "KEY=VALUE"),
                    help=f"a recipe: a name from {', '.join(RECIPES)}, or a new name followed by config "
                         "overrides; the first is the reference")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    ap.add_argument("--jobs", type=int, default=1, help="quality runs in this many processes at once")
    ap.add_argument("--timing-steps", type=int, default=40, help="steps of each recipe in the paired timing run")
    ap.add_argument("--timing-only", action="store_true", help="only the paired timing run (step times, compile)")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                    help="add the muon+compile recipe: auto = where compile=auto would compile (CUDA >= 8.0)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.recipe:
        recipes = {r[0]: {**RECIPES.get(r[0], {"compile": "off"}), **parse_overrides(r[1:])} for r in a.recipe}
    else:
        device = resolve_device()
        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        with_compile = a.compile == "on" or (a.compile == "auto" and resolve_compile("auto", device.type, capability))
        recipes = {k: v for k, v in RECIPES.items() if v["compile"] == "off" or (with_compile and not a.quick)}
    seeds = [1, 2, 3][: 1 if a.quick else a.seeds] if a.seeds <= 3 else list(range(1, a.seeds + 1))
    steps = a.steps or (60 if a.quick else 0)
    eval_interval = 10 if a.quick else a.eval_interval
    base = TrainingConfig.preset(a.preset, random_seed=DATA_SEED)
    overrides = dict(eval_interval=eval_interval, sample_interval=0, checkpoint_interval=10**9, log_interval=50)
    if steps:
        overrides["max_steps"] = steps
    with tempfile.TemporaryDirectory() as ws:
        t0 = time.perf_counter()
        data = prepare_data(base, ws)
        base = base.replace(vocab_size=data.vocab_size, **overrides)
        print(f"preset {a.preset}: {base.n_layer} layers x {base.d_model}, {base.model_family}, vocab "
              f"{base.vocab_size}, {base.max_steps} steps of {base.tokens_per_step} tokens, eval every "
              f"{eval_interval} steps; data ready in {time.perf_counter() - t0:.0f} s; torch threads "
              f"{torch.get_num_threads()}", flush=True)
        results = {name: [None] * len(seeds) for name in recipes}
        jobs = [(j, seed, name) for j, seed in enumerate(seeds) for name in recipes]

        def report(j, name, res, seconds):
            results[name][j] = res
            print(f"seed {seeds[j]} {name}: val bpb {res['curve'][-1][1]:.4f} ({seconds:.0f} s)", flush=True)

        timing_steps = min(a.timing_steps, 20) if a.quick else a.timing_steps
        timing_base = base.replace(max_steps=timing_steps, eval_interval=10**6)
        # A recipe may shorten its own budget (max_steps): its step time is still a timing-run step.
        timed = {n: {k: v for k, v in r.items() if k != "max_steps"} for n, r in recipes.items()}
        if a.timing_only:
            timing = run_seed(timed, timing_base, data, seeds[0], ws, tag="t")
            for n in recipes:
                extra = f", compile {timing[n]['compile_s']:.0f} s" if timing[n]["compile_s"] else ""
                print(f"{n}: median step {1000 * timing[n]['step_s']:.0f} ms "
                      f"({timing[n]['step_s'] / timing[next(iter(recipes))]['step_s']:.2f}x){extra}")
            return 0
        if a.jobs > 1:  # quality runs in parallel processes, the paired timing run here meanwhile
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            global _SHARED
            _SHARED = (base, data, ws, a.threads)
            with ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("fork")) as pool:
                futures = [(j, name, pool.submit(_quality_job, seeds[j], name, recipes[name]))
                           for j, _, name in jobs]
                timing = run_seed(timed, timing_base, data, seeds[0], ws, tag="t")
                for j, name, f in futures:
                    report(j, name, *f.result())
        else:
            timing = run_seed(timed, timing_base, data, seeds[0], ws, tag="t")
            for j, seed, name in jobs:
                t = time.perf_counter()
                res = run_seed({name: recipes[name]}, base, data, seed, ws)[name]
                report(j, name, res, time.perf_counter() - t)
        ms = "  ".join(f"{n} {1000 * timing[n]['step_s']:.0f} ms" for n in recipes)
        print(f"median step time, recipes interleaved step by step over {timing_steps} steps each: {ms}", flush=True)
    ref = next(iter(recipes))
    print(f"\n{'recipe':<16}{'val bpb at budget':>22}{'step time':>11}{'time to ' + ref + ' final bpb':>28}")
    ratios = {}
    for name, runs in results.items():
        finals = [r["curve"][-1][1] for r in runs]
        step_ratio = timing[name]["step_s"] / timing[ref]["step_s"]
        fractions = []
        for j, r in enumerate(runs):
            reached = steps_to_reach(r["curve"], results[ref][j]["curve"][-1][1])
            fractions.append(None if reached is None else reached / base.max_steps * step_ratio)
        got = [f for f in fractions if f is not None]
        ratios[name] = (statistics.mean(got) if len(got) == len(fractions) else None, len(runs))
        ttq = (spread(got) if len(got) == len(fractions) else f"not reached in {len(fractions) - len(got)} seed(s)")
        compile_s = [r["compile_s"] for r in runs + [timing[name]] if r["compile_s"]]
        extra = f"  (+ compile {statistics.mean(compile_s):.0f} s, not counted)" if compile_s else ""
        print(f"{name:<16}{spread(finals):>22}{step_ratio:>10.2f}x{ttq:>28}{extra}")
    names = list(recipes)[1:]
    for name in names[1:] + names[:1]:  # the second recipe's ratio is the last line
        value, n = ratios[name]
        shown = f"{value:.2f}" if value is not None else "not-reached"
        print(f"time_to_quality {name}/{ref} {shown} ({n} seed{'s' if n != 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

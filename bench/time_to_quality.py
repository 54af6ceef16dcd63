"""Time to quality: the shortest schedule with which each recipe ends at AdamW's final val bits/byte.

Same corpus (built-in ICD-10-CM), same BPE tokenizer, same model budget: the `cpu` preset's
(600 optimizer steps of 16 x 128 tokens), 3 seeds (model init and batch order; the data split
and tokenizer stay those of seed 42). Recipes: utils.training.presets.RECIPES ("adamw", "muon",
"modern"), each a set of config overrides on the preset; the first is the reference.

The rule (end of schedule): a budget is a whole schedule, warmup and decay of that length
(max_steps=budget, the same warmup_ratio), read at its end only, because rankings read in the
middle of a run flip during the decay. For each recipe, bisection over budgets (multiples of
--quantum steps, at most --probes budgets trained, 3 seeds each) finds the shortest whose final
val bits/byte, mean over seeds, reaches AdamW's mean final at the full budget. The ratio is that
budget x the recipe's step time over the full budget x AdamW's step time. The first budget tried
is the step at which the recipe's full run crossed that value mid-run (the old rule, still
printed as a second figure): a schedule that ends there has decayed, so it usually reaches.
Spread: the sd and min-max over seeds of each final; for the ratio, each seed's own budget,
interpolated linearly between the budgets probed, against the same seed's AdamW final (min-max).

Robust to a shared, busy machine: quality is measured against optimizer steps, which no load
can change (one process per run; --jobs runs them in parallel). Step times come from one more
run in which the recipes take turns step by step (bench/_baton.py), so every recipe sees the
same load within milliseconds; evaluations are not timed, compile time is printed apart.

The last lines are `time_to_quality muon/adamw R` and `time_to_quality modern/adamw R`.

    .venv/bin/python bench/time_to_quality.py --jobs 2   # the full run (about 30 min on 2 idle cores)
    .venv/bin/python bench/time_to_quality.py --quick    # 1 seed, 60-step budgets (make bench)
    .venv/bin/python bench/time_to_quality.py --timing-only --recipe adamw --recipe muon
    .venv/bin/python bench/time_to_quality.py --recipe adamw --recipe muon01 optimizer=muon muon_lr=0.01
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository root first, and bench/ off the path: a script here must never shadow a package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from bench._baton import Baton  # noqa: E402  (the root is on sys.path; bench/ a namespace package)
from bench._budget_search import shortest_budget, steps_to_reach  # noqa: E402
from utils.training.config import TrainingConfig, parse_overrides  # noqa: E402
from utils.training.data.pipeline import prepare_data  # noqa: E402
from utils.training.data.sampler import RandomBatchSampler  # noqa: E402
from utils.training.engine.callbacks import TrainerCallback  # noqa: E402
from utils.training.engine.device import resolve_compile, resolve_device  # noqa: E402
from utils.training.engine.models import build_model  # noqa: E402
from utils.training.engine.trainer import Trainer  # noqa: E402

try:
    from utils.training.presets import RECIPES as PRESET_RECIPES  # noqa: E402
except ImportError:  # a checkout before the recipes: the two optimizers as the cpu preset measured them
    PRESET_RECIPES = {"adamw": {"optimizer": "adamw"}, "muon": {"optimizer": "muon", "muon_lr": 0.02}}
RECIPES = {n: {"compile": "off", **r} for n, r in PRESET_RECIPES.items()}
EXTRA = {"muon+compile": {**RECIPES["muon"], "compile": "on"}}  # added where compile=auto would compile
DATA_SEED = 42  # the split and tokenizer: the same for every run


def machine_lines() -> list[str]:
    """The CPU model and the instruction-set facts a step time depends on (bf16 above all)."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux
        import platform
        model = platform.processor() or platform.machine()
    try:
        bf16 = "yes" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"
    except (AttributeError, RuntimeError):
        bf16 = "unknown (this torch has no mkldnn bf16 check)"
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    lines = [f"cpu: {model or 'unknown'} ({os.cpu_count()} cores seen; flags: {' '.join(shown) or 'none of avx2/avx512'})",
             f"native bf16 matrix multiply on this cpu (torch.ops.mkldnn._is_mkldnn_bf16_supported): {bf16}"]
    if torch.cuda.is_available():
        lines.append(f"gpu: {torch.cuda.get_device_name()} (capability {torch.cuda.get_device_capability()})")
    return lines


class Recorder(TrainerCallback):
    """Passes the baton at every step end; keeps (step, val_bpb) of every evaluation."""

    def __init__(self, baton, name):
        self.baton, self.name, self.curve = baton, name, []

    def on_step_end(self, state, control, **kw):
        self.baton.step_done(self.name)

    def on_evaluate(self, state, control, metrics=None, **kw):
        self.curve.append((state.step, metrics["val_bpb"]))
        if state.step % 100 == 0 or state.step == state.max_steps:  # progress, off the printed results
            print(f"  [{time.strftime('%H:%M:%S')}] {state.run_name} step {state.step}/{state.max_steps} "
                  f"val bpb {metrics['val_bpb']:.4f}", file=sys.stderr, flush=True)
        self.baton.restart_clock()


def run_interleaved(recipes, base, data, seed, workdir, tag):
    """All recipes of one seed in threads, taking turns step by step. -> {name: result dict}."""
    baton = Baton(recipes)
    out = {}

    def target(name):
        try:
            cfg = base.replace(**recipes[name], random_seed=seed, run_name=f"{tag}-{re.sub(r'[^A-Za-z0-9._-]', '-', name)}-s{seed}")
            model = build_model(cfg)
            train = RandomBatchSampler(data.train.tokens, cfg.batch_size, cfg.block_size, seed)
            val = RandomBatchSampler(data.val.tokens, cfg.batch_size, cfg.block_size, DATA_SEED)
            rec = Recorder(baton, name)
            run_dir = Path(workdir) / cfg.run_name
            trainer = Trainer(cfg, model, train, val, run_dir=run_dir, callbacks=[rec],
                              bytes_per_token=data.bytes_per_token, progress_bar=False)
            baton.start(name)
            result = trainer.train()
            out[name] = {"curve": rec.curve, "compile_s": getattr(trainer, "compile_s", 0.0),
                         "status": result.status}
            shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints of a bench run are not kept
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
        out[name]["times"] = times[2:] if len(times) > 4 else times
        out[name]["step_s"] = statistics.median(out[name]["times"])
    return out


def step_ratio(timing, name, ref):
    """Median over turns of (the recipe's step / the reference's step of the same turn): the two
    steps ran back to back, so a change of machine load between turns cancels out."""
    pairs = list(zip(timing[name]["times"], timing[ref]["times"]))
    return statistics.median(t / r for t, r in pairs) if pairs else timing[name]["step_s"] / timing[ref]["step_s"]


_SHARED = None  # (base config, prepared data, workspace, threads), inherited by the forked workers


def _train_job(name, recipe, seed, budget, eval_interval):
    """One run in a worker: recipe at `budget` steps (a whole schedule), evaluated every
    eval_interval steps and at its end. -> (curve [(step, val_bpb)], compile_s, seconds)."""
    base, data, ws, threads = _SHARED
    if threads:
        torch.set_num_threads(threads)
    t = time.perf_counter()
    cfg = base.replace(max_steps=budget, eval_interval=eval_interval)
    res = run_interleaved({name: recipe}, cfg, data, seed, ws, tag=f"q{budget}")[name]
    return res["curve"], res["compile_s"], time.perf_counter() - t


UNKEYED = {"run_name", "preset", "log_interval", "checkpoint_interval", "keep_checkpoints", "sample_interval"}


def run_key(cfg) -> dict:
    """What a run's curve depends on: the config fields away from their defaults (a field added
    later with a default that keeps today's behaviour leaves old keys valid), torch, the CPU."""
    default = TrainingConfig().to_dict()
    fields = {k: v for k, v in cfg.to_dict().items() if k not in UNKEYED and v != default.get(k, object())}
    return {"config": fields, "torch": torch.__version__, "machine": machine_lines()}


class Runs:
    """Trains (recipe, seed, budget) in a process pool, each at most once; thread-safe. With a
    cache folder, a run whose key (run_key) was trained before is read back instead."""

    def __init__(self, pool, recipes, seeds, base, cache=None):
        self.pool, self.recipes, self.seeds, self.base, self.cache = pool, recipes, seeds, base, cache
        self.futures, self.shown, self.read_back, self.cached, self.lock = {}, set(), set(), 0, threading.Lock()

    def _cache_file(self, name, seed, budget, eval_interval):
        cfg = self.base.replace(**self.recipes[name], random_seed=seed, max_steps=budget, eval_interval=eval_interval)
        key = json.dumps(run_key(cfg), sort_keys=True, default=str)
        return self.cache / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json", key

    def is_cached(self, name, seed, budget, eval_interval):
        return self.cache is not None and self._cache_file(name, seed, budget, eval_interval)[0].exists()

    def _start(self, name, seed, budget, eval_interval):
        if self.cache is None:
            return self.pool.submit(_train_job, name, self.recipes[name], seed, budget, eval_interval)
        path, key = self._cache_file(name, seed, budget, eval_interval)
        if path.exists():
            stored = json.loads(path.read_text())
            done = Future()
            done.set_result(([tuple(p) for p in stored["curve"]], stored["compile_s"], stored["seconds"]))
            self.cached += 1
            self.read_back.add((name, budget, seed))
            return done

        def store(f):
            if f.exception() is None:
                curve, compile_s, seconds = f.result()
                path.write_text(json.dumps({"key": json.loads(key), "curve": curve, "compile_s": compile_s,
                                            "seconds": seconds}))

        f = self.pool.submit(_train_job, name, self.recipes[name], seed, budget, eval_interval)
        f.add_done_callback(store)
        return f

    def submit(self, name, budget, eval_interval):
        with self.lock:
            for seed in self.seeds:
                if (name, budget, seed) not in self.futures:
                    self.futures[name, budget, seed] = self._start(name, seed, budget, eval_interval)
        return [self.futures[name, budget, s] for s in self.seeds]

    def curves(self, name, budget, eval_interval=10**6):
        """The seeds' curves (waits); the first time, prints each run's final."""
        out = []
        for seed, f in zip(self.seeds, self.submit(name, budget, eval_interval)):
            curve, _, seconds = f.result()
            out.append(curve)
            with self.lock:
                if (name, budget, seed) not in self.shown:
                    self.shown.add((name, budget, seed))
                    took = "read back" if (name, budget, seed) in self.read_back else f"{seconds:.0f} s"
                    print(f"  {name} budget {budget} seed {seed}: final val bpb {curve[-1][1]:.4f} ({took})",
                          flush=True)
        return out


def make_pool(jobs, base, data, ws, threads):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    global _SHARED
    _SHARED = (base, data, ws, threads)
    return ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"))


def spread(xs):
    if len(xs) < 2:
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f} [{min(xs):.4f}-{max(xs):.4f}]"


def search_recipe(runs, name, ref, full, a, finals_ref, lock, found):
    """The end-of-schedule search of one recipe (a thread: recipes search side by side)."""
    curves = runs.curves(name, full, a.eval_interval)
    target = statistics.mean(finals_ref)
    crossings = [steps_to_reach(c, t) for c, t in zip(curves, finals_ref)]
    mean_curve = [(s, statistics.mean(c[i][1] for c in curves)) for i, (s, _) in enumerate(curves[0])]
    first = steps_to_reach(mean_curve, target)

    def final_at(budget):
        finals = [c[-1][1] for c in runs.curves(name, budget)]
        with lock:
            print(f"  {name} budget {budget}: mean final val bpb {statistics.mean(finals):.4f} "
                  f"{'reaches' if statistics.mean(finals) <= target else 'misses'} {target:.4f}", flush=True)
        return statistics.mean(finals)

    known = {full: statistics.mean(c[-1][1] for c in curves)}
    result = shortest_budget(final_at, target, full, quantum=a.quantum, max_probes=a.probes,
                             first=first[0] if first else None, known=known)
    per_seed = []  # each seed's own budget: its finals over the budgets probed, against its AdamW final
    for j, t in enumerate(finals_ref):
        points = sorted((b, runs.curves(name, b)[j][-1][1]) for b in result.values)
        per_seed.append(steps_to_reach(points, t))
    found[name] = {"finals": [c[-1][1] for c in curves], "crossings": crossings, "search": result,
                   "per_seed": per_seed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 60-step budgets, 2 probes (a few minutes)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="the full budget (AdamW's); 0 = the preset's")
    ap.add_argument("--quantum", type=int, default=25, help="budgets are multiples of this many steps")
    ap.add_argument("--probes", type=int, default=3, help="budgets trained per recipe by the bisection")
    ap.add_argument("--eval-interval", type=int, default=50, help="evaluations of the full runs (mid-run crossing)")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--recipe", nargs="+", action="append", metavar=("NAME", "KEY=VALUE"),
                    help=f"a recipe: a name from {', '.join({**RECIPES, **EXTRA})}, or a new name followed by "
                         "config overrides (on the named recipe's); the first is the reference")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads per training process; 0 = the cores shared out between --jobs")
    ap.add_argument("--jobs", type=int, default=1, help="training runs in this many processes at once")
    ap.add_argument("--timing-steps", type=int, default=40, help="steps of each recipe in the paired timing run")
    ap.add_argument("--cache", default="", help="a folder keeping each run's curve: a later run with the same "
                    "config, seed, torch and CPU reads it back (printed) instead of training it again")
    ap.add_argument("--timing-only", action="store_true", help="only the paired timing run (step times, compile)")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                    help="add the muon+compile recipe: auto = where compile=auto would compile (CUDA >= 8.0)")
    a = ap.parse_args(argv)
    for line in machine_lines():
        print(line, flush=True)
    if a.threads:
        torch.set_num_threads(a.threads)
    known = {**RECIPES, **EXTRA}
    if a.recipe:
        recipes = {r[0]: {**known.get(r[0], {"compile": "off"}), **parse_overrides(r[1:])} for r in a.recipe}
    else:
        device = resolve_device()
        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        recipes = dict(RECIPES)
        if a.compile == "on" or (a.compile == "auto" and resolve_compile("auto", device.type, capability)):
            recipes = {**{k: v for k, v in recipes.items() if k != "muon"}, **EXTRA, "muon": recipes["muon"]}
    if a.quick:
        a.seeds, a.quantum, a.probes, a.eval_interval = 1, 10, 2, 10
    seeds = list(range(1, a.seeds + 1))
    base = TrainingConfig.preset(a.preset, random_seed=DATA_SEED)
    full = a.steps or (60 if a.quick else base.max_steps)
    base = base.replace(max_steps=full, sample_interval=0, checkpoint_interval=10**9, log_interval=50)
    ref, names = next(iter(recipes)), list(recipes)[1:]
    with tempfile.TemporaryDirectory() as ws:
        t0 = time.perf_counter()
        data = prepare_data(base, ws)
        base = base.replace(vocab_size=data.vocab_size)
        threads = a.threads or max(1, (os.cpu_count() or 1) // max(1, a.jobs))
        print(f"preset {a.preset}: {base.n_layer} layers x {base.d_model}, {base.model_family}, vocab "
              f"{base.vocab_size}, full budget {full} steps of {base.tokens_per_step} tokens, warmup_ratio "
              f"{base.warmup_ratio}, {base.schedule} schedule; seeds {seeds}; budgets in multiples of {a.quantum}, "
              f"at most {a.probes} probed per recipe; data ready in {time.perf_counter() - t0:.0f} s; "
              f"{a.jobs} job(s) x {threads} torch thread(s)", flush=True)
        print("recipes: " + "; ".join(f"{n} {r}" for n, r in recipes.items()), flush=True)
        timing_steps = min(a.timing_steps, 20) if a.quick else a.timing_steps
        timing_base = base.replace(max_steps=timing_steps, eval_interval=10**6)
        # A recipe may set its own max_steps: its step time is still a timing-run step.
        timed = {n: {k: v for k, v in r.items() if k != "max_steps"} for n, r in recipes.items()}
        if a.timing_only:
            timing = run_interleaved(timed, timing_base, data, seeds[0], ws, tag="t")
            for n in recipes:
                extra = f", compile {timing[n]['compile_s']:.0f} s" if timing[n]["compile_s"] else ""
                print(f"{n}: median step {1000 * timing[n]['step_s']:.0f} ms "
                      f"({step_ratio(timing, n, ref):.2f}x, median of turn-by-turn ratios){extra}")
            return 0
        pool = make_pool(a.jobs, base, data, ws, threads)
        try:
            runs = Runs(pool, recipes, seeds, base, cache=Path(a.cache) if a.cache else None)
            if runs.cache:
                runs.cache.mkdir(parents=True, exist_ok=True)
            for name in recipes:  # the full runs first (the reference's before all), then the searches
                runs.submit(name, full, a.eval_interval)
            timing = run_interleaved(timed, timing_base, data, seeds[0], ws, tag="t")  # meanwhile, here
            ms = "  ".join(f"{n} {1000 * timing[n]['step_s']:.0f} ms" for n in recipes)
            print(f"median step time, recipes interleaved step by step over {timing_steps} steps each: {ms}; "
                  "ratio to " + ref + " (median of turn-by-turn ratios): "
                  + "  ".join(f"{n} {step_ratio(timing, n, ref):.3f}" for n in recipes), flush=True)
            finals_ref = [c[-1][1] for c in runs.curves(ref, full, a.eval_interval)]
            lock, found = threading.Lock(), {}
            searches = [threading.Thread(target=search_recipe, args=(runs, n, ref, full, a, finals_ref, lock, found))
                        for n in names]
            for t in searches:
                t.start()
            for t in searches:
                t.join()
            if runs.cached:
                print(f"{runs.cached} run(s) read back from {a.cache} (same config, seed, torch and cpu), not trained "
                      "again", flush=True)
        finally:
            pool.shutdown(cancel_futures=True)
    missing = [n for n in names if n not in found]
    if missing:
        raise RuntimeError(f"the search of {', '.join(missing)} failed (see the traceback above)")
    report(recipes, ref, full, finals_ref, timing, found, len(seeds))
    return 0


def report(recipes, ref, full, finals_ref, timing, found, n_seeds):
    print(f"\nAdamW's target: mean final val bpb of {ref} at {full} steps = {statistics.mean(finals_ref):.4f}. "
          f"Per recipe: final val bpb at {full} steps (mean ± sd [min-max] over {n_seeds} seed(s)); step time "
          f"relative to {ref}; the shortest budget whose mean final reaches the target (after the last budget "
          "seen to miss it); the ratio; each seed's ratio interpolated between the budgets probed (<= where "
          "its shortest probe already reached; seed by seed); the mid-run crossing of the full run (old rule, mean ± sd).")
    def row(*cells):
        return "{:<14} {:>38} {:>6} {:>16} {:>11} {:>22} {:>12}".format(*cells).rstrip()
    print(row("recipe", f"val bpb at {full}", "step", "budget (missed)", "ratio", "ratio per seed", "mid-run"))
    lines = []
    for name in recipes:
        ratio_step = step_ratio(timing, name, ref)
        if name == ref:
            print(row(name, spread(finals_ref), "1.00x", full, "1.00", "", ""))
            continue
        f = found[name]
        s = f["search"]
        ratio = None if s.budget is None else s.budget * ratio_step / full
        per_seed = "/".join("none" if p is None else ("" if p[1] else "<=") + f"{p[0] * ratio_step / full:.2f}"
                            for p in f["per_seed"])
        mids = [c[0] * ratio_step / full for c in f["crossings"] if c is not None]
        mid = (f"{statistics.mean(mids):.2f}" + (f" ± {statistics.stdev(mids):.2f}" if len(mids) > 1 else "")
               if len(mids) == len(f["crossings"]) else "not reached")
        budget = f"{s.budget} ({s.lo})" if s.budget is not None else "none"
        shown = f"{ratio:.2f}" if ratio is not None else "not-reached"
        print(row(name, spread(f["finals"]), f"{ratio_step:.2f}x", budget, shown, per_seed, mid))
        probed = ", ".join(f"{b}: {v:.4f}" for b, v in sorted(s.values.items()))
        print(f"{'':<14}budgets and mean finals: {probed} ({s.probes} probed)")
        lines.append(f"time_to_quality {name}/{ref} {shown}")
    if "modern" not in recipes and ref == "adamw" and "muon" in recipes:
        lines.append("time_to_quality modern/adamw n/a (no modern recipe in utils/training/presets.py)")
    order = sorted(lines, key=lambda ln: (" modern/" in ln, " muon/" in ln))  # muon, then modern, last
    for line in order:
        print(line)


if __name__ == "__main__":
    sys.exit(main())

"""Muon, tuned: final val bits/byte of the `cpu` preset at its full budget for Muon's settings.

One seed per row (the seed-to-seed spread of the same runs comes from bench/time_to_quality.py,
3 seeds), every run a whole 600-step schedule read at its end. Rows: AdamW (the reference),
muon_lr over 4 values with torch.optim.Muon's default lr scaling (muon_adjust_lr="original":
lr x max(1, rows/cols)^0.5), muon_adjust_lr="match_rms_adamw" (lr x 0.2 x max(rows, cols)^0.5,
so the lr is on AdamW's scale: the preset's learning_rate 2e-3 and two neighbours), and Muon's
weight decay. A row whose field this checkout lacks is listed as skipped. Runs go through
bench/time_to_quality.py's runner (process pool, --cache shared with it: the same run is
trained once).

    .venv/bin/python bench/muon_sweep.py --jobs 2 --cache workspace/ttq-cache
    .venv/bin/python bench/muon_sweep.py --quick       # 2 rows, 30 steps (make bench)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from bench.time_to_quality import DATA_SEED, RECIPES, Runs, machine_lines, make_pool  # noqa: E402
from utils.training.config import TrainingConfig  # noqa: E402
from utils.training.data.pipeline import prepare_data  # noqa: E402

# The rows spell out every setting they vary, so that they keep their meaning (and their --cache
# keys) whatever presets.RECIPES holds; the defaults: torch's scaling at 0.02, AdamW's lr for the rest.
DEFAULTS = {"muon_adjust_lr": "original", "muon_lr": 0.02, "embedding_lr": "auto"}
MUON = {**RECIPES["muon"], **DEFAULTS}
ADAMW_ONE_LR = {**RECIPES["adamw"], "embedding_lr": "auto"}  # the preset's learning_rate everywhere
MATCH = {**MUON, "muon_adjust_lr": "match_rms_adamw"}
MODERN = {**RECIPES["modern"], **DEFAULTS}
ROWS = {  # in the order they are trained (the most telling first, for a run cut short)
    "adamw": RECIPES["adamw"],  # as presets.RECIPES has it: 2e-3, and its embeddings at 0.032
    "muon lr 0.02": MUON,
    "muon lr 0.04": {**MUON, "muon_lr": 0.04},
    "muon lr 0.01": {**MUON, "muon_lr": 0.01},
    "muon lr 0.08": {**MUON, "muon_lr": 0.08},
    "muon match_rms_adamw lr 0.002": {**MATCH, "muon_lr": 2e-3},
    "muon lr 0.02 wd 0": {**MUON, "muon_weight_decay": 0.0},
    "muon lr 0.02 wd 0.3": {**MUON, "muon_weight_decay": 0.3},
    "muon match_rms_adamw lr 0.008": {**MATCH, "muon_lr": 8e-3},
    "muon match_rms_adamw lr 0.004": {**MATCH, "muon_lr": 4e-3},
    "muon match_rms_adamw lr 0.001": {**MATCH, "muon_lr": 1e-3},
    # AdamW tuned too: a ratio against an untuned reference flatters Muon (Wen et al. 2025). One
    # lr for every parameter (as before embedding_lr existed)...
    "adamw one lr 0.002": ADAMW_ONE_LR,
    "adamw one lr 0.001": {**ADAMW_ONE_LR, "learning_rate": 1e-3},
    "adamw one lr 0.004": {**ADAMW_ONE_LR, "learning_rate": 4e-3},
    "adamw one lr 0.008": {**ADAMW_ONE_LR, "learning_rate": 8e-3},
    # ...and given the same second lr as the Muon recipes: is their gain Muon's, or the embeddings'?
    "adamw embedding lr 0.008": {**ADAMW_ONE_LR, "embedding_lr": 8e-3},
    "adamw embedding lr 0.016": {**ADAMW_ONE_LR, "embedding_lr": 1.6e-2},
    "adamw embedding lr 0.032": {**ADAMW_ONE_LR, "embedding_lr": 3.2e-2},
    "adamw embedding lr 0.064": {**ADAMW_ONE_LR, "embedding_lr": 6.4e-2},
    # The modern recipe: Muon's lr, and the embeddings' lr (embeddings, untied head, norms).
    "modern muon lr 0.02": MODERN,
    "modern muon lr 0.04": {**MODERN, "muon_lr": 0.04},
    # embedding_lr: the lr of the embeddings, the head and the norms, AdamW's part of a Muon run
    # (auto = learning_rate; these rows were first run as learning_rate=..., the same numbers).
    "modern muon lr 0.02 embedding lr 0.004": {**MODERN, "embedding_lr": 4e-3},
    "modern muon lr 0.02 embedding lr 0.008": {**MODERN, "embedding_lr": 8e-3},
    "modern muon lr 0.02 embedding lr 0.016": {**MODERN, "embedding_lr": 1.6e-2},
    "modern muon lr 0.02 embedding lr 0.032": {**MODERN, "embedding_lr": 3.2e-2},
    "modern muon lr 0.02 embedding lr 0.064": {**MODERN, "embedding_lr": 6.4e-2},
    "modern muon lr 0.01 embedding lr 0.016": {**MODERN, "muon_lr": 0.01, "embedding_lr": 1.6e-2},
    # The modern architecture with AdamW: how much of modern's gain is the architecture's?
    "modern architecture adamw embedding lr 0.016": {**RECIPES["modern"], "optimizer": "adamw", "embedding_lr": 1.6e-2},
    "modern architecture adamw embedding lr 0.032": {**RECIPES["modern"], "optimizer": "adamw", "embedding_lr": 3.2e-2},
    "muon match_rms_adamw lr 0.002 embedding lr 0.004": {**MATCH, "muon_lr": 2e-3, "embedding_lr": 4e-3},
    "muon match_rms_adamw lr 0.002 embedding lr 0.008": {**MATCH, "muon_lr": 2e-3, "embedding_lr": 8e-3},
    "muon match_rms_adamw lr 0.002 embedding lr 0.016": {**MATCH, "muon_lr": 2e-3, "embedding_lr": 1.6e-2},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rows, 30 steps")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=0, help="0 = the preset's budget")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-interval", type=int, default=50, help="as time_to_quality's full runs (shared cache)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run; 0 = the cores shared out")
    ap.add_argument("--cache", default="", help="time_to_quality.py's --cache folder")
    ap.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                    help="train only these rows (names as printed; default: all)")
    ap.add_argument("--cached-only", action="store_true",
                    help="train nothing: the table of the rows found in --cache, the others listed as not run")
    a = ap.parse_args(argv)
    for line in machine_lines():
        print(line, flush=True)
    fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    rows = {k: r for k, r in ROWS.items() if set(r) <= fields}
    skipped = [k for k in ROWS if k not in rows]
    if a.rows:
        unknown = [r for r in a.rows if r not in ROWS]
        if unknown:
            ap.error(f"--rows: unknown {', '.join(map(repr, unknown))}; rows are: {', '.join(map(repr, ROWS))}")
        # The two references always come along (read back from --cache when they are there).
        rows = {k: rows[k] for k in dict.fromkeys(["adamw", "muon lr 0.02", *a.rows]) if k in rows}
    if a.quick:
        rows = {k: rows[k] for k in ("muon lr 0.01", "muon lr 0.02")}
    base = TrainingConfig.preset(a.preset, random_seed=DATA_SEED)
    full = a.steps or (30 if a.quick else base.max_steps)
    base = base.replace(max_steps=full, sample_interval=0, checkpoint_interval=10**9, log_interval=50)
    threads = a.threads or max(1, (os.cpu_count() or 1) // max(1, a.jobs))
    with tempfile.TemporaryDirectory() as ws:
        data = prepare_data(base, ws)
        base = base.replace(vocab_size=data.vocab_size)
        print(f"preset {a.preset}: {base.n_layer} layers x {base.d_model}, {full} steps of {base.tokens_per_step} "
              f"tokens, seed {a.seed}, {a.jobs} job(s) x {threads} thread(s)", flush=True)
        pool = make_pool(a.jobs, base, data, ws, threads)
        t0 = time.perf_counter()
        try:
            runs = Runs(pool, rows, [a.seed], base, cache=Path(a.cache) if a.cache else None)
            if runs.cache:
                runs.cache.mkdir(parents=True, exist_ok=True)
            if a.cached_only:
                if not runs.cache:
                    ap.error("--cached-only reads --cache: name the folder")
                not_run = [n for n in rows if not runs.is_cached(n, a.seed, full, a.eval_interval)]
                rows = {n: r for n, r in rows.items() if n not in not_run}
            for name in rows:
                runs.submit(name, full, a.eval_interval)
            finals = {name: runs.curves(name, full, a.eval_interval)[0][-1][1] for name in rows}
        finally:
            pool.shutdown(cancel_futures=True)
    ref = finals.get("adamw")
    base_muon = finals.get("muon lr 0.02")
    print(f"\nfinal val bits/byte at {full} steps, seed {a.seed} ({time.perf_counter() - t0:.0f} s; "
          f"{runs.cached} run(s) read back from the cache)")
    w = max([34] + [len(n) + 2 for n in ROWS])
    print(f"{'row':<{w}}{'val bpb':>9}{'vs adamw':>10}{'vs muon 0.02':>14}")
    for name, v in sorted(finals.items(), key=lambda kv: kv[1]):
        d_ref = f"{v - ref:+.4f}" if ref is not None else ""
        d_muon = f"{v - base_muon:+.4f}" if base_muon is not None else ""
        print(f"{name:<{w}}{v:>9.4f}{d_ref:>10}{d_muon:>14}")
    for name in not_run if a.cached_only else []:
        print(f"{name:<{w}}  not run (not in {a.cache})")
    for name in skipped:
        print(f"{name:<{w}}{'skipped: ' + ', '.join(sorted(set(ROWS[name]) - fields)) + ' not in this checkout':>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

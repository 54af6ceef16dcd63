"""What the training loop costs, measured side by side in one process.

Part 1, loop overhead (1 layer, 64 wide, the default family): our Trainer with its
default callbacks, a bare PyTorch loop (forward, loss, backward, clip, AdamW,
scheduler) and the Hugging Face Trainer, on the same model shape and data,
interleaved step by step: the three loops run in threads that pass a baton at every
step end, so only one computes at a time and all three see the same machine load
within a few milliseconds. A step's time runs from receiving the baton to the next
step end, so everything a loop does between steps (callbacks, logging, data) counts.
Printed: medians of the per-step paired ratios and of the per-step difference
ours - bare (the fixed overhead, ms); the first 2 steps (setup) are dropped.

Part 2, model families: tokens/s of forward+backward+AdamW for gpt2, llama and
qwen2 against a minimal nanoGPT-style GPT of the same width and depth, interleaved.

    .venv/bin/python bench/loop_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository root first, and bench/ off the path: a script here must never shadow a package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench._baton import Baton  # noqa: E402  (the root is on sys.path; bench/ a namespace package)
from utils.training.config import TrainingConfig  # noqa: E402
from utils.training.engine.callbacks import TrainerCallback  # noqa: E402
from utils.training.engine.models import build_model  # noqa: E402
from utils.training.engine.optimizers import build_scheduler, param_groups  # noqa: E402
from utils.training.engine.trainer import Trainer  # noqa: E402


class Batches:
    """BatchSource over random tokens (the loop's cost does not depend on the text)."""

    def __init__(self, vocab, batch_size, block_size, seed=0):
        self.vocab, self.batch_size, self.block_size, self.position, self.seed = vocab, batch_size, block_size, 0, seed

    def next_batch(self):
        g = torch.Generator().manual_seed(self.seed + self.position)
        self.position += 1
        w = torch.randint(0, self.vocab, (self.batch_size, self.block_size + 1), generator=g)
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, s):
        self.position = s["position"]

    def eval_batches(self, n):
        for i in range(n):
            yield self.next_batch() if i < 0 else Batches(self.vocab, self.batch_size, self.block_size, 99 + i).next_batch()


class Pass(TrainerCallback):
    def __init__(self, baton, name):
        self.baton, self.name = baton, name

    def on_step_end(self, state, control, **kw):
        self.baton.step_done(self.name)


def run_ours(cfg, baton):
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(cfg, build_model(cfg), Batches(cfg.vocab_size, cfg.batch_size, cfg.block_size),
                          run_dir=d, callbacks=[Pass(baton, "ours")], progress_bar=True)
        baton.start("ours")
        trainer.train()


def run_bare(cfg, baton):
    model = build_model(cfg)
    baton.start("bare")
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.learning_rate, betas=(0.9, 0.95))
    sched = build_scheduler(opt, cfg, cfg.max_steps)
    data = Batches(cfg.vocab_size, cfg.batch_size, cfg.block_size)
    for _ in range(cfg.max_steps):
        x, y = data.next_batch()
        logits = model(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        baton.step_done("bare")


def run_hf(cfg, baton):
    from transformers import Trainer as HFTrainer
    from transformers import TrainerCallback as HFCallback
    from transformers import TrainingArguments

    class HFPass(HFCallback):
        def on_step_end(self, args, state, control, **kw):
            baton.step_done("hf")

    data = Batches(cfg.vocab_size, cfg.batch_size, cfg.block_size)
    rows = []
    for _ in range(cfg.max_steps):
        x, _ = data.next_batch()
        rows += [{"input_ids": r, "labels": r} for r in x]
    with tempfile.TemporaryDirectory() as d:
        args = TrainingArguments(output_dir=d, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
                                 learning_rate=cfg.learning_rate, lr_scheduler_type="cosine",
                                 warmup_steps=int(cfg.warmup_ratio * cfg.max_steps), weight_decay=cfg.weight_decay,
                                 max_grad_norm=cfg.max_grad_norm, logging_steps=cfg.log_interval, save_strategy="no",
                                 report_to=[], disable_tqdm=False, use_cpu=True, dataloader_num_workers=0,
                                 log_level="error")
        trainer = HFTrainer(model=build_model(cfg), args=args, train_dataset=rows, callbacks=[HFPass()])
        baton.start("hf")
        trainer.train()


def interleaved(cfg) -> dict[str, list[float]]:
    runners = {"bare": run_bare, "ours": run_ours, "hf": run_hf}
    baton = Baton(runners)

    def target(name):
        try:
            runners[name](cfg, baton)
        finally:
            baton.finish(name)

    threads = [threading.Thread(target=target, args=(n,)) for n in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {k: [1000 * x for x in v[2:]] for k, v in baton.times.items()}  # ms, setup steps dropped


# -- part 2: a minimal nanoGPT-style GPT --------------------------------------------------


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):  # x: (B, T, d)
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, d)
        x = x + self.proj(a)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class MiniGPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(cfg.vocab_size, cfg.d_model), nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_head) for _ in range(cfg.n_layer))
        self.ln = nn.LayerNorm(cfg.d_model)

    def forward(self, input_ids, use_cache=False):
        x = self.wte(input_ids) + self.wpe(torch.arange(input_ids.size(1)))
        for b in self.blocks:
            x = b(x)
        return self.ln(x) @ self.wte.weight.T  # tied head; logits (B, T, V)


def family_times(makers: dict, cfg, n: int) -> dict[str, list[float]]:
    """forward+backward+AdamW, the models taking turns step by step; ms per step."""
    models = {k: make() for k, make in makers.items()}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
    data = Batches(cfg.vocab_size, cfg.batch_size, cfg.block_size)
    times = {k: [] for k in models}
    for i in range(n):
        x, y = data.next_batch()
        for k, m in models.items():
            t0 = time.perf_counter()
            out = m(input_ids=x, use_cache=False)
            logits = out if isinstance(out, torch.Tensor) else out.logits
            F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.view(-1)).backward()
            opts[k].step()
            opts[k].zero_grad(set_to_none=True)
            if i >= 2:  # warm-up steps dropped
                times[k].append(1000 * (time.perf_counter() - t0))
    return times


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    rounds, steps = (1, 60) if a.quick else (3, 200)
    cfg = TrainingConfig.preset("smoke", n_layer=1, d_model=64, n_head=4, n_kv_head=4, block_size=64,
                                vocab_size=512, batch_size=8, max_steps=steps, log_interval=10,
                                checkpoint_interval=10**6, eval_interval=10**6)
    print(f"Part 1: loop overhead, {cfg.model_family} 1x64, batch {cfg.batch_size}x{cfg.block_size}, "
          f"{steps} steps x {rounds} runs, {a.threads} thread(s)")
    per = {k: [] for k in ("bare", "ours", "hf")}
    for r in range(rounds):
        times = interleaved(cfg)
        for k in per:
            per[k] += times[k]
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"  run {r + 1}: median step ms  bare {med['bare']:.2f}  ours {med['ours']:.2f}  hf {med['hf']:.2f}",
              flush=True)
    pairs = list(zip(per["bare"], per["ours"], per["hf"]))
    vs_bare = statistics.median(b / o for b, o, _ in pairs)
    vs_hf = statistics.median(h / o for _, o, h in pairs)
    overhead = statistics.median(o - b for b, o, _ in pairs)
    print(f"  {len(pairs)} paired steps")
    print(f"  median throughput ours vs bare loop:  {vs_bare:.3f}x (goal >= 0.97)")
    print(f"  median throughput ours vs HF Trainer: {vs_hf:.3f}x (goal >= 1.0)")
    print(f"  fixed overhead per step (ours - bare): {overhead:+.3f} ms (goal <= 1 ms)")

    fcfg = TrainingConfig.preset("smoke", n_layer=2, d_model=128, n_head=4, n_kv_head=4, block_size=128,
                                 vocab_size=2048, batch_size=8)
    n = 20 if a.quick else 100
    print(f"\nPart 2: tokens/s vs a minimal GPT, 2x128, batch 8x128, {n} steps interleaved step by step")
    makers = {"minimal": lambda: MiniGPT(fcfg)}
    for fam in ("gpt2", "llama", "qwen2"):
        makers[fam] = lambda fam=fam: build_model(fcfg.replace(model_family=fam))
    times = family_times(makers, fcfg, n)
    for fam in ("gpt2", "llama", "qwen2"):
        ratio = statistics.median(m / f for m, f in zip(times["minimal"], times[fam]))
        tps = fcfg.batch_size * fcfg.block_size / (statistics.median(times[fam]) / 1000)
        print(f"  {fam:6s} {tps:9,.0f} tokens/s   {ratio:.3f}x the minimal GPT (median of paired steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

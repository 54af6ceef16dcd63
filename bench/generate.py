"""Generation speed of the smoke model: time to the first token and tokens/s of our
streamed sampler (engine/sampling.py) against transformers' `model.generate` on the
same model, prompt and number of new tokens (greedy, eos ignored by both so the token
counts are equal), median of --repeats. The model is the smoke preset's architecture
with random weights (speed does not depend on training); the tokenizer is GPT-2's
shipped one, prompt 16 tokens.

    .venv/bin/python bench/generate.py [--family llama] [--new-tokens 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils.training.config import TrainingConfig  # noqa: E402
from utils.training.data.tokenizer import load_gpt2_tokenizer  # noqa: E402
from utils.training.engine.models import build_model  # noqa: E402
from utils.training.engine.sampling import SamplingOptions, generate  # noqa: E402


class _NoEos:
    """The tokenizer with no eos, so both generators produce exactly the tokens asked for."""

    def __init__(self, tok):
        self._tok = tok
        self.eos_token_id = None

    def __call__(self, *a, **k):
        return self._tok(*a, **k)

    def decode(self, *a, **k):
        return self._tok.decode(*a, **k)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--family", default="")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tok = load_gpt2_tokenizer()
    overrides = {"vocab_size": len(tok)}
    if args.family:
        overrides["model_family"] = args.family
    config = TrainingConfig.preset(args.preset, **overrides)
    model = build_model(config).eval()
    torch.set_num_threads(1)  # a shared machine: one core, comparable numbers
    ids = torch.arange(1000, 1016).unsqueeze(0)  # 16 prompt tokens
    prompt = tok.decode(ids[0])
    n = min(args.new_tokens, config.block_size - ids.size(1) - 1)
    options = SamplingOptions(max_new_tokens=n, temperature=0)
    ours_ttft, ours_tps, ref_ttft, ref_tps = [], [], [], []
    quiet = _NoEos(tok)
    for _ in range(args.repeats + 1):  # the first round warms up
        g = generate(model, quiet, prompt, options, block_size=config.block_size)
        ours_ttft.append(g.ttft_s)
        ours_tps.append(g.tokens_per_sec)
        with torch.no_grad():
            t0 = time.perf_counter()
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, min_new_tokens=1,
                           do_sample=False, pad_token_id=0)
            t1 = time.perf_counter()
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=0)
            t2 = time.perf_counter()
        ref_ttft.append(t1 - t0)
        # decoding rate: the n-token call minus the 1-token call, per token after the first
        ref_tps.append((n - 1) / max(1e-9, (t2 - t1) - (t1 - t0)))
    med = lambda xs: statistics.median(xs[1:])  # noqa: E731
    print(f"{args.preset} preset, {config.model_family}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
          f"parameters, CPU 1 thread, prompt 16 tokens, {n} new tokens, median of {args.repeats}")
    print(f"{'':28}{'ours (stream)':>15}{'model.generate':>16}{'ratio':>8}")
    print(f"{'time to first token (ms)':28}{med(ours_ttft) * 1e3:15.2f}{med(ref_ttft) * 1e3:16.2f}"
          f"{med(ours_ttft) / med(ref_ttft):8.2f}")
    print(f"{'tokens/s':28}{med(ours_tps):15.1f}{med(ref_tps):16.1f}{med(ours_tps) / med(ref_tps):8.2f}")


if __name__ == "__main__":
    main()

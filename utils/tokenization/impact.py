"""What token counts cost: sequence length, activation memory, training time, API cost.

Everything here is arithmetic on measured token counts plus assumptions stated in the
arguments; nothing is estimated from a rule of thumb.

- Activation memory per transformer layer, 16-bit activations, no recomputation:
  s*b*h*(34 + 5*a*s/h) bytes (Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models", arXiv:2205.05198, section 4.1, eq. 1).
- API prices: `PRICES` below, with the page they were read from and its date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# USD per 1M input tokens, as listed on the page named in PRICE_SOURCE. GPT-3.5 Turbo and
# GPT-4o mini are the two cheapest listed chat models; GPT-3.5 Turbo's tokenizer is cl100k.
PRICES = {"GPT-3.5 Turbo": 0.50, "GPT-4o mini": 0.15, "GPT-4o": 2.50}
PRICE_SOURCE = ("as listed on https://aimodelcalc.pages.dev/guides/openai-api-pricing.html "
                "(updated June 2026; it cites platform.openai.com/docs/pricing, May 2026)")


@dataclass
class ModelShape:
    """The stated model size for the memory figures (default: GPT-2 small, 124M)."""

    n_layer: int = 12
    n_embd: int = 768
    n_head: int = 12
    name: str = "GPT-2 small (12 layers, d=768, 12 heads)"


def activation_bytes(seq_len: int, batch: int, shape: ModelShape) -> float:
    """Activation memory of all layers for one batch (Korthikanti et al. 2022, eq. 1)."""
    s, b, h, a = seq_len, batch, shape.n_embd, shape.n_head
    return shape.n_layer * s * b * h * (34 + 5 * a * s / h)


def impact_table(per_doc_tokens: dict[str, np.ndarray], records: int = 1_000_000,
                 shape: ModelShape | None = None, batch: int = 32,
                 tokens_per_sec: float | None = None, price_model: str = "GPT-3.5 Turbo"):
    """One row per tokenizer, from its per-document token counts on the medical test text.

    records: how many records like the test documents (assumption: same length mix)
    batch: records per batch, each padded to the 95th-percentile length (assumption)
    tokens_per_sec: training throughput measured by the engine on this runtime; None
      leaves the training-time column empty rather than guessing
    """
    import pandas as pd

    shape = shape or ModelShape()
    price = PRICES[price_model]
    rows = []
    for name, counts in per_doc_tokens.items():
        mean = float(np.mean(counts))
        p95 = int(np.ceil(np.percentile(counts, 95)))
        total = mean * records
        rows.append({
            "tokenizer": name,
            "tokens_per_record": mean,
            "p95_seq_len": p95,
            "activation_gib": activation_bytes(p95, batch, shape) / 2**30,
            "total_tokens_m": total / 1e6,
            "train_hours_per_epoch": total / tokens_per_sec / 3600 if tokens_per_sec else float("nan"),
            "api_cost_usd": total / 1e6 * price,
        })
    return pd.DataFrame(rows)

"""Tokenizer metrics, measured on a list of documents.

Definitions (words are whitespace-delimited, `text.split()`; bytes are UTF-8):
- tokens: total tokens over all documents (no special tokens added)
- fertility: tokens per word
- bytes_per_token: UTF-8 bytes per token (higher = more text per token)
- split_word_share: share of word occurrences that take more than one token, each word
  encoded as it appears inside running text (see `ZooTokenizer.word_token_count`)
- unk_rate: share of tokens that are the unknown token (0 for byte-level tokenizers)
- vocab_use: share of the vocabulary that occurs at least once
- encode_mb_s: MB (1e6 bytes) of text per second through `encode_batch`, wall clock: the
  median of `SPEED_REPEATS` timed passes over at least `SPEED_BYTES` of the text (repeated
  when shorter), after one warm-up call (see `encode_speed`)
- token lengths: characters of original text per token (a byte-level token inside a
  multi-byte character counts 0)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from utils.tokenization.zoo import ZooTokenizer


@dataclass
class Measurement:
    tokenizer: str
    family: str
    vocab_size: int
    text: str  # which text was measured ("medical test", "control", ...)
    docs: int
    words: int
    bytes: int
    tokens: int
    fertility: float
    bytes_per_token: float
    split_word_share: float
    unk_rate: float
    vocab_use: float
    encode_mb_s: float
    per_doc_tokens: np.ndarray = field(repr=False)
    token_lengths: Counter = field(repr=False)

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("per_doc_tokens", "token_lengths")}


def split_word_share(tok: ZooTokenizer, texts: list[str]) -> float:
    words = Counter(w for t in texts for w in t.split())
    total = sum(words.values())
    if total == 0:
        return 0.0
    split = sum(c for w, c in words.items() if tok.word_token_count(w) > 1)
    return split / total


def token_lengths(tok: ZooTokenizer, texts: list[str], max_docs: int = 2000) -> Counter:
    """Histogram {characters per token: count} over the first `max_docs` documents."""
    return Counter(len(p) for t in texts[:max_docs] for p in tok.pieces(t))


SPEED_BYTES = 1_000_000  # text per timed pass: one cold call on 14 KB read 1.9 vs 22.5 MB/s
SPEED_REPEATS = 3


def encode_speed(tok: ZooTokenizer, texts: list[str], min_bytes: int = SPEED_BYTES,
                 repeats: int = SPEED_REPEATS) -> float:
    """MB/s through `encode_batch`: one warm-up call (caches, thread pools, lazy init),
    then the median of `repeats` timed passes over >= min_bytes (the texts repeated)."""
    if not texts:
        return float("nan")
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    batch = texts * max(1, -(-min_bytes // max(1, n_bytes)))
    batch_bytes = n_bytes * (len(batch) // len(texts))
    tok.encode_batch(texts[:256])
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        tok.encode_batch(batch)
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))
    return batch_bytes / dt / 1e6 if dt > 0 else float("inf")


def measure(tok: ZooTokenizer, texts: list[str], text_name: str = "text", speed_bytes: int = SPEED_BYTES) -> Measurement:
    """speed_bytes: text per timed pass of the encode speed (0: not measured, NaN)."""
    ids = tok.encode_batch(texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_words = sum(len(t.split()) for t in texts)
    per_doc = np.array([len(x) for x in ids], dtype=np.int64)
    n_tokens = int(per_doc.sum())
    used: set[int] = set()
    n_unk = 0
    for x in ids:
        used.update(x)
        if tok.unk_id is not None:
            n_unk += x.count(tok.unk_id)
    return Measurement(
        tokenizer=tok.name, family=tok.family, vocab_size=tok.vocab_size, text=text_name,
        docs=len(texts), words=n_words, bytes=n_bytes, tokens=n_tokens,
        fertility=n_tokens / n_words if n_words else float("nan"),
        bytes_per_token=n_bytes / n_tokens if n_tokens else float("nan"),
        split_word_share=split_word_share(tok, texts),
        unk_rate=n_unk / n_tokens if n_tokens else 0.0,
        vocab_use=len(used) / tok.vocab_size,
        encode_mb_s=encode_speed(tok, texts, speed_bytes) if speed_bytes else float("nan"),
        per_doc_tokens=per_doc,
        token_lengths=token_lengths(tok, texts),
    )


def measure_zoo(zoo: list[ZooTokenizer], texts: dict[str, list[str]], speed_bytes: int = SPEED_BYTES):
    """Measure every tokenizer on every named text: (DataFrame of rows, {(tok, text): Measurement}).
    Encode speed is timed on the first text only (NaN on the others): >= 1 MB three times
    per tokenizer is what a stable number costs, and one text is enough to compare speeds."""
    import pandas as pd

    out = {}
    for tok in zoo:
        for i, (name, docs) in enumerate(texts.items()):
            out[(tok.name, name)] = measure(tok, docs, name, speed_bytes if i == 0 else 0)
    return pd.DataFrame([m.row() for m in out.values()]), out


def bucket_table(measurements: dict, texts: list[str], text_name: str = "medical test"):
    """Mean tokens per document in each word-count bucket (rows: tokenizers)."""
    import pandas as pd

    from utils.tokenization.corpus import BUCKETS, bucket_of

    buckets = np.array([bucket_of(t) for t in texts])
    rows = {}
    for (tok, name), m in measurements.items():
        if name != text_name:
            continue
        rows[tok] = {b: float(m.per_doc_tokens[buckets == b].mean()) if (buckets == b).any() else float("nan")
                     for b, _, _ in BUCKETS}
    return pd.DataFrame.from_dict(rows, orient="index")

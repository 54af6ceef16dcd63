"""Data pipeline benchmark: tokenization throughput and streaming memory, side by side.

    python bench/data_pipeline.py [--quick]

1. Tokenization MB/s on the same text (builtin ICD-10-CM corpus), interleaved repeats,
   median: the pipeline's `encode_documents` (ids joined with eos into one array) vs the
   raw `tokenizers` `encode_batch` call vs a naive per-line loop (`tokenizer.encode(line)`).
2. Streaming: a generated corpus is tokenized into a packed token file by
   `ChunkedTokenWriter` in a subprocess at two corpus sizes; the child reports its own
   peak RSS (ru_maxrss). Flat RSS = the larger corpus costs no more memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Peak RSS from /proc/self/status VmHWM: it belongs to this process's own address space.
# (ru_maxrss would not do: Linux keeps it across exec, so the child would report the
# parent's high-water mark.)
CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from utils.training.data.stream import ChunkedTokenWriter
from utils.training.data.tokenizer import load_gpt2_tokenizer
def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
tok = load_gpt2_tokenizer()
base = hwm_mb()
t = time.perf_counter()
tf = ChunkedTokenWriter(Path(sys.argv[3]), tok).write_files([Path(sys.argv[2])], tokens_per_chunk=int(sys.argv[4]),
                                                           doc_split="line")
print(json.dumps({"tokens": len(tf), "seconds": time.perf_counter() - t, "baseline_rss_mb": base,
                  "peak_rss_mb": hwm_mb()}))
"""


def throughput(docs: list[str], reps: int, naive_docs: int) -> None:
    from utils.training.data.tokenizer import encode_documents, load_gpt2_tokenizer

    tok = load_gpt2_tokenizer()
    backend = tok.backend_tokenizer
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    naive_sample = docs[:naive_docs]
    naive_mb = sum(len(d.encode("utf-8")) for d in naive_sample) / 1e6
    times: dict[str, list[float]] = {"pipeline": [], "raw": [], "naive": []}
    for _ in range(reps):  # interleaved, so machine noise hits all three alike
        t = time.perf_counter()
        encode_documents(tok, docs)
        times["pipeline"].append(mb / (time.perf_counter() - t))
        t = time.perf_counter()
        backend.encode_batch(docs, add_special_tokens=False)
        times["raw"].append(mb / (time.perf_counter() - t))
        t = time.perf_counter()
        for d in naive_sample:
            tok.encode(d)
        times["naive"].append(naive_mb / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"tokenization, GPT-2 BPE, {mb:.1f} MB builtin text ({len(docs)} documents), median of {reps}")
    print(f"  pipeline encode_documents : {med['pipeline']:7.2f} MB/s")
    print(f"  raw tokenizers encode_batch: {med['raw']:7.2f} MB/s")
    print(f"  naive per-line loop       : {med['naive']:7.2f} MB/s (first {naive_docs} documents)")
    print(f"  pipeline / raw   = {med['pipeline'] / med['raw']:.2f}x (goal >= 0.9x)")
    print(f"  pipeline / naive = {med['pipeline'] / med['naive']:.2f}x")


def make_corpus(path: Path, docs: list[str], megabytes: int) -> int:
    text = ("\n".join(docs) + "\n").encode("utf-8")
    with open(path, "wb") as f:
        written = 0
        while written < megabytes * 1_000_000:
            f.write(text)
            written += len(text)
    return written


def streaming(docs: list[str], sizes_mb: list[int], tokens_per_chunk: int, limit_mb: int) -> None:
    print(f"streaming into a token file, chunks of {tokens_per_chunk} tokens, memory allowed {limit_mb} MB")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes_mb:
            corpus = Path(tmp) / f"corpus_{size}.txt"
            n = make_corpus(corpus, docs, size)
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(corpus), str(Path(tmp) / f"tok_{size}"),
                                  str(tokens_per_chunk)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  corpus {n / 1e6:7.1f} MB: peak RSS {r['peak_rss_mb']:6.1f} MB (after imports {r['baseline_rss_mb']:.1f}),"
                  f" corpus / allowed = {n / 1e6 / limit_mb:.1f}x, {r['tokens']} tokens, "
                  f"{n / 1e6 / r['seconds']:.2f} MB/s, {'OK' if r['peak_rss_mb'] < limit_mb else 'OVER'}")
            corpus.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller text and corpora (about a minute)")
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from utils.training.data.sources import builtin_corpus

    docs = builtin_corpus()
    if args.quick:
        throughput(docs[:20_000], reps=3, naive_docs=5_000)
        streaming(docs, [15, 60], tokens_per_chunk=1 << 18, limit_mb=400)  # flatness only: corpus < 3x allowed
    else:
        throughput(docs, reps=5, naive_docs=20_000)
        # 250 MB allowed (the child's RSS after imports is ~210 MB); 800 MB is 3.2x that.
        streaming(docs, [100, 800], tokens_per_chunk=1 << 20, limit_mb=250)


if __name__ == "__main__":
    main()

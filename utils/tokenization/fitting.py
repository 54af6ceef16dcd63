"""Training tokenizers on the medical train split: byte-level BPE, WordPiece and Unigram
(the `tokenizers` library) and sentencepiece Unigram, each at a requested vocab size.

`fit_tokenizer` returns a `ZooTokenizer`; `fit_zoo` trains every family x vocab size
and records the training time of each (seconds, and MB/s of training text).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

from utils.tokenization.zoo import HFTokenizer, SentencePieceTokenizer, ZooTokenizer

FAMILIES = ("bpe", "wordpiece", "unigram", "sp-unigram")
EOS = "<|endoftext|>"


def _bpe(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def _wordpiece(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    # cased, like every other tokenizer here, so that counts compare on the same text
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[UNK]", EOS],
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def _unigram(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, unk_token="<unk>",
                                      special_tokens=["<unk>", EOS], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def sentencepiece_proto(texts: list[str], vocab_size: int, model_type: str = "unigram") -> bytes:
    """Train sentencepiece in memory; returns the serialized model."""
    try:
        import sentencepiece as spm
    except ImportError as e:
        raise ImportError("the sp-unigram family needs: pip install sentencepiece") from e
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size,
        model_type=model_type, character_coverage=1.0,
        hard_vocab_limit=False,  # a small corpus may not support the full size: take what it gives
        input_sentence_size=0, num_threads=1, minloglevel=2,
    )
    return buf.getvalue()


def fit_tokenizer(family: str, texts: list[str], vocab_size: int) -> ZooTokenizer:
    """Train one tokenizer of `family` (see FAMILIES) on `texts`."""
    name = f"{family}-{vocab_size}"
    if family == "bpe":
        return HFTokenizer(_bpe(texts, vocab_size), name, "byte-bpe", space_prefix=True)
    if family == "wordpiece":
        return HFTokenizer(_wordpiece(texts, vocab_size), name, "wordpiece", unk_token="[UNK]")
    if family == "unigram":
        return HFTokenizer(_unigram(texts, vocab_size), name, "unigram", unk_token="<unk>")
    if family == "sp-unigram":
        return SentencePieceTokenizer(sentencepiece_proto(texts, vocab_size), name)
    raise ValueError(f"unknown tokenizer family {family!r}; choose from {', '.join(FAMILIES)}")


@dataclass
class FitRecord:
    name: str
    family: str
    vocab_size: int
    train_seconds: float
    train_mb_per_s: float  # MB (1e6 bytes) of UTF-8 training text per second


def fit_zoo(texts: list[str], families: list[str], vocab_sizes: list[int]) -> tuple[list[ZooTokenizer], list[FitRecord]]:
    """Every family at every vocab size, timed (wall clock, this machine)."""
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    toks, records = [], []
    for family in families:
        for v in vocab_sizes:
            t0 = time.perf_counter()
            tok = fit_tokenizer(family, texts, v)
            dt = time.perf_counter() - t0
            toks.append(tok)
            records.append(FitRecord(tok.name, tok.family, tok.vocab_size, dt, n_bytes / dt / 1e6))
    return toks, records

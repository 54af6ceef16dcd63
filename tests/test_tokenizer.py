"""tokenizer.py: BPE trained and cached, GPT-2 offline, hub offline error, batched encoding."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import PreTrainedTokenizerFast

from utils.training.data.sources import builtin_corpus
from utils.training.data.tokenizer import (
    EOS,
    TokenizerError,
    bytes_per_token,
    encode_documents,
    load_gpt2_tokenizer,
    load_tokenizer,
    train_bpe_tokenizer,
)


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return builtin_corpus()[:3000]


def test_gpt2_tokenizer_offline():
    tok = load_gpt2_tokenizer()
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == 50257 and tok.eos_token == EOS and tok.eos_token_id == 50256
    ids = tok("Cholera due to Vibrio cholerae")["input_ids"]
    assert ids[0] == 1925  # GPT-2's id for "Ch"
    assert tok.decode(ids) == "Cholera due to Vibrio cholerae"


def test_bpe_trains_and_caches(tmp_path, docs):
    tok = train_bpe_tokenizer(docs, 400, cache_dir=tmp_path)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == 400 and tok.eos_token_id is not None
    cached = list(tmp_path.glob("bpe-*-v400.json"))
    assert len(cached) == 1
    again = train_bpe_tokenizer(docs, 400, cache_dir=tmp_path)
    text = docs[5]
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert tok.decode(tok(text)["input_ids"]) == text
    # a different corpus or vocab gets its own cache entry
    train_bpe_tokenizer(docs[:1000], 400, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("bpe-*.json"))) == 2


def test_bpe_vocab_too_small(docs):
    with pytest.raises(TokenizerError, match="vocab_size"):
        train_bpe_tokenizer(docs, 100)


def test_load_tokenizer_specs(tmp_path, docs):
    assert load_tokenizer("gpt2").tokenizer_id == "gpt2"
    assert load_tokenizer("bpe", texts=docs, vocab_size=300, cache_dir=tmp_path).tokenizer_id.startswith("bpe-")
    with pytest.raises(TokenizerError, match="training texts"):
        load_tokenizer("bpe")


def test_hub_tokenizer_offline_names_alternatives():
    with pytest.raises(TokenizerError, match="'bpe'.*'gpt2'"):
        load_tokenizer("no-such-org/no-such-tokenizer")


def test_encode_documents_matches_per_document_encoding(docs):
    tok = load_gpt2_tokenizer()
    sample = docs[:50]
    ids = encode_documents(tok, sample)
    expected = []
    for d in sample:
        expected += tok(d)["input_ids"] + [tok.eos_token_id]
    assert ids.dtype == np.int64 and ids.tolist() == expected
    assert np.count_nonzero(ids == tok.eos_token_id) == len(sample)
    bpt = bytes_per_token(sample, len(ids))
    assert bpt == pytest.approx((sum(len(d.encode()) for d in sample) + len(sample)) / len(ids))

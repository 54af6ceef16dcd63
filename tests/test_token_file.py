"""token_file.py: dtype from vocab, header checks, atomic writes, mismatches are errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from utils.training.data.token_file import TokenFile, TokenFileError, TokenFileWriter, dtype_for_vocab


def test_dtype_for_vocab():
    assert dtype_for_vocab(512) == np.uint16
    assert dtype_for_vocab(65536) == np.uint16
    assert dtype_for_vocab(65537) == np.uint32
    assert dtype_for_vocab(100_277) == np.uint32


@pytest.mark.parametrize("vocab", [512, 100_000])
def test_roundtrip(tmp_path, vocab):
    tokens = np.random.default_rng(0).integers(0, vocab, size=1000)
    tf = TokenFile.write(tmp_path / "train", tokens, vocab, "bpe-x", "abc", num_documents=7)
    assert tf.tokens.dtype == dtype_for_vocab(vocab)
    assert np.array_equal(np.asarray(tf.tokens), tokens)
    again = TokenFile.open(tmp_path / "train.bin", vocab_size=vocab, tokenizer="bpe-x", corpus_hash="abc")
    assert again.header["num_tokens"] == 1000 and again.header["num_documents"] == 7
    assert again.header["max_token"] == tokens.max()
    assert not list(tmp_path.glob("*.tmp"))


def test_out_of_range_token_rejected_on_write(tmp_path):
    with pytest.raises(TokenFileError, match="out of range"):
        TokenFile.write(tmp_path / "t", np.array([1, 2, 600]), 512, "bpe", "h")
    assert not TokenFile.exists(tmp_path / "t") and not list(tmp_path.iterdir())


def test_vocab_and_tokenizer_mismatch_on_read(tmp_path):
    TokenFile.write(tmp_path / "t", np.arange(100), 512, "bpe-a", "h")
    with pytest.raises(TokenFileError, match="vocab_size 512.*70000"):
        TokenFile.open(tmp_path / "t", vocab_size=70000)
    with pytest.raises(TokenFileError, match="tokenizer 'bpe-a'"):
        TokenFile.open(tmp_path / "t", tokenizer="gpt2")


def test_dtype_mismatch_is_an_error_not_garbage(tmp_path):
    TokenFile.write(tmp_path / "t", np.arange(100), 512, "bpe", "h")
    header_path = tmp_path / "t.json"
    header = json.loads(header_path.read_text())
    header["dtype"] = "uint32"  # a header that lies about the dtype
    header_path.write_text(json.dumps(header))
    with pytest.raises(TokenFileError, match="dtype uint32 does not fit"):
        TokenFile.open(tmp_path / "t")
    header["dtype"], header["vocab_size"] = "uint32", 100_000
    header_path.write_text(json.dumps(header))
    with pytest.raises(TokenFileError, match="wrong dtype or truncated"):
        TokenFile.open(tmp_path / "t")


def test_missing_file(tmp_path):
    with pytest.raises(TokenFileError, match="does not exist"):
        TokenFile.open(tmp_path / "nope")


def test_writer_appends_chunks_and_aborts_cleanly(tmp_path):
    with TokenFileWriter(tmp_path / "c", 512, "bpe", "h") as w:
        for i in range(5):
            w.append(np.full(10, i), num_documents=1)
    tf = TokenFile.open(tmp_path / "c")
    assert len(tf) == 50 and tf.header["num_documents"] == 5 and tf.tokens[-1] == 4
    with pytest.raises(RuntimeError):
        with TokenFileWriter(tmp_path / "d", 512, "bpe", "h") as w:
            w.append(np.arange(10))
            raise RuntimeError("interrupted")
    assert not TokenFile.exists(tmp_path / "d") and not list(tmp_path.glob("d*"))

"""Metrics on hand-countable texts, for every tokenizer family."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from utils.tokenization.measure import measure
from utils.tokenization.zoo import ByteTokenizer, CharTokenizer, HFTokenizer, cl100k_tokenizer, gpt2_tokenizer


def check(tok, text, tokens, words, nbytes):
    m = measure(tok, [text])
    assert (m.tokens, m.words, m.bytes) == (tokens, words, nbytes)
    assert m.fertility == pytest.approx(tokens / words)
    assert m.bytes_per_token == pytest.approx(nbytes / tokens)
    return m


def test_bytes_count_utf8_bytes():
    m = check(ByteTokenizer(), "the café", 9, 2, 9)  # é is 2 bytes
    assert m.unk_rate == 0 and m.split_word_share == 1.0


def test_chars_count_characters_and_unknowns():
    tok = CharTokenizer(["the cat sat"])
    m = check(tok, "the dog", 7, 2, 7)
    assert m.unk_rate == pytest.approx(3 / 7)  # d, o, g are not in "the cat sat"
    assert tok.encode("o") == [0]


def test_gpt2_whole_common_words():
    tok = gpt2_tokenizer()
    assert tok.pieces("the cat sat") == ["the", " cat", " sat"]
    m = check(tok, "the cat sat", 3, 3, 11)
    assert m.split_word_share == 0 and tok.vocab_size == 50257


def test_cl100k_whole_common_words():
    tok = cl100k_tokenizer()
    m = check(tok, "the cat sat", 3, 3, 11)
    assert m.split_word_share == 0 and tok.vocab_size == 100277


def test_byte_level_bpe_from_known_merges():
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    for t in ("lo", "low", "\u0120low"):
        vocab[t] = len(vocab)
    bpe = Tokenizer(models.BPE(vocab, [("l", "o"), ("lo", "w"), ("\u0120", "low")]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok = HFTokenizer(bpe, "bpe", "byte-bpe", space_prefix=True)
    assert tok.pieces("low lower") == ["low", " low", "e", "r"]
    m = check(tok, "low lower", 4, 2, 9)
    assert m.split_word_share == 0.5  # " lower" -> 3 tokens, " low" -> 1


def test_wordpiece_from_vocab_with_unknown():
    vocab = {w: i for i, w in enumerate(["[UNK]", "the", "cat", "s", "##s", "##at"])}
    wp = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok = HFTokenizer(wp, "wp", "wordpiece", unk_token="[UNK]")
    assert tok.pieces("the cats sat dog") == ["the", "cat", "s", "s", "at", "dog"]
    m = check(tok, "the cats sat dog", 6, 4, 16)
    assert m.unk_rate == pytest.approx(1 / 6)
    assert m.split_word_share == 0.5  # cats, sat
    assert m.vocab_use == pytest.approx(6 / 6)


def test_unigram_from_vocab():
    uni = Tokenizer(models.Unigram([("<unk>", 0.0), ("\u2581the", -1.0), ("\u2581cat", -1.0), ("s", -2.0)], 0))
    uni.pre_tokenizer = pre_tokenizers.Metaspace()
    tok = HFTokenizer(uni, "uni", "unigram", unk_token="<unk>")
    m = check(tok, "the cats", 3, 2, 8)
    assert m.unk_rate == 0 and m.split_word_share == 0.5

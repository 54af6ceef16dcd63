"""Trained tokenizers: metrics agree with the pieces each family cuts, and a frequent
word takes fewer tokens than bytes."""

from __future__ import annotations

import pytest

from utils.tokenization.fitting import FAMILIES, fit_tokenizer, fit_zoo
from utils.tokenization.measure import measure

CORPUS = ["bacterial pneumonia with renal failure", "pneumonia in pregnancy",
          "heart disease", "renal failure, unspecified"] * 50


@pytest.mark.parametrize("family", FAMILIES)
def test_frequent_word_is_one_token(family):
    tok = fit_tokenizer(family, CORPUS, 400)  # byte-level BPE needs > 257 for any merge
    text = "pneumonia pneumonia"
    pieces = [p for p in tok.pieces(text) if p.strip()]
    m = measure(tok, [text])
    # 2 words, 19 bytes; count the tokens from the pieces the tokenizer shows
    assert m.words == 2 and m.bytes == 19
    assert m.tokens == len(tok.encode(text)) and len(pieces) <= m.tokens < 19
    assert m.fertility == pytest.approx(m.tokens / 2)
    assert m.bytes_per_token == pytest.approx(19 / m.tokens)
    assert m.unk_rate == 0
    if family in ("bpe", "wordpiece"):
        assert tok.word_token_count("pneumonia") == 1


def test_fit_zoo_times_every_family_and_size():
    toks, records = fit_zoo(CORPUS, ["bpe", "wordpiece"], [280, 300])
    assert [t.name for t in toks] == ["bpe-280", "bpe-300", "wordpiece-280", "wordpiece-300"]
    assert all(r.train_seconds > 0 and r.train_mb_per_s > 0 for r in records)


def test_unknown_family_names_the_choices():
    with pytest.raises(ValueError, match="wordpiece"):
        fit_tokenizer("morfessor", CORPUS, 100)

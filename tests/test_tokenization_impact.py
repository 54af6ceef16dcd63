"""Impact arithmetic, corpus helpers, token boxes and figures on small measured data."""

from __future__ import annotations

import numpy as np
import pytest

from utils.tokenization.corpus import bucket_of, control_text, load_corpus
from utils.tokenization.impact import PRICE_SOURCE, ModelShape, activation_bytes, impact_table
from utils.tokenization.measure import bucket_table, measure_zoo
from utils.tokenization.token_boxes import rating, term_pieces
from utils.tokenization.zoo import ByteTokenizer, CharTokenizer, gpt2_tokenizer


def test_activation_formula_by_hand():
    shape = ModelShape(n_layer=2, n_embd=4, n_head=2)
    # per layer s*b*h*(34 + 5*a*s/h) = 8*1*4*(34 + 5*2*8/4) = 32*54
    assert activation_bytes(8, 1, shape) == 2 * 32 * 54


def test_impact_table_scales_measured_counts():
    df = impact_table({"a": np.array([10, 20, 30])}, records=1000, tokens_per_sec=100.0)
    row = df.iloc[0]
    assert row.tokens_per_record == 20 and row.total_tokens_m == 0.02
    assert row.train_hours_per_epoch == pytest.approx(20000 / 100 / 3600)
    assert row.api_cost_usd == pytest.approx(0.02 * 0.50)
    assert "as listed on" in PRICE_SOURCE and "2026" in PRICE_SOURCE
    assert np.isnan(impact_table({"a": np.array([1])}).iloc[0].train_hours_per_epoch)


def test_control_text_is_offline_english_prose():
    paras = control_text(max_bytes=20_000)
    assert 20_000 <= sum(len(p.encode()) for p in paras) < 30_000
    assert all(len(p.split()) >= 12 for p in paras)


def test_corpus_split_and_buckets():
    docs = [f"disease number {i} of the " + "left " * (i % 15) for i in range(200)]
    c = load_corpus(test_split=0.1, seed=0, max_docs=100, documents=docs)
    assert len(c.train) == 90 and len(c.test) == 10 and not set(c.train) & set(c.test)
    assert bucket_of("a b c") == "short (1-5 words)" and bucket_of("w " * 20) == "long (13+)"


def test_rating_and_term_pieces():
    assert rating(5.0, 5.0) == "*****" and rating(1.0, 5.0) == "*...."
    assert term_pieces(gpt2_tokenizer(), "pneumonia") == [" pneumonia"]


def test_dashboard_and_boxes_write_png_and_text(tmp_path):
    from utils.tokenization.figures import dashboard, pipeline_figure
    from utils.tokenization.token_boxes import token_boxes

    med = ["Type 2 diabetes mellitus", "Essential (primary) hypertension with a long tail of words here"]
    zoo = [gpt2_tokenizer(), CharTokenizer(med), ByteTokenizer()]
    df, ms = measure_zoo(zoo, {"medical test": med, "control": ["The cat sat on the mat."]}, speed_bytes=10_000)
    buckets = bucket_table(ms, med)
    imp = impact_table({n: ms[(n, "medical test")].per_doc_tokens for n in buckets.index})
    figs, text = dashboard(df, ms, buckets, imp, tmp_path / "d.png")
    assert len(figs) == 3  # the nine views, three to a figure
    for i in (1, 2, 3):
        assert (tmp_path / f"d_{i}.png").stat().st_size > 10_000
    assert "gpt2" in (tmp_path / "d.txt").read_text()
    assert "fertility" in text
    _, text = token_boxes(zoo[:2], ["pneumonia"], {"gpt2": 4.0, "chars": 1.0}, tmp_path / "b.png")
    assert "pneumonia" in text and (tmp_path / "b.png").exists()
    _, text = pipeline_figure({"a": 1.0, "b": 2.5}, tmp_path / "p.png")
    assert "3.50 s" in text


def test_encode_speed_times_a_megabyte_after_a_warm_up():
    from utils.tokenization.measure import encode_speed

    class Counting:
        def __init__(self):
            self.calls = []

        def encode_batch(self, texts):
            self.calls.append(sum(len(t.encode()) for t in texts))
            return [[0] for _ in texts]

    tok = Counting()
    speed = encode_speed(tok, ["fourteen bytes"] * 1000, min_bytes=1_000_000, repeats=3)
    assert speed > 0 and len(tok.calls) == 4  # one warm-up, then three timed passes (their median)
    assert tok.calls[0] < 1_000_000 <= min(tok.calls[1:])

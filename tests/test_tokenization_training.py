"""The same model trained with two tokenizers on the same number of training bytes."""

from __future__ import annotations

import math

from utils.tokenization.tokenizer_training import compare_tokenizers_by_training, runs_table
from utils.training.data.sources import builtin_corpus
from utils.training.tracking.experiment_db import ExperimentDB


def test_same_training_bytes_bpb_curves_and_a_rerun_shows_the_stored_runs(tmp_path):
    docs = builtin_corpus()[:3000]
    tokenizers = {"domain BPE": {"tokenizer": "bpe", "vocab_size": 512}, "GPT-2 BPE": {"tokenizer": "gpt2"}}
    runs = compare_tokenizers_by_training(docs, tmp_path, 0.01, tokenizers, preset="smoke", evals=2, n_layer=1)
    assert [r.label for r in runs] == ["domain BPE", "GPT-2 BPE"]
    for r in runs:
        bytes_per_step = r.bytes_per_token * 8 * 64  # smoke: batch 8 x block 64 tokens per step
        assert r.steps == math.ceil(0.01e6 / bytes_per_step)
        assert 0.01 <= r.train_mb < 0.01 + bytes_per_step / 1e6  # the same bytes, to within one step
        assert r.curve and all(math.isfinite(b) and b > 0 for _, b in r.curve)
        assert r.final_val_bpb == r.curve[-1][1]
        assert math.isclose(r.final_val_bpb, r.final_val_loss / math.log(2) / r.bytes_per_token, rel_tol=1e-6)
    assert runs[0].vocab_size == 512 and runs[1].vocab_size == 50257
    assert runs[0].bytes_per_token != runs[1].bytes_per_token  # so the step counts differ

    again = compare_tokenizers_by_training(docs, tmp_path, 0.01, tokenizers, preset="smoke", evals=2, n_layer=1)
    assert [r.curve for r in again] == [r.curve for r in runs]  # read back, not re-trained into nothing
    assert list(runs_table(again)["label"]) == ["domain BPE", "GPT-2 BPE"]
    with ExperimentDB(tmp_path / "experiments.db") as db:
        assert sorted(db.list_runs()["run_name"]) == ["tok-domain-bpe", "tok-gpt-2-bpe"]

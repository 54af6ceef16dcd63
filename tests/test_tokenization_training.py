"""The same model trained with two tokenizers on the same number of training bytes."""

from __future__ import annotations

import math

from utils.tokenization.tokenizer_training import compare_tokenizers_by_training, eval_steps, runs_table
from utils.training.data.sources import builtin_corpus
from utils.training.tracking.experiment_db import ExperimentDB


def test_same_training_bytes_bpb_curves_and_a_rerun_shows_the_stored_runs(tmp_path):
    docs = builtin_corpus()[:3000]
    tokenizers = {"domain BPE": {"tokenizer": "bpe", "vocab_size": 512}, "GPT-2 BPE": {"tokenizer": "gpt2"}}
    runs = compare_tokenizers_by_training(docs, tmp_path, 0.01, tokenizers, preset="smoke", evals=3, n_layer=1)
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
    assert runs[0].steps != runs[1].steps
    # One evaluation schedule: 3 points in each run, at 1/3, 2/3 and all of the text budget
    # (each within one step's bytes of it), whatever the run's step count.
    for r in runs:
        bytes_per_step = r.bytes_per_token * 8 * 64
        xs = [mb for mb, _ in r.curve]
        assert len(xs) == 3
        for k, mb in enumerate(xs, 1):
            assert k * 0.01 / 3 <= mb + 1e-12 < k * 0.01 / 3 + bytes_per_step / 1e6

    again = compare_tokenizers_by_training(docs, tmp_path, 0.01, tokenizers, preset="smoke", evals=3, n_layer=1)
    assert [r.curve for r in again] == [r.curve for r in runs]  # read back, not re-trained into nothing
    assert list(runs_table(again)["label"]) == ["domain BPE", "GPT-2 BPE"]
    with ExperimentDB(tmp_path / "experiments.db") as db:
        assert sorted(db.list_runs()["run_name"]) == ["tok-domain-bpe", "tok-gpt-2-bpe"]


def test_eval_steps_fall_at_the_same_fractions_of_the_text_budget():
    # 10,000 bytes at 700 and at 1,900 bytes a step: 15 and 6 steps, 3 evaluations each.
    assert eval_steps(10_000, 700, 3) == [5, 10, 15]
    assert eval_steps(10_000, 1_900, 3) == [2, 4, 6]
    assert eval_steps(10_000, 1_000, 4) == [3, 5, 8, 10]  # 2,500 -> step 3 (3,000 bytes), not step 2
    assert eval_steps(4_100, 1_000, 5) == [1, 2, 3, 4, 5]  # as many steps as evaluations: each one

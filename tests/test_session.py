"""TrainingSession: the summary card's numbers, resume detection, mirror restore, training
and export, on a small slice of the built-in corpus with the smoke preset."""

from __future__ import annotations

import shutil

import pytest

from utils.training.config import TrainingConfig
from utils.training.data.sources import TextCorpus, builtin_corpus
from utils.training.engine.memory import estimate_training_memory_gb
from utils.training.session import ReportingOptions, TrainingSession
from utils.training.summary import format_summary
from utils.training.text import CHINCHILLA_TOKENS_PER_PARAM
from utils.training.workspace import Workspace


@pytest.fixture(scope="module")
def corpus() -> TextCorpus:
    return TextCorpus(builtin_corpus()[:4000], name="icd10cm-slice", source="builtin")


def session_for(ws, corpus, **overrides) -> TrainingSession:
    config = TrainingConfig.preset("smoke", max_steps=6, eval_interval=3, checkpoint_interval=3, **overrides)
    return TrainingSession(config, ws, corpus=corpus, tracking=ReportingOptions(progress_bar=False))


def test_summary_numbers_follow_from_config_model_and_data(tmp_path, corpus):
    s = session_for(tmp_path, corpus)
    card = s.summary()
    cfg = s.config
    assert cfg.vocab_size == s.data.vocab_size  # the tokenizer decides the real vocabulary
    assert card["tokens_planned"] == 6 * cfg.batch_size * cfg.block_size
    assert card["chinchilla_tokens"] == CHINCHILLA_TOKENS_PER_PARAM * card["parameters"]
    assert card["chinchilla_pct"] == pytest.approx(100 * card["tokens_planned"] / card["chinchilla_tokens"])
    assert card["precision"] == "fp32"  # CPU
    assert card["memory_estimate_gb"] == estimate_training_memory_gb(cfg, card["parameters"], "fp32")
    assert card["synthetic_data"] is False
    text = format_summary(card)
    assert f"{card['parameters']:,}" in text and "Chinchilla" in text
    s.close()


def test_memory_estimate_grows_with_batch_and_halves_activations_in_16_bit():
    cfg = TrainingConfig.preset("smoke")
    n = 100_000
    fp32, bf16 = estimate_training_memory_gb(cfg, n, "fp32"), estimate_training_memory_gb(cfg, n, "bf16")
    weights = 16 * n / 2**30
    logits = 2 * cfg.batch_size * cfg.block_size * cfg.vocab_size * 4 / 2**30
    assert fp32 - weights - logits == pytest.approx(2 * (bf16 - weights - logits))
    assert estimate_training_memory_gb(cfg.replace(batch_size=16), n, "fp32") > fp32


def test_train_resume_line_and_export(tmp_path, corpus):
    s = session_for(tmp_path, corpus)
    assert s.resume_line().startswith("Starting run smoke from step 0")
    result = s.train()
    assert result.status == "completed" and result.state.step == 6
    assert s.last_samples() and {"prompt", "output"} <= set(s.last_samples()[0])
    exported = s.export()
    assert (exported / "config.json").is_file() and (exported / "tokenizer.json").is_file()
    assert (s.run_dir / "run.json").is_file() and (s.run_dir / "config.json").is_file()
    s.close()
    again = session_for(tmp_path, corpus)
    again.prepare()
    assert again.resume_step() == 6
    assert again.resume_line() == "Resuming run smoke from step 6 (newest valid checkpoint)."
    again.close()


def test_a_fresh_vm_resumes_from_the_mirrored_checkpoints(tmp_path, corpus):
    # A Colab-style workspace: checkpoints on "local disk", mirrored to "Drive".
    ws = Workspace(tmp_path / "drive", local=tmp_path / "vm")
    s = session_for(ws, corpus, time_limit_s=0.001)  # stops after step 1, with a checkpoint
    assert s.train().state.step == 1
    assert ws.db_mirror_path.is_file()  # backed up after checkpoints by the callback, before close()
    s.close()
    from utils.training.tracking.experiment_db import ExperimentDB

    with ExperimentDB(ws.db_path) as db:  # the row points at the durable run folder, not the VM's checkpoints
        row = db.get_run("smoke")
    assert row["run_dir"] == str(ws.run_dir("smoke"))
    assert row["config_hash"] == s.config.config_hash  # one hash for the run everywhere
    local = ws.checkpoint_run_dir("smoke") / "checkpoints"
    mirror = ws.checkpoint_mirror_dir("smoke")
    assert sorted(p.name for p in mirror.glob("step_*.pt")) == sorted(p.name for p in local.glob("step_*.pt"))

    shutil.rmtree(tmp_path / "vm")  # the runtime died: local disk gone, Drive kept
    again = session_for(ws, corpus)  # no time limit (a resume-safe change): continue to step 6
    assert again.resume_step() == 1
    result = again.train()
    assert result.state.resumed_from_step == 1 and result.state.step == 6
    again.close()


def test_sample_prompts_are_prefixes_of_held_out_documents(tmp_path, corpus):
    s = session_for(tmp_path, corpus)
    s.prepare()
    for prompt, reference, doc in zip(s.sample_prompts(), s.sample_references(), s.data.val_documents):
        assert doc == prompt + reference and 0 < len(prompt) < len(doc)
    s.close()


def test_tracking_options_never_show_the_key():
    options = ReportingOptions(wandb_project="p", wandb_api_key="canary-key-0123456789")
    assert "canary-key" not in repr(options) and "canary-key" not in str(options)


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path, corpus, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # tests default to disabled; this one runs W&B offline
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    tracking = ReportingOptions(wandb_project="resume-test", wandb_mode="offline", progress_bar=False)

    def run(time_limit_s: float):
        config = TrainingConfig.preset("smoke", max_steps=6, eval_interval=3, checkpoint_interval=3,
                                       time_limit_s=time_limit_s)
        s = TrainingSession(config, tmp_path, corpus=corpus, tracking=tracking)
        result = s.train()
        s.close()
        return result

    first = run(time_limit_s=0.001)  # stops after one step, with a checkpoint
    assert first.status == "stopped_early" and first.state.step == 1
    wandb_id = first.state.tracking["wandb_run_id"]
    second = run(time_limit_s=0.0)
    assert second.status == "completed" and second.state.resumed_from_step == 1
    assert second.state.tracking["wandb_run_id"] == wandb_id
    from utils.training.tracking.experiment_db import ExperimentDB

    with ExperimentDB(tmp_path / "experiments.db") as db:
        row = db.get_run("smoke")
    assert row["wandb_run_id"] == wandb_id


def test_chunk_mode_session_summarises_and_trains_without_a_corpus_size(tmp_path, corpus):
    from utils.training.config_rules import ConfigError

    options = {"mode": "chunk", "tokens_per_chunk": 4096}
    s = TrainingSession(TrainingConfig.preset("smoke", max_steps=4, eval_interval=2), tmp_path, corpus=corpus,
                        data_options=options, tracking=ReportingOptions(progress_bar=False))
    card = s.summary()
    assert card["train_tokens"] is None and card["epochs_planned"] is None and card["max_steps"] == 4
    assert "size unknown" in format_summary(card)
    assert s.train().state.step == 4
    s.close()
    by_epochs = TrainingSession(TrainingConfig.preset("smoke", max_steps=0, run_name="epochs"), tmp_path,
                                corpus=corpus, data_options=options)
    with pytest.raises(ConfigError, match="max_steps"):
        by_epochs.summary()


@pytest.mark.parametrize("overrides, words", [
    ({"batch_size": 65536}, ["batch_size = 65536", "this machine", "GiB RAM", "activations"]),
    ({"memory_limit_gb": 0.001}, ["batch_size = 8", "memory_limit_gb = 0.001", "gradient_accumulation_steps"]),
])
def test_a_run_that_cannot_fit_is_refused_before_anything_is_allocated(tmp_path, corpus, overrides, words):
    from utils.training.config_rules import ConfigError

    s = session_for(tmp_path, corpus, **overrides)
    with pytest.raises(ConfigError) as e:
        s.train()
    for w in words:
        assert w in str(e.value)
    assert s.trainer is None and not (s.run_dir / "checkpoints").exists()  # refused before the trainer existed
    s.close()


def test_run_facts_are_measured_once_and_handed_to_the_card_the_memory_check_and_the_trainer(
        tmp_path, corpus, monkeypatch):
    from utils.training.engine import run_facts

    measured = []
    real = run_facts.measure_run_facts
    monkeypatch.setattr(run_facts, "measure_run_facts", lambda *a, **k: measured.append(1) or real(*a, **k))
    config = TrainingConfig.preset("smoke", max_steps=2, eval_interval=2, checkpoint_interval=2)
    s = TrainingSession(config, tmp_path, corpus=corpus, tracking=ReportingOptions(progress_bar=False))
    card = s.summary()
    s.check_memory()
    result = s.train()
    assert result.status == "completed" and len(measured) == 1
    assert s.trainer.run_facts is s.facts
    assert card["parameters"] == s.facts.n_params == s.parameters["total"]
    assert card["precision"] == s.facts.precision == "fp32"
    import json

    info = json.loads((s.run_dir / "run.json").read_text())["run_info"]
    assert info["parameters"] == s.facts.n_params and info["config_hash"] == s.config.config_hash
    assert info["model"]["n_params"] == s.facts.n_params and info["hardware"]["device"] == "cpu"
    assert info["max_steps"] == card["max_steps"] == 2
    s.close()


def test_callbacks_are_built_once(tmp_path, corpus):
    s = session_for(tmp_path, corpus)
    s.prepare()
    first = s.callbacks()
    assert s.callbacks() is first
    from utils.training.tracking.metrics import MetricsTracker

    tracker = next(cb for cb in first if isinstance(cb, MetricsTracker))
    assert next(cb for cb in s.callbacks() if isinstance(cb, MetricsTracker)).sinks is tracker.sinks  # one run
    s.close()

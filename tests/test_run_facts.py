"""RunFacts: one measurement of a run's facts (parameters, FLOPs, precision, device),
import-light, and the run_info keys the sinks and readers have always read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from utils.training.config import TrainingConfig
from utils.training.engine.memory import memory_problem
from utils.training.engine.models import build_model, count_parameters, flops_per_token
from utils.training.engine.run_facts import measure_run_facts

ROOT = Path(__file__).resolve().parents[1]


def test_importing_run_facts_imports_no_torch():
    code = "import sys, utils.training.engine.run_facts; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_facts_of_a_cpu_run_and_their_run_info_keys():
    cfg = TrainingConfig.preset("smoke", max_steps=0, epochs=2.0)
    model = build_model(cfg)
    facts = measure_run_facts(cfg, model, device="cpu", train_tokens=10 * cfg.tokens_per_step)
    counts = count_parameters(model)
    assert (facts.n_params, facts.n_params_non_embedding) == (counts["total"], counts["non_embedding"])
    assert facts.flops_per_token == flops_per_token(cfg, counts["non_embedding"])
    assert (facts.precision, facts.device, facts.gpu_name, facts.max_steps) == ("fp32", "cpu", "", 20)
    assert facts.memory_gb == facts.ram_gb > 0
    info = facts.run_info()
    assert info["parameters"] == facts.n_params and info["non_embedding_parameters"] == facts.n_params_non_embedding
    assert (info["device"], info["device_name"], info["config_hash"]) == ("cpu", "cpu", cfg.config_hash)
    assert facts.hardware()["n_gpus"] == 0 and facts.model(cfg)["vocab_size"] == cfg.vocab_size


def test_the_memory_check_reads_the_facts():
    cfg = TrainingConfig.preset("smoke")
    facts = measure_run_facts(cfg, build_model(cfg), device="cpu")
    assert memory_problem(cfg, facts) is None
    problem = memory_problem(cfg.replace(memory_limit_gb=0.001), facts)
    assert problem.field == "batch_size" and "memory_limit_gb = 0.001" in problem.message


def test_muons_precision_is_a_fact_on_the_card(monkeypatch):
    from utils.training.engine import device
    from utils.training.summary import format_summary, summary_card

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)  # an AVX2 CPU
    cfg = TrainingConfig.preset("smoke", optimizer="muon")
    facts = measure_run_facts(cfg, build_model(cfg), device="cpu", train_tokens=10 * cfg.tokens_per_step)
    assert facts.muon_precision == "fp32" and facts.run_info()["muon_precision"] == "fp32"
    text = format_summary(summary_card(cfg, facts, {}, 4.0, ""))
    assert "Newton-Schulz in fp32 (muon_precision auto: bf16 where this device multiplies it natively" in text
    adamw = cfg.replace(optimizer="adamw")
    facts = measure_run_facts(adamw, build_model(adamw), device="cpu", train_tokens=10 * cfg.tokens_per_step)
    assert facts.muon_precision == "" and "Newton-Schulz" not in format_summary(summary_card(adamw, facts, {}, 4.0, ""))


def test_the_card_gives_the_learning_rates_the_optimizer_is_built_with():
    from utils.training.summary import format_summary, summary_card

    cfg = TrainingConfig.preset("smoke", optimizer="muon", muon_lr=0.02, learning_rate=2e-3, embedding_lr=0.016)
    facts = measure_run_facts(cfg, build_model(cfg), device="cpu", train_tokens=10 * cfg.tokens_per_step)

    def row(config):
        text = format_summary(summary_card(config, facts, {}, 4.0, ""))
        return next(line.split(None, 2)[2] for line in text.splitlines() if line.startswith("learning rates"))

    assert row(cfg) == ("Muon 0.02 (original scaling) on the block matrices, AdamW 0.016 on the embeddings, "
                        "head and norms; cosine after 3 warmup steps")  # smoke: 30 steps x warmup_ratio 0.1
    assert row(cfg.replace(optimizer="adamw")) == ("adamw 0.002 on the block matrices, 0.016 on the embeddings, "
                                                   "head and norms; cosine after 3 warmup steps")
    assert row(cfg.replace(optimizer="adamw", embedding_lr="auto")) == "0.002 (adamw); cosine after 3 warmup steps"

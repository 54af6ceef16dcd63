"""The speedrun preset and bench/speedrun.py: the preset's recipe, MFU against the peak
table, the time to a val bits/byte, and the command's smoke run on the CPU."""

from __future__ import annotations

import json
import math
import re

import pytest

from bench import speedrun
from utils.training.config import TrainingConfig


def test_speedrun_preset_is_gpt2_124m_shaped_with_the_modern_recipe():
    cfg = TrainingConfig.preset("speedrun")
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.block_size) == (12, 768, 12, 1024)
    assert (cfg.precision, cfg.compile, cfg.optimizer, cfg.model_family) == ("bf16", "on", "muon", "nanogpt")
    assert cfg.qk_norm and cfg.relu2_mlp and cfg.zero_init_proj and not cfg.tie_embeddings
    assert cfg.logit_softcap in (15.0, 30.0) and (cfg.value_embeds or cfg.unet_skips)
    assert cfg.vocab_size % 64 == 0 and cfg.tokens_per_step == 65536


def test_flops_per_token_counts_each_matmul_of_the_speedrun_model_once():
    """6N + 12LHQT with N = the blocks' matrices plus the untied head once: value
    embeddings are lookups (no FLOPs), the soft-cap and U-net skips are elementwise."""
    from utils.training.engine.models import default_d_ff, flops_per_token

    cfg = TrainingConfig.preset("speedrun")
    d, L, V, T = cfg.d_model, cfg.n_layer, cfg.vocab_size, cfg.block_size
    d_ff = cfg.d_ff or default_d_ff(cfg.model_family, d, cfg.relu2_mlp)
    matmul_weights = L * (4 * d * d + 2 * d * d_ff) + V * d  # q, k, v, o; relu² MLP in and out; head
    expected = 6 * matmul_weights + 12 * L * d * T
    # rel 1%: the norm gains and skip scalars are counted as weights by convention (Kaplan);
    # a head counted twice (+7%) or value embeddings counted as matmuls (+20%) fail
    counted = flops_per_token(cfg)  # built on the meta device
    assert counted == pytest.approx(expected, rel=0.01)
    assert counted == pytest.approx(660.6e6, rel=0.001)  # docs/speedrun.md's figure


def test_mfu_is_tokens_per_sec_times_flops_over_the_gpus_peak():
    peak = 989.4e12  # H100 SXM dense bf16
    value, shown = speedrun.mfu_text(1e6, 0.5 * peak / 1e6, "NVIDIA H100 80GB HBM3")
    assert value == pytest.approx(0.5) and shown == "0.500"
    value, _ = speedrun.mfu_text(250_000, 6 * 124e6, "NVIDIA A100-SXM4-80GB")
    assert value == pytest.approx(250_000 * 6 * 124e6 / 312e12)


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-40GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12), ("NVIDIA L4", 121e12),
    ("Tesla T4", 65e12),
])
def test_peak_of_each_gpu_comes_from_the_peak_table(name, peak):
    value, _ = speedrun.mfu_text(1e6, 1e8, name)  # 1e14 FLOP/s of work
    assert value == pytest.approx(1e14 / peak, rel=0.001)


@pytest.mark.parametrize("name", ["NVIDIA L40S", "NVIDIA GeForce GTX 1080", "AMD Instinct MI300X"])
def test_a_gpu_not_in_the_table_gets_no_guessed_mfu(name):
    value, shown = speedrun.mfu_text(1e6, 1e8, name)
    assert value is None and shown.startswith("n/a (unknown peak") and name in shown


@pytest.mark.parametrize("name", ["", "cpu"])
def test_cpu_has_no_mfu(name):
    assert speedrun.mfu_text(1e6, 1e8, name) == (None, "n/a (cpu)")


def test_minutes_to_bpb_interpolates_between_evaluations():
    curve = [(10, 1.0, 10.0), (20, 0.6, 20.0), (30, 0.4, 30.0)]
    assert speedrun.seconds_to_reach(curve, 0.5) == pytest.approx(25.0)
    assert speedrun.seconds_to_reach(curve, 0.6) == pytest.approx(20.0)
    assert speedrun.seconds_to_reach(curve, 2.0) == pytest.approx(10.0)  # the first evaluation already there
    assert speedrun.seconds_to_reach(curve, 0.3) is None


def test_steady_tokens_per_sec_leaves_out_the_first_window():
    assert speedrun.steady_tokens_per_sec([10.0, 100.0, 110.0, 90.0]) == 100.0
    assert speedrun.steady_tokens_per_sec([42.0]) == 42.0
    assert math.isnan(speedrun.steady_tokens_per_sec([]))


def test_clock_counts_training_time_without_evaluations_and_syncs_only_at_evaluation_steps(monkeypatch):
    from types import SimpleNamespace

    now = [0.0]
    monkeypatch.setattr(speedrun.time, "perf_counter", lambda: now[0])
    syncs = []
    clock = speedrun.Clock(eval_interval=2, sync=lambda: syncs.append(now[0]))
    state = SimpleNamespace(step=0, max_steps=5)
    clock.on_train_begin(state, None)
    # a step takes 1 s (the last 1.5 s), each evaluation (after steps 2, 4 and 5) 10 s
    for step, ends_at in enumerate([1.0, 2.0, 13.0, 14.0, 25.5], start=1):
        now[0], state.step = ends_at, step
        clock.on_step_end(state, None)
        if step in (2, 4, 5):
            now[0] += 10.0
            clock.on_evaluate(state, None, metrics={"val_bpb": 1.0 / step})
    assert syncs == [2.0, 14.0, 25.5]  # the steps that evaluate (the last always does)
    assert [(s, t) for s, _, t in clock.curve] == [(2, 2.0), (4, 4.0), (5, 5.5)]


def test_report_prints_a_gpus_figures(capsys):
    curve = [(5, 0.9, 1.0), (10, 0.6, 2.0)]
    speedrun.report({"device": "NVIDIA H100 80GB HBM3", "status": "completed", "steps": 10, "epochs": 0.6,
                     "train_s": 2.0, "compile_s": 51.04, "curve": curve, "final_val_bpb": 0.6,
                     "window_tokens_per_sec": [1e5, 6.7e5], "peak_memory_gib": 31.2,
                     "flops_per_token": 660602988.0, "tokens_per_sec": 6.7e5, "mfu_text": "0.447",
                     "minutes_to_bpb": [(0.667, 1.8 / 60), (0.55, None)]})
    lines = capsys.readouterr().out.strip().splitlines()
    assert "best 0.6000 at step 10" in lines[0]
    assert lines[1:] == ["speedrun device NVIDIA H100 80GB HBM3", "speedrun compile_s 51.0",
                         "speedrun peak_memory_gib 31.20", "speedrun flops_per_token 6.606e+08",
                         "speedrun tokens_per_sec 670000", "speedrun mfu 0.447",
                         "speedrun minutes_to_bpb 0.667 0.030", "speedrun minutes_to_bpb 0.55 not-reached"]


def test_the_full_preset_without_a_gpu_is_refused_naming_smoke(monkeypatch, capsys):
    monkeypatch.setattr(speedrun, "cuda_available", lambda: False)
    assert speedrun.main([]) == 2
    assert "--smoke" in capsys.readouterr().err


def test_an_invalid_override_is_named_and_nothing_runs(capsys):
    assert speedrun.main(["--smoke", "--preset", "smoke", "--set", "n_layer=0"]) == 2
    assert "n_layer" in capsys.readouterr().err


@pytest.fixture
def small_corpus(tmp_path):
    """2,000 documents of the built-in corpus as a local file (the whole one takes ~20 s to tokenise)."""
    from utils.training.data.sources import builtin_corpus

    path = tmp_path / "icd10.txt"
    path.write_text("\n".join(builtin_corpus()[:2000]) + "\n", encoding="utf-8")
    return path


def test_smoke_run_on_cpu_ends_with_the_machine_readable_lines(small_corpus, tmp_path, monkeypatch, capsys):
    # the speedrun preset itself once arch's fields are merged; until then the cpu preset's llama
    preset = "speedrun"
    monkeypatch.setenv("OUT", str(tmp_path))
    argv = ["--smoke", "--preset", preset, "--set", "data_source=local", "--set", f"data_path={small_corpus}",
            "--steps", "4", "--set", "eval_interval=2", "--target-bpb", "100", "--workspace", str(tmp_path / "ws")]
    assert speedrun.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any("smoke run" in line for line in out)
    lines = out[-8:]  # the machine-readable lines end the output, in this order
    assert lines[:3] == ["speedrun device cpu", "speedrun compile_s 0.0", "speedrun peak_memory_gib n/a (cpu)"]
    assert re.fullmatch(r"speedrun flops_per_token \d\.\d+e\+\d\d", lines[3])
    assert re.fullmatch(r"speedrun tokens_per_sec \d+", lines[4])
    assert lines[5] == "speedrun mfu n/a (cpu)"
    assert re.fullmatch(r"speedrun minutes_to_bpb 0\.667 (\d+\.\d+|not-reached)", lines[6])
    # target 100 bits/byte: reached at the first evaluation, in training seconds (compile, evaluation excluded)
    match = re.fullmatch(r"speedrun minutes_to_bpb 100 (\d+\.\d+)", lines[7])
    assert match, lines[7]
    assert not (tmp_path / "ws" / "runs").exists()  # the workspace keeps data only: a second run starts afresh
    result = json.loads((tmp_path / "speedrun.json").read_text())
    steps = [s for s, _, _ in result["curve"]]
    seconds = [t for _, _, t in result["curve"]]
    assert steps == [2, 4] and seconds == sorted(seconds) and seconds[0] > 0
    assert float(match.group(1)) == pytest.approx(seconds[0] / 60, abs=1e-3)
    assert [t for t, _ in result["minutes_to_bpb"]] == [0.667, 100.0]
    assert result["mfu"] is None and result["status"] == "completed" and result["tokens_per_sec"] > 0

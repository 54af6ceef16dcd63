"""engine/sampling.py (streamed, seeded generation), export/run_model.py (a stored run's
model back) and the `generate` command, on a tiny run made by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.export_fixtures import make_run
from utils.training.engine.sampling import SamplingOptions, generate, stream_generate
from utils.training.export.run_model import RunModelError, load_run_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("gen"))


def test_the_same_seed_gives_the_same_text_and_another_seed_another(run):
    _, model, tok, _ = run
    options = SamplingOptions(max_new_tokens=20, temperature=1.0, top_k=0, top_p=1.0, seed=7)
    a = generate(model, tok, "Patient 3 reports", options)
    b = generate(model, tok, "Patient 3 reports", options)
    assert a.token_ids == b.token_ids and a.text == b.text and len(a.token_ids) > 0
    others = {tuple(generate(model, tok, "Patient 3 reports", SamplingOptions(
        max_new_tokens=20, temperature=1.0, top_k=0, top_p=1.0, seed=s)).token_ids) for s in range(8, 12)}
    assert len(others | {tuple(a.token_ids)}) > 1


def test_generation_leaves_the_global_rng_alone(run):
    _, model, tok, _ = run
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(model, tok, "Patient", SamplingOptions(max_new_tokens=5, temperature=1.0))
    assert torch.equal(torch.rand(3), expected)


def test_greedy_matches_transformers_generate(run):
    _, model, tok, _ = run
    model.eval()
    ids = tok("Patient 12 reports", return_tensors="pt")["input_ids"]
    ours = generate(model, tok, "Patient 12 reports", SamplingOptions(max_new_tokens=10, temperature=0))
    ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
                         pad_token_id=tok.eos_token_id)[0, ids.size(1):].tolist()
    n = len(ours.token_ids)
    assert ours.token_ids == ref[:n]
    # top_k=1 is greedy whatever the temperature and seed
    k1 = generate(model, tok, "Patient 12 reports", SamplingOptions(max_new_tokens=10, temperature=2.0, top_k=1,
                                                                     seed=99))
    assert k1.token_ids == ours.token_ids


def test_pieces_stream_and_add_up_to_the_text_with_timings(run):
    _, model, tok, _ = run
    stream = stream_generate(model, tok, "Follow-up", SamplingOptions(max_new_tokens=12, temperature=1.0, seed=1))
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            result = done.value
            break
    assert "".join(pieces) == result.text
    assert len(pieces) >= 1
    assert result.ttft_s > 0 and result.total_s >= result.ttft_s
    assert result.stopped in ("max_new_tokens", "eos", "context")
    assert "tokens/s" in result.timing_line()


def test_the_context_bounds_the_new_tokens(run):
    _, model, tok, config = run
    result = generate(model, tok, "Patient 1 reports cholera", SamplingOptions(max_new_tokens=500, temperature=0.5),
                      block_size=config.block_size)
    assert result.prompt_tokens + len(result.token_ids) <= config.block_size


@pytest.mark.parametrize("field,value", [("temperature", -1.0), ("temperature", float("nan")), ("top_p", 0.0),
                                         ("top_k", -2), ("max_new_tokens", 0)])
def test_bad_options_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**{field: value})


@pytest.mark.parametrize("which", ["best", "newest", "export"])
def test_a_stored_run_loads_from_each_checkpoint_choice(run, which):
    ws, model, tok, _ = run
    loaded = load_run_model(ws, "tiny", which)
    ids = tok("Patient 5", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, model.eval()(ids).logits, atol=1e-5)
    assert loaded.tokenizer("Patient 5")["input_ids"] == ids[0].tolist()
    assert loaded.step == (None if which == "export" else 12)


def test_the_tokenizer_comes_from_the_cache_without_an_export(tmp_path):
    ws, model, tok, _ = make_run(tmp_path, name="noexport", export=False)
    loaded = load_run_model(ws, "noexport", "best")
    assert loaded.tokenizer("cholera due to")["input_ids"] == tok("cholera due to")["input_ids"]
    with pytest.raises(RunModelError, match="no exported model"):
        load_run_model(ws, "noexport", "export")


def test_unknown_run_is_named(run):
    ws = run[0]
    with pytest.raises(RunModelError, match="'nope'.*runs here: tiny"):
        load_run_model(ws, "nope")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "utils.training", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)


def test_generate_command_streams_and_prints_json(run):
    ws = run[0]
    args = ("generate", "--workspace", str(ws.root), "--run", "tiny", "--prompt", "Patient 4", "--seed", "3",
            "--max-new-tokens", "8", "--temperature", "1.0")
    streamed = cli(*args)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.startswith("Patient 4")
    assert "time to first token" in streamed.stderr and "tokens/s" in streamed.stderr
    as_json = cli(*args, "--json")
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)
    assert streamed.stdout.rstrip("\n") == "Patient 4" + result["text"]  # the same seed, the same text
    assert result["step"] == 12 and result["options"]["seed"] == 3
    bad = cli("generate", "--workspace", str(ws.root), "--run", "nope", "--prompt", "x")
    assert bad.returncode == 2 and "nope" in bad.stderr
    bad = cli(*args, "--top-p", "0")
    assert bad.returncode == 2 and "top_p" in bad.stderr

"""export/gguf.py: each family we build (llama, qwen2, gpt2) written to GGUF F16 and Q8_0
with its tokenizer, read back by transformers' GGUF loader and compared with our model
on 16 tokens; what GGUF cannot express is refused by name."""

from __future__ import annotations

import pytest

from tests.export_fixtures import make_run
from utils.training.cli import main
from utils.training.export.gguf import GGUFError, check_gguf, gguf_path, write_gguf

pytest.importorskip("gguf")
TEXT = "Patient 12 reports cholera due to vibrio, fever and cough on day 3. Follow-up in 2 weeks."


@pytest.fixture(scope="module", params=["llama", "qwen2", "gpt2"])
def run(request, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp(f"gguf-{request.param}"), family=request.param)


def test_f16_loads_back_with_the_same_logits_and_tokenizer(run):
    ws, model, tok, _ = run
    path = write_gguf(ws.export_dir("tiny"), "f16")
    assert path == gguf_path(ws.export_dir("tiny"), "f16") and path.name == "tiny-f16.gguf"
    result = check_gguf(path, model, tok, TEXT)
    assert result["max_abs_diff"] < 1e-2, result
    assert result["same_argmax"] and result["same_tokens"]


def test_q8_0_is_smaller_and_close(run):
    ws, model, tok, _ = run
    f16 = write_gguf(ws.export_dir("tiny"), "f16")
    q8 = write_gguf(ws.export_dir("tiny"), "q8_0")
    result = check_gguf(q8, model, tok, TEXT)
    assert q8.stat().st_size < 0.7 * f16.stat().st_size
    # 8-bit blocks of 32 with one scale each: about 1% of these logits' range (weights scaled x3 in the fixture)
    assert result["max_abs_diff"] < 0.3 and result["same_tokens"], result


def test_what_gguf_cannot_express_is_refused_by_name(run):
    ws, model, tok, _ = run
    with pytest.raises(GGUFError, match="q4"):
        write_gguf(ws.export_dir("tiny"), "q4")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(GGUFError, match="not byte-level BPE"):
        write_gguf(ws.export_dir("tiny"), "f16", model=model, tokenizer=PreTrainedTokenizerFast(tokenizer_object=words),
                   out=ws.root / "x.gguf")
    if model.config.model_type == "llama":
        model.config.mlp_bias = True
        try:
            with pytest.raises(GGUFError, match="mlp_bias"):
                write_gguf(ws.export_dir("tiny"), "f16", model=model, tokenizer=tok, out=ws.root / "x.gguf")
        finally:
            model.config.mlp_bias = False


def test_export_command_writes_gguf_and_refuses_an_unknown_type(tmp_path, capsys):
    ws, model, tok, _ = make_run(tmp_path)
    assert main(["export", "--workspace", str(ws.root), "--run", "tiny", "--gguf", "f16,q8_0"]) == 0
    out = capsys.readouterr().out
    assert "tiny-f16.gguf" in out and "tiny-q8_0.gguf" in out
    assert (ws.export_dir("tiny") / "tiny-q8_0.gguf").exists()
    assert main(["export", "--workspace", str(ws.root), "--run", "tiny", "--gguf", "q4_k"]) == 2
    assert "f16, q8_0" in capsys.readouterr().err

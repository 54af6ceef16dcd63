"""export/model_card.py, export/folder.py and export/hub.py through `python -m utils.training
export`: the card and the folder for real; the upload against huggingface_hub's HfApi with
its network calls replaced (files, the private flag, and a canary token nowhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.export_fixtures import make_run
from utils.training.cli import main
from utils.training.export.model_card import card_facts, render_card

CANARY = "hf_CANARYcanary0123456789SECRET"


@pytest.fixture()
def run(tmp_path):
    ws, model, tok, config = make_run(tmp_path / "ws")
    from PIL import Image

    Image.new("RGB", (8, 8), "white").save(ws.dashboard_path("tiny"))
    return ws


def test_export_writes_the_folder_and_a_card_from_the_run_log(run, capsys):
    assert main(["export", "--workspace", str(run.root), "--run", "tiny"]) == 0
    folder = run.export_dir("tiny")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "dashboard.png"):
        assert (folder / name).exists(), name
    card = (folder / "README.md").read_text()
    assert "smoke preset: not a result" in card
    assert "llama (1 layers, d_model 32, 2 heads, 2 kv heads)" in card
    assert "| tokens seen | 6,144 |" in card and "icd10cm (builtin)" in card
    # val_loss 4.5 ± 0.05 nats; bits/byte 2.4 ± 0.05 / ln 2 / 2.7 bytes per token
    assert "4.5000 ± 0.0500" in card and "2.4000 ± 0.0267" in card
    assert "![training dashboard](dashboard.png)" in card
    assert "AutoModelForCausalLM.from_pretrained" in card and "Intended use and limits" in card
    assert "CPU" in card and "training time | 4 s" in card
    # the folder loads and is the model
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(folder)


def test_a_checkpoint_export_describes_that_checkpoints_evaluation(run):
    assert main(["export", "--workspace", str(run.root), "--run", "tiny", "--checkpoint", "best"]) == 0
    folder = run.export_dir("tiny").with_name("model-best")
    assert (folder / "model.safetensors").exists() and "| 12 | 4.5000" in (folder / "README.md").read_text()


def test_a_real_preset_has_no_caveat():
    facts = {"name": "r", "config": {"preset": "fast", "model_family": "gpt2"}, "model": {}, "hardware": {},
             "data": {"name": "mine"}, "eval": {}, "train": {}, "summary": {}}
    card = render_card(facts, repo_id="me/r")
    assert "not a result" not in card and 'from_pretrained("me/r")' in card and "medical" not in card
    assert "n/a" in card  # missing numbers say so, never invented


def test_a_missing_run_log_is_named(tmp_path):
    from utils.training.export.model_card import ModelCardError

    with pytest.raises(ModelCardError, match="run.json"):
        card_facts(tmp_path / "run.json")


class FakeHub:
    """Records what would have gone to the Hub."""

    calls: list = []

    def install(self, monkeypatch):
        from huggingface_hub import HfApi

        calls = self.calls = []

        def create_repo(api, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw, api.token))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(api, *, repo_id, folder_path, **kw):
            files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
            calls.append(("upload_folder", repo_id, files, api.token))

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
        for name in ("whoami", "create_commit", "preupload_lfs_files"):  # anything else would be network
            monkeypatch.setattr(HfApi, name, lambda *a, _name=name, **k: pytest.fail(f"unexpected Hub call {_name}"))
        return self


def test_push_to_hub_uploads_the_folder_privately_and_never_shows_the_token(run, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", CANARY)
    hub = FakeHub().install(monkeypatch)
    assert main(["export", "--workspace", str(run.root), "--run", "tiny", "--push-to-hub", "me/tiny-model"]) == 0
    (create, repo, kw, token), (upload, repo2, files, token2) = hub.calls
    assert create == "create_repo" and repo == repo2 == "me/tiny-model" and kw["private"] is True
    assert token == token2 == CANARY  # handed to HfApi in memory
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "dashboard.png"} <= set(files)
    out = capsys.readouterr()
    assert "uploaded to https://huggingface.co/me/tiny-model (private)" in out.out
    assert CANARY not in out.out + out.err
    for path in run.root.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert 'from_pretrained("me/tiny-model")' in (run.export_dir("tiny") / "README.md").read_text()


def test_public_only_when_asked_and_no_token_is_a_clear_error(run, monkeypatch, capsys):
    hub = FakeHub().install(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", CANARY)
    assert main(["export", "--workspace", str(run.root), "--run", "tiny", "--push-to-hub", "me/x", "--public"]) == 0
    assert hub.calls[0][2]["private"] is False
    monkeypatch.delenv("HF_TOKEN")
    hub.calls.clear()
    assert main(["export", "--workspace", str(run.root), "--run", "tiny", "--push-to-hub", "me/x"]) == 1
    assert "HF_TOKEN" in capsys.readouterr().err and hub.calls == []


def test_a_bad_repo_id_or_run_exits_2_before_writing(run, capsys):
    before = json.dumps(sorted(str(p) for p in run.root.rglob("*")))
    assert main(["export", "--workspace", str(run.root), "--run", "tiny", "--push-to-hub", "no-owner"]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err
    assert main(["export", "--workspace", str(run.root), "--run", "nope"]) == 2
    assert json.dumps(sorted(str(p) for p in run.root.rglob("*"))) == before


def test_a_hub_refusal_is_reported_without_the_token(run, monkeypatch, capsys):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    monkeypatch.setenv("HF_TOKEN", CANARY)
    FakeHub().install(monkeypatch)

    def refuse(api, **kw):
        import httpx

        response = httpx.Response(403, request=httpx.Request("POST", "https://huggingface.co/api/x"))
        raise HfHubHTTPError(f"403 Forbidden: token {CANARY} cannot write to me/x", response=response)

    monkeypatch.setattr(HfApi, "upload_folder", refuse)
    assert main(["export", "--workspace", str(run.root), "--run", "tiny", "--push-to-hub", "me/x"]) == 1
    out = capsys.readouterr()
    assert "403 Forbidden" in out.err and CANARY not in out.out + out.err


def test_the_token_comes_from_colab_secrets_first(monkeypatch):
    import sys
    import types

    from utils.training.export.hub import resolve_hf_token

    userdata = types.SimpleNamespace(get=lambda name: CANARY if name == "HF_TOKEN" else None)
    colab = types.ModuleType("google.colab")
    colab.userdata = userdata
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    monkeypatch.setenv("HF_TOKEN", "from-env")
    assert resolve_hf_token() == CANARY
    monkeypatch.setattr(userdata, "get", lambda name: "")
    assert resolve_hf_token() == "from-env"

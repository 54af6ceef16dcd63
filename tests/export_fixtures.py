"""A stored run made by hand in milliseconds for the export tests: a BPE tokenizer in the
workspace's cache, a tiny model of a family, its checkpoint (best.json too), its
save_pretrained export and a run.json with the run facts the model card reads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.engine_fixtures import tiny_config  # noqa: E402

TEXTS = [f"Patient {i} reports cholera due to vibrio, fever and cough on day {i % 7}. Follow-up in {i % 5} weeks."
         for i in range(200)]


def make_run(root: Path, name: str = "tiny", family: str = "llama", export: bool = True, **overrides):
    """-> (Workspace, model, tokenizer, config) of a run `name` under `root`."""
    import torch

    from utils.training.data.tokenizer import train_bpe_tokenizer
    from utils.training.engine.checkpoint import CheckpointManager
    from utils.training.engine.generation import export_model
    from utils.training.engine.models import build_model
    from utils.training.workspace import Workspace

    ws = Workspace(Path(root)).create()
    tok = train_bpe_tokenizer(TEXTS, 300, cache_dir=ws.tokenizers_dir)
    base = dict(run_name=name, model_family=family, vocab_size=len(tok), block_size=32, d_model=32, n_head=2,
                n_kv_head=2 if family != "gpt2" else 2)
    config = tiny_config(**{**base, **overrides})
    model = build_model(config)
    with torch.no_grad():  # not all-random: bigger weights give peaked logits (a real test of the export)
        for p in model.parameters():
            p.mul_(3.0)
    ws.run_dir(name).mkdir(parents=True, exist_ok=True)
    CheckpointManager(ws.checkpoint_dir(name)).save(
        {"format": 1, "step": 12, "model": model.state_dict(), "config": config.to_dict()}, 12, is_best=True)
    if export:
        export_model(model, tok, ws.export_dir(name))
    run_info = {"model": {"family": family, "n_params": sum(p.numel() for p in model.parameters()),
                          "n_layer": config.n_layer, "d_model": config.d_model, "n_head": config.n_head,
                          "block_size": config.block_size, "vocab_size": len(tok)},
                "hardware": {"device": "cpu", "gpu_name": "", "n_gpus": 0, "torch": torch.__version__},
                "data": {"source": "builtin", "name": "icd10cm", "tokenizer": tok.tokenizer_id,
                         "bytes_per_token": 2.7, "train_tokens": 12345, "synthetic": False}}
    log = {"format": "slm-run-log", "version": 1, "name": name, "status": "completed",
           "config": {**config.to_dict(), "preset": "smoke"}, "run_info": run_info,
           "eval": [{"step": 12, "val_loss": 4.5, "val_bpb": 2.4, "val_loss_se": 0.05, "val_perplexity": 90.0}],
           "train": [{"step": 12, "train_loss": 4.6, "tokens_seen": 6144, "elapsed_s": 3.5}],
           "summary": {}}
    ws.run_log_path(name).write_text(json.dumps(log))
    return ws, model, tok, config

"""A stored run's model and tokenizer, read back from its workspace.

checkpoint: "best" (the checkpoint of the best val_loss, best.json), "newest" (the newest
valid checkpoint, local or mirrored) or "export" (the save_pretrained folder runs/NAME/model).
The tokenizer comes from the export folder when it holds one, else from the workspace's
tokenizer cache (the id the run log recorded), else GPT-2's shipped one. Nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKPOINTS = ("best", "newest", "export")


class RunModelError(ValueError):
    """The run, its checkpoint or its tokenizer is not there; the message names what is."""


@dataclass
class RunModel:
    model: Any  # a transformers causal LM, eval mode, on the CPU
    tokenizer: Any
    run_name: str
    source: str  # the file or folder the weights came from
    step: int | None  # the checkpoint's step (None for an export folder)
    config: Any = None  # the run's TrainingConfig (None when only an export folder was found)
    facts: dict = field(default_factory=dict)  # run.json's run_info (may be empty)

    @property
    def block_size(self) -> int:
        if self.config is not None:
            return int(self.config.block_size)
        c = self.model.config
        return int(getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", 1024))


def run_facts(workspace, run_name: str) -> dict:
    """run.json's run_info ({} when there is no readable run log)."""
    try:
        return json.loads(workspace.run_log_path(run_name).read_text()).get("run_info", {}) or {}
    except (OSError, ValueError):
        return {}


def load_run_model(workspace, run_name: str, checkpoint: str = "best") -> RunModel:
    """The model of run `run_name` in `workspace` (a Workspace), from `checkpoint`."""
    if checkpoint not in CHECKPOINTS:
        raise RunModelError(f"checkpoint: {checkpoint!r} is not one of {', '.join(CHECKPOINTS)}")
    run_dir = workspace.run_dir(run_name)
    export_dir = workspace.export_dir(run_name)
    if not run_dir.exists():
        runs = sorted(p.name for p in workspace.runs_dir.glob("*") if p.is_dir()) if workspace.runs_dir.exists() else []
        raise RunModelError(f"run {run_name!r}: no folder {run_dir} (runs here: {', '.join(runs) or 'none'})")
    facts = run_facts(workspace, run_name)
    if checkpoint == "export":
        if not (export_dir / "config.json").exists():
            raise RunModelError(f"run {run_name!r}: no exported model in {export_dir} (train to the end, or use "
                                "checkpoint 'best' or 'newest')")
        from transformers import AutoModelForCausalLM

        import utils.training.engine.nanogpt  # noqa: F401  (registers our "nanogpt" family with the Auto classes)

        model = AutoModelForCausalLM.from_pretrained(export_dir)
        return RunModel(model.eval(), _tokenizer(workspace, run_name, facts, None), run_name, str(export_dir), None,
                        None, facts)
    path, payload = _checkpoint(workspace, run_name, checkpoint)
    from utils.training.config import TrainingConfig
    from utils.training.engine.models import build_model

    config = TrainingConfig.from_dict(payload["config"])
    model = build_model(config)
    model.load_state_dict(payload["model"])
    return RunModel(model.eval(), _tokenizer(workspace, run_name, facts, config), run_name, str(path),
                    int(payload["step"]), config, facts)


def _checkpoint(workspace, run_name: str, which: str) -> tuple[Path, dict]:
    from utils.training.engine.checkpoint import CheckpointManager, checkpoint_name

    folder = workspace.checkpoint_dir(run_name)
    if not folder.exists():
        raise RunModelError(f"run {run_name!r}: no checkpoints folder {folder}")
    manager = CheckpointManager(folder, mirror_dir=workspace.checkpoint_mirror_dir(run_name))
    if which == "best" and manager.best_step is not None:
        path = folder / checkpoint_name(manager.best_step)
        if path.exists():
            return path, manager.load(path)
        print(f"the best checkpoint (step {manager.best_step}) is gone; using the newest")
    path = manager.latest_valid()
    if path is None:
        raise RunModelError(f"run {run_name!r}: no valid checkpoint in {folder}")
    return path, manager.load(path)


def load_export_tokenizer(folder):
    """The tokenizer of an exported folder, exactly as saved. Not AutoTokenizer: transformers
    5 picks the class from the model's type and gives a qwen2 folder Qwen2's own split
    (digits one by one), which is not the byte-level BPE the model was trained with."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(folder)


def _tokenizer(workspace, run_name: str, facts: dict, config):
    export_dir = workspace.export_dir(run_name)
    if (export_dir / "tokenizer.json").exists():
        return load_export_tokenizer(export_dir)
    tok_id = (facts.get("data") or {}).get("tokenizer", "")
    if tok_id.startswith("bpe-") and (workspace.tokenizers_dir / f"{tok_id}.json").exists():
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        from utils.training.data.tokenizer import EOS

        backend = Tokenizer.from_file(str(workspace.tokenizers_dir / f"{tok_id}.json"))
        return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=EOS)
    spec = getattr(config, "tokenizer", "") if config is not None else ""
    if tok_id == "gpt2" or spec == "gpt2":
        from utils.training.data.tokenizer import load_gpt2_tokenizer

        return load_gpt2_tokenizer()
    if spec and spec != "bpe":
        from utils.training.data.tokenizer import load_tokenizer

        return load_tokenizer(spec)
    raise RunModelError(f"run {run_name!r}: its tokenizer ({tok_id or spec or 'unknown'}) is neither exported in "
                        f"{export_dir} nor cached in {workspace.tokenizers_dir}")

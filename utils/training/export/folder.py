"""The exported folder of a run: save_pretrained weights and tokenizer, the model card
(README.md) and the dashboard image, ready to upload or load. The one place that
assembles it: the `export` command and the notebook's export cell call `export_run`."""

from __future__ import annotations

from pathlib import Path

from utils.training.export.model_card import write_model_card
from utils.training.export.run_model import RunModelError, load_run_model


def default_out_dir(workspace, run_name: str, checkpoint: str) -> Path:
    """runs/NAME/model for the export itself; runs/NAME/model-best (-newest) for a checkpoint."""
    base = workspace.export_dir(run_name)
    return base if checkpoint == "export" else base.with_name(f"{base.name}-{checkpoint}")


def export_run(workspace, run_name: str, checkpoint: str = "export", out_dir=None, repo_id: str = "") -> Path:
    """The folder of `run_name`'s model from `checkpoint` ("export": the folder training wrote,
    completed with a card; "best"/"newest": that checkpoint saved to its own folder), with
    README.md describing exactly those weights. -> the folder."""
    from utils.training.engine.generation import export_model

    out = Path(out_dir) if out_dir else default_out_dir(workspace, run_name, checkpoint)
    step = None
    if checkpoint == "export" and out == workspace.export_dir(run_name):
        if not (out / "config.json").exists():
            raise RunModelError(f"run {run_name!r}: no exported model in {out} (train to the end, or export "
                                "checkpoint 'best' or 'newest')")
    else:
        loaded = load_run_model(workspace, run_name, checkpoint)
        export_model(loaded.model, loaded.tokenizer, out)
        step = loaded.step
    dashboard = workspace.dashboard_path(run_name)
    write_model_card(out, workspace.run_log_path(run_name), step=step, dashboard=dashboard, repo_id=repo_id)
    return out

"""examples/own_loop.py: a plain PyTorch loop tracked with MetricsTracker, LivePlotter,
ExperimentDB and TrainingDashboard in under 20 lines; run for 2 short epochs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_loop.py"


def test_own_loop_example_tracks_a_plain_pytorch_loop(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    lines = EXAMPLE.read_text().splitlines()
    assert sum("# track" in line for line in lines) < 20
    spec = importlib.util.spec_from_file_location("own_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--out", str(tmp_path), "--epochs", "2", "--steps", "4"])
    assert "own-loop: best val loss" in capsys.readouterr().out
    assert (out / "dashboard.png").stat().st_size > 20_000 and (out / "live.png").exists()
    from utils.training.cli import main
    from utils.training.tracking.experiment_db import ExperimentDB

    with ExperimentDB(out / "experiments.db") as db:
        run = db.get_run("own-loop")
        assert run["status"] == "completed" and run["config"]["steps_per_epoch"] == 4
        assert db.get_metrics("own-loop", "val_loss")["step"].tolist() == [3, 7]  # epochs on the batch step axis
        assert len(db.get_metrics("own-loop", "train/batch_loss")) == 8
    assert main(["runs", "plot", "db:own-loop", "--workspace", str(out), "--out", str(tmp_path / "plots")]) == 0

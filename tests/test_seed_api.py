"""The seed notebook's API (transformer-builder-colab-templates) over our classes: each call
its users make, with the shapes they read back, written from issue 18's contract."""

from __future__ import annotations

import importlib
import json
import math
import sys
import types

import pytest
import torch

from utils.training import config as ours
from utils.training.compat.experiment_db import ExperimentDB, ExperimentDBSink, RunExistsError


@pytest.mark.parametrize("module", ["training_config", "metrics_tracker", "seed_manager", "experiment_db",
                                    "live_plotting", "dashboard"])
def test_seed_module_paths_import(module):
    importlib.import_module(f"utils.training.{module}")


# -- TrainingConfig ----------------------------------------------------------------------------
def test_training_config_takes_seed_names_and_says_what_they_became(tmp_path, monkeypatch):
    from utils.training.training_config import TrainingConfig

    cfg = TrainingConfig(num_layers=2, num_heads=4, max_seq_len=64, d_model=64, d_ff=128, learning_rate=3e-3,
                         batch_size=8, epochs=2, model_name="tiny", model_type="gpt", dataset_name="wikitext",
                         dataset_split="train", dataset_subset=None, max_train_samples=100, max_val_samples=10,
                         checkpoint_dir="ckpt", save_every_n_epochs=1, keep_best_only=True, wandb_project="p",
                         wandb_entity=None, run_name=None, notes="baseline", config_version="1.0",
                         early_stopping_patience=3, validation_split=0.1, use_amp=False, deterministic=True)
    assert isinstance(cfg, ours.TrainingConfig)  # the Trainer, CLI and database take it as is
    assert (cfg.n_layer, cfg.n_head, cfg.n_kv_head, cfg.block_size) == (2, 4, 4, 64)
    assert (cfg.num_layers, cfg.num_heads, cfg.max_seq_len, cfg.notes, cfg.model_name) == (2, 4, 64, "baseline", "tiny")
    assert cfg.seed_fields["max_seq_len"] == "block_size" and cfg.seed_fields["notes"] == "metadata"
    assert "num_layers -> n_layer" in cfg.describe_seed_fields()
    assert cfg.validate() is True
    d = cfg.to_dict()
    assert d["max_seq_len"] == 64 and d["block_size"] == 64 and d["notes"] == "baseline" and "created_at" in d
    assert cfg.replace(n_layer=3).num_layers == 3 and TrainingConfig.from_dict(d) == cfg

    monkeypatch.chdir(tmp_path)
    auto = cfg.save()
    assert isinstance(auto, str) and auto.startswith(str(tmp_path)) and "config_" in auto
    in_dir = cfg.save(tmp_path / "new" / "folder")  # parents created
    assert (tmp_path / "new" / "folder").is_dir() and in_dir.endswith(".json")
    name = in_dir.rsplit("/", 1)[1]
    assert len(name) == len("config_YYYYMMDD_HHMMSS.json") and name[7:15].isdigit() and name[16:22].isdigit()
    loaded = TrainingConfig.load(in_dir)
    assert loaded == cfg and loaded.notes == "baseline" and loaded.created_at == cfg.created_at
    with pytest.raises(FileNotFoundError, match="missing.json"):
        TrainingConfig.load(tmp_path / "missing.json")


def test_training_config_loads_a_file_saved_by_the_seed(tmp_path):
    from utils.training.training_config import TrainingConfig

    # Every field of the seed's TrainingConfig with its defaults (asdict of the seed class).
    seed = {"random_seed": 42, "deterministic": False, "learning_rate": 5e-5, "batch_size": 4, "epochs": 10,
            "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0, "use_amp": True,
            "gradient_accumulation_steps": 1, "early_stopping_patience": 5, "validation_split": 0.1,
            "model_name": "custom-transformer", "model_type": "gpt", "vocab_size": 50257, "max_seq_len": 128,
            "d_model": 768, "num_layers": 12, "num_heads": 12, "d_ff": 3072, "dropout": 0.1, "task_name": "lm_tiny",
            "eval_dataset_id": None, "dataset_name": "wikitext-103-v1", "dataset_split": "train",
            "dataset_subset": None, "max_train_samples": None, "max_val_samples": None,
            "checkpoint_dir": "/content/drive/MyDrive/transformer-checkpoints", "save_every_n_epochs": 5,
            "keep_best_only": False, "wandb_project": "transformer-builder-training", "wandb_entity": None,
            "run_name": None, "created_at": "2025-01-15T14:30:22.123456", "config_version": "1.0", "notes": ""}
    path = tmp_path / "config_20250115_143022.json"
    path.write_text(json.dumps(seed, indent=2))
    cfg = TrainingConfig.load(path)
    assert (cfg.n_layer, cfg.n_head, cfg.block_size, cfg.d_model, cfg.vocab_size) == (12, 12, 128, 768, 50257)
    assert cfg.created_at == seed["created_at"] and cfg.checkpoint_dir == seed["checkpoint_dir"]


def test_training_config_errors_list_every_problem_with_right_hints():
    from utils.training.training_config import TrainingConfig

    with pytest.raises(ValueError) as err:
        TrainingConfig(learning_rate=-1.0, batch_size=0, max_seq_lenn=5)
    msg = str(err.value)
    assert "learning_rate" in msg and "batch_size" in msg and "max_seq_lenn" in msg
    with pytest.raises(ValueError, match="did you mean 'block_size'"):
        ours.TrainingConfig.from_dict({"max_seq_len": 128})  # not max_steps
    with pytest.raises(ValueError, match="did you mean 'n_layer'"):
        ours.TrainingConfig.from_dict({"num_layers": 2})
    with pytest.raises(ValueError, match="give one of them"):
        TrainingConfig(num_layers=2, n_layer=3)


def test_compare_configs_and_print_config_diff(capsys):
    from utils.training.training_config import TrainingConfig, compare_configs, print_config_diff

    a = TrainingConfig(learning_rate=5e-5, num_layers=2, notes="a")
    b = TrainingConfig(learning_rate=1e-4, num_layers=2, notes="a", run_name="other")
    diff = compare_configs(a, b)
    assert diff == {"changed": {"learning_rate": (5e-5, 1e-4)}, "added": {}, "removed": {}}  # run_name, created_at skipped
    d2 = compare_configs({"a": 1, "b": 2}, {"a": 1, "c": 3})
    assert d2 == {"changed": {}, "added": {"c": 3}, "removed": {"b": 2}}
    print_config_diff(a, b)
    assert "learning_rate: 5e-05 -> 0.0001" in capsys.readouterr().out


# -- seed_manager --------------------------------------------------------------------------
def test_seed_manager_makes_runs_repeat():
    from utils.training.seed_manager import create_seeded_generator, seed_worker, set_random_seed

    set_random_seed(7)
    a = torch.rand(3)
    set_random_seed(7, deterministic=False)
    assert torch.equal(a, torch.rand(3))
    g1, g2 = create_seeded_generator(3), create_seeded_generator(3)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    seed_worker(0)  # a DataLoader worker_init_fn: seeds numpy and random without error
    with pytest.raises(ValueError, match="seed"):
        set_random_seed(-1)


# -- ExperimentDB --------------------------------------------------------------------------------
def test_experiment_db_seed_calls(tmp_path, capsys):
    db = ExperimentDB(db_path=tmp_path / "experiments.db")
    assert db.db_path == tmp_path / "experiments.db"
    r1 = db.log_run("baseline", {"learning_rate": 5e-5}, notes="first")
    with pytest.raises(RunExistsError, match="on_duplicate='rename'"):
        db.log_run("baseline", {})
    r2 = db.log_run("baseline", {"learning_rate": 1e-4}, on_duplicate="rename")
    assert db.get_run(r2)["run_name"] == "baseline-2" and "baseline-2" in capsys.readouterr().out
    for e, (tl, vl) in enumerate([(3.0, 3.2), (2.5, 2.7), (2.2, 2.9)]):
        db.log_metric(r1, "train/loss", tl, epoch=e)
        db.log_metric(r1, "val/loss", vl, epoch=e)
    db.log_metric(r1, "train/batch_loss", 3.5, step=100, epoch=0)
    db.log_metric(r2, "val/loss", 2.0)  # neither: the metric's next step
    db.log_metric(r2, "val/loss", 1.9)
    db.log_artifact(r1, "checkpoint", "ckpt/epoch_1.pt", {"epoch": 1, "val_loss": 2.7})
    db.log_artifact(r1, "plot", "curves.png", metadata={"dpi": 150})
    db.update_run_status(r1, "completed")

    run = db.get_run(r1)
    assert (run["run_name"], run["config"], run["notes"], run["status"]) == ("baseline", {"learning_rate": 5e-5},
                                                                             "first", "completed")
    with pytest.raises(ValueError, match="Run 999 not found"):  # the seed's error type...
        db.get_run(999)
    with pytest.raises(KeyError):  # ...and ours
        db.get_run(999)
    m = db.get_metrics(r1, "val/loss")
    assert {"metric_id", "run_id", "metric_name", "value", "step", "epoch", "timestamp"} <= set(m.columns)
    assert m["value"].tolist() == [3.2, 2.7, 2.9] and m["epoch"].tolist() == [0, 1, 2]
    assert m["run_id"].unique().tolist() == [r1] and m["metric_id"].is_monotonic_increasing
    assert db.get_metrics(r2, "val/loss")["step"].tolist() == [0, 1]
    batch = db.get_metrics(r1, "train/batch_loss")
    assert batch["step"].tolist() == [100] and batch["epoch"].tolist() == [0]
    art = db.get_artifacts(r1)
    assert json.loads(art["meta_json"][0]) == {"epoch": 1, "val_loss": 2.7}
    assert json.loads(art["meta_json"][1]) == {"dpi": 150}

    runs = db.list_runs(limit=1)
    assert len(runs) == 1 and {"run_id", "run_name", "created_at", "status", "notes"} <= set(runs.columns)
    assert db.list_runs(5)["notes"].tolist() == ["", "first"]  # the seed's positional limit; newest first

    cmp = db.compare_runs([r1, r2, 12345])
    assert list(cmp.columns) == ["run_id", "run_name", "created_at", "status", "final_train_loss",
                                 "final_val_loss", "best_val_loss", "best_epoch", "total_epochs"]
    row = cmp.iloc[0]
    assert (row.run_name, row.final_train_loss, row.final_val_loss, row.best_val_loss, row.best_epoch,
            row.total_epochs) == ("baseline", 2.2, 2.9, 2.7, 1, 3)
    assert list(db.compare_runs([r1, r2], metric="val/loss").columns) == ["baseline", "baseline-2"]  # ours

    best = db.get_best_run("val/loss", mode="min")
    assert (best["run_id"], best["run_name"], best["best_value"]) == (r2, "baseline-2", 1.9)
    assert {"best_epoch", "config"} <= set(best)
    assert db.get_best_run("train/loss", "max")["best_epoch"] == 0
    # Points logged under the seed's names plot as ours (runs plot, the dashboard).
    from utils.training.run_log import load_run

    rec = load_run("db:baseline", db=db)
    assert rec.eval["val_loss"].tolist() == [3.2, 2.7, 2.9] and rec.col("train_loss") is not None
    db.close()


def test_seed_metric_names_read_our_runs(tmp_path):
    """A run of our Trainer logs val_loss; the seed's calls asking for val/loss find it."""
    with ExperimentDB(tmp_path / "e.db") as db:
        run = db.log_run("ours", {})
        db.log_metrics(run, {"train_loss": 3.0, "val_loss": 3.1}, 10)
        db.log_metrics(run, {"train_loss": 2.0, "val_loss": 2.4}, 20)
        assert db.get_metrics(run, "val/loss")["value"].tolist() == [3.1, 2.4]
        assert db.get_best_run("val/loss")["best_step"] == 20
        row = db.compare_runs([run]).iloc[0]
        assert (row.final_train_loss, row.best_val_loss, row.total_epochs) == (2.0, 2.4, 0)


# -- MetricsTracker ---------------------------------------------------------------------------
class FakeWandb(types.ModuleType):
    """Records wandb.log calls: the test is about the steps we send, not W&B's servers."""

    def __init__(self):
        super().__init__("wandb")
        self.run = object()
        self.calls = []

    def log(self, data, step=None, commit=True):
        self.calls.append((dict(data), step))


def test_metrics_tracker_from_any_loop(tmp_path, monkeypatch, capsys):
    from utils.training.metrics_tracker import MetricsTracker

    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    db = ExperimentDB(tmp_path / "e.db")
    tracker = MetricsTracker([ExperimentDBSink(db, "loop", {"lr": 1e-3})], use_wandb=True)
    assert MetricsTracker(use_wandb=False).use_wandb is False and MetricsTracker(False).sinks == []
    for epoch in range(3):
        for _ in range(4):
            tracker.log_scalar("train/batch_loss", 3.0 - 0.1 * len(tracker.get_step_metrics()))
        tracker.log_epoch(epoch, {"loss": 3.0 - epoch, "accuracy": 0.2 + 0.1 * epoch}, {"loss": 3.2 - epoch},
                          learning_rate=1e-3, gradient_norm=0.5, epoch_duration=1.5)
    tracker.log_scalar("lr", 1e-4, step=5)  # an explicit earlier step: W&B still sees no step go back
    tracker.close()
    assert "Epoch 2: train_loss=1.0000 val_loss=1.2000" in capsys.readouterr().out

    df = tracker.get_summary()
    assert list(df.columns) == ["epoch", "train/loss", "train/perplexity", "train/accuracy", "val/loss",
                                "val/perplexity", "val/accuracy", "learning_rate", "gradient_norm", "epoch_duration"]
    assert df["train/perplexity"].iloc[0] == pytest.approx(math.exp(3.0)) and math.isnan(df["val/accuracy"][0])
    assert tracker.get_best_epoch() == 2 and tracker.get_best_epoch("train/accuracy", "max") == 2
    steps = tracker.get_step_metrics()
    assert list(steps.columns) == ["step", "effective_step", "metric", "value", "timestamp"]
    batch = steps[steps["metric"] == "train/batch_loss"]
    assert batch["step"].tolist() == list(range(12)) and steps["step"].is_monotonic_increasing
    assert len(tracker.metrics_history) == 3
    wandb_steps = [s for _, s in fake.calls]
    assert wandb_steps == sorted(wandb_steps) and wandb_steps[-1] == 11
    assert {"train/loss", "val/perplexity"} <= set(fake.calls[4][0])  # the first epoch, at step 3
    # The sink got our names, on the same step axis: runs plot and the dashboard read them.
    run = db.get_run("loop")
    assert run["status"] == "completed" and run["best_val_loss"] == pytest.approx(1.2)
    val = db.get_metrics("loop", "val_loss")
    assert val["step"].tolist() == [3, 7, 11] and val["epoch"].tolist() == [0, 1, 2]
    assert len(db.get_metrics("loop", "train/batch_loss")) == 12
    db.close()

    t = MetricsTracker(use_wandb=False)
    assert t.compute_perplexity(1000.0) == pytest.approx(math.exp(100.0))
    logits = torch.tensor([[[5.0, 1.0], [1.0, 5.0], [5.0, 1.0]]])
    assert t.compute_accuracy(logits, torch.tensor([[0, 0, -100]])) == 0.5
    with pytest.raises(ZeroDivisionError):
        t.compute_accuracy(logits, torch.full((1, 3), -100))
    with pytest.raises(ValueError, match="metric_name"):
        t.log_scalar("", 1.0)
    with pytest.raises(ValueError, match="number"):
        t.log_scalar("x", "high")
    with pytest.raises(ValueError, match="no values"):
        t.get_best_epoch()


# -- LivePlotter and TrainingDashboard ----------------------------------------------------------
def test_live_plotters_take_the_seed_calls(tmp_path):
    from utils.training.live_plotting import CompactLivePlotter, LivePlotter

    p = LivePlotter(metrics=["loss", "perplexity", "accuracy"], figsize=(12, 6), style="whitegrid", mode="text")
    for e in range(3):
        p.update(e, {"loss": 3.0 - e, "accuracy": 0.3}, {"val/loss": 3.1 - e, "val/accuracy": 0.35})
    assert p.train["step"] == [0, 1, 2] and p.val["val_loss"] == [3.1, 2.1, 1.1] and p.best == (1.1, 2)
    path = p.save(tmp_path / "curves.png", dpi=80)
    assert path.stat().st_size > 5000 and "Accuracy" in p.axes and p.axes["Loss"].get_xlabel() == "epoch"
    assert p.mode == "text"  # saving built the figure for the file without switching to display
    c = CompactLivePlotter(figsize=(8, 3), mode="text")
    for e in range(2):
        c.update(e, 2.0 - e, 2.2 - e)
    assert c.save(tmp_path / "compact.png").exists() and list(c.axes) == ["Loss"]


def test_dashboard_plots_the_seed_summary_frame(tmp_path):
    from utils.training.dashboard import TrainingDashboard
    from utils.training.metrics_tracker import MetricsTracker

    t = MetricsTracker(use_wandb=False)
    for e in range(4):
        t.log_epoch(e, {"loss": 3 - 0.3 * e, "accuracy": 0.3 + 0.05 * e}, {"loss": 3.1 - 0.25 * e, "accuracy": 0.3},
                    1e-3, 0.8, 12.0)
    summary = t.get_summary()
    summary["system/gpu_memory_mb"] = 512.0  # as on a GPU
    dash = TrainingDashboard(figsize=(18, 12))
    fig = dash.plot(summary, config={"learning_rate": 1e-3}, title="own loop")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1:] == ["Loss Curves", "Perplexity (lower is better)", "Accuracy", "Learning Rate Schedule",
                          "Gradient Norms", "Training Time per Epoch"]
    assert tuple(fig.get_size_inches()) == (18, 12) and fig.get_suptitle() == "own loop"
    assert "Config: lr=0.001, batch=N/A, epochs=4" in fig.axes[0].texts[0].get_text()
    assert fig.axes[1].get_xlabel() == "epoch"
    out = dash.save(tmp_path / "dash.png", dpi=60)
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no run yet"):
        TrainingDashboard().figure()

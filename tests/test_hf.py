"""ExperimentCallback records a real (tiny) transformers.Trainer run on the built-in corpus."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")


class Windows(torch.utils.data.Dataset):
    """Fixed-length windows of one token stream, as causal-LM examples."""

    def __init__(self, ids: list[int], block: int):
        n = len(ids) // block
        self.x = torch.tensor(ids[: n * block]).view(n, block)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}


def test_trainer_run_lands_in_db_run_log_and_dashboard(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DISABLED", "true")
    from utils.training.experiment_db import ExperimentDB
    from utils.training.hf import ExperimentCallback
    from utils.training.live_plotting import LivePlotter

    from utils.training import TrainingConfig, build_model, builtin_corpus, train_bpe_tokenizer
    from utils.training.cli import main

    docs = builtin_corpus()[:1500]
    tok = train_bpe_tokenizer(docs[:1200], 300)
    ids = [i for row in tok(docs, add_special_tokens=False)["input_ids"] for i in row]
    cfg = TrainingConfig.preset("smoke", vocab_size=len(tok), block_size=32)
    model = build_model(cfg)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=4, per_device_eval_batch_size=4,
        logging_steps=2, eval_strategy="steps", eval_steps=3, save_strategy="no", report_to=[], use_cpu=True,
        learning_rate=3e-3, disable_tqdm=True, dataloader_num_workers=0, run_name="hf-tiny")
    n_val = 4 * 32 * 4
    plotter = LivePlotter(mode="text")
    cb = ExperimentCallback(tmp_path / "ws" / "experiments.db", live_plot=plotter)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Windows(ids[n_val:], 32),
                                   eval_dataset=Windows(ids[:n_val], 32), callbacks=[cb])
    trainer.train()

    with ExperimentDB(tmp_path / "ws" / "experiments.db") as db:
        run = db.get_run("hf-tiny")
        assert run["status"] == "completed" and run["final_step"] == 6
        assert run["config"]["max_steps"] == 6 and run["run_info"]["source"] == "transformers.Trainer"
        train = db.get_metrics("hf-tiny", "train_loss")
        val = db.get_metrics("hf-tiny", "val_loss")
        assert train["step"].tolist() == [2, 4, 6] and val["step"].tolist() == [3, 6]
        assert run["best_val_loss"] == pytest.approx(val["value"].min())
        assert set(db.metric_names("hf-tiny")) >= {"lr", "grad_norm", "val_perplexity", "train_perplexity"}
    log = json.loads((tmp_path / "out" / "run.json").read_text())
    assert log["name"] == "hf-tiny" and [r["step"] for r in log["eval"]] == [3, 6] and log["status"] == "completed"
    assert cb.dashboard_path == tmp_path / "out" / "dashboard.png" and cb.dashboard_path.stat().st_size > 20_000
    assert plotter.train["step"] == [2, 4, 6] and plotter.best[1] in (3, 6) and plotter.redraws >= 1
    # The same name again gets a new row, and the CLI reads the run.
    ExperimentCallback(tmp_path / "ws" / "experiments.db", live_plot=False, dashboard=False)
    assert main(["runs", "plot", "db:hf-tiny", "--workspace", str(tmp_path / "ws"), "--out",
                 str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "hf-tiny_analysis.png").exists()

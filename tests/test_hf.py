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
    from utils.training.live_plotting import LivePlotter

    from utils.training import TrainingConfig, build_model, builtin_corpus, train_bpe_tokenizer
    from utils.training.cli import main
    from utils.training.hf import ExperimentCallback

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
    log = json.loads((tmp_path / "out" / "hf-tiny" / "run.json").read_text())
    assert log["name"] == "hf-tiny" and [r["step"] for r in log["eval"]] == [3, 6] and log["status"] == "completed"
    assert cb.dashboard_path == tmp_path / "out" / "hf-tiny" / "dashboard.png" and cb.dashboard_path.stat().st_size > 20_000
    assert plotter.train["step"] == [2, 4, 6] and plotter.best[1] in (3, 6) and plotter.redraws >= 1
    # The same name again gets a new row, and the CLI reads the run.
    ExperimentCallback(tmp_path / "ws" / "experiments.db", live_plot=False, dashboard=False)
    assert main(["runs", "plot", "db:hf-tiny", "--workspace", str(tmp_path / "ws"), "--out",
                 str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "hf-tiny_analysis.png").exists()


# -- resume, a second run in one output_dir, a finished run started again (issue 23, items 4-6) --------
@pytest.fixture(scope="module")
def tiny():
    """(tokenizer ids, config) of a tiny model on the built-in corpus, built once."""
    from utils.training import TrainingConfig, builtin_corpus, train_bpe_tokenizer

    docs = builtin_corpus()[:1500]
    tok = train_bpe_tokenizer(docs[:1200], 300)
    ids = [i for row in tok(docs, add_special_tokens=False)["input_ids"] for i in row]
    return ids, TrainingConfig.preset("smoke", vocab_size=len(tok), block_size=32)


class Kill(transformers.TrainerCallback):
    """Stands in for a killed process: raises at the end of step `at` (after checkpoint-15)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise RuntimeError("killed")


def _trainer(tiny, out, callbacks, run_name="hf-tiny", max_steps=20, save=True):
    from utils.training import build_model

    ids, cfg = tiny
    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4, per_device_eval_batch_size=4,
        logging_steps=2, eval_strategy="steps", eval_steps=5, save_strategy="steps" if save else "no", save_steps=5,
        report_to=[], use_cpu=True, learning_rate=3e-3, disable_tqdm=True, dataloader_num_workers=0,
        run_name=run_name)
    n_val = 2 * 32 * 4
    return transformers.Trainer(model=build_model(cfg), args=args, train_dataset=Windows(ids[n_val:], 32),
                                eval_dataset=Windows(ids[:n_val], 32), callbacks=callbacks)


def test_a_resumed_trainer_run_continues_its_row_and_run_log(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("WANDB_DISABLED", "true")
    from utils.training.experiment_db import ExperimentDB

    from utils.training.hf import ExperimentCallback

    db_path, out = tmp_path / "ws" / "experiments.db", tmp_path / "out"
    first = _trainer(tiny, out, [ExperimentCallback(db_path, live_plot=False, dashboard=False), Kill(17)])
    with pytest.raises(RuntimeError, match="killed"):
        first.train()
    assert (out / "checkpoint-15").is_dir()
    cb = ExperimentCallback(db_path, live_plot=False, dashboard=False)
    _trainer(tiny, out, [cb]).train(resume_from_checkpoint=True)

    assert cb.run_name == "hf-tiny"
    with ExperimentDB(db_path) as db:
        runs = db.list_runs()
        assert runs["run_name"].tolist() == ["hf-tiny"] and runs["status"].tolist() == ["completed"]
        assert db.get_metrics("hf-tiny", "train_loss")["step"].tolist() == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
        val = db.get_metrics("hf-tiny", "val_loss")
        assert val["step"].tolist() == [5, 10, 15, 20]
        assert db.get_run("hf-tiny")["best_val_loss"] == pytest.approx(val["value"].min())
    log = json.loads((out / "hf-tiny" / "run.json").read_text())
    assert [r["step"] for r in log["train"]] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert [r["step"] for r in log["eval"]] == [5, 10, 15, 20]
    assert log["status"] == "completed" and len(log["resumes"]) == 1
    final_train_loss = log["summary"]["final_train_loss"]
    assert final_train_loss == log["train"][-1]["train_loss"]

    # The finished run started again: nothing to train, every summary field kept.
    again = ExperimentCallback(db_path, live_plot=False, dashboard=False)
    _trainer(tiny, out, [again]).train(resume_from_checkpoint=True)
    log2 = json.loads((out / "hf-tiny" / "run.json").read_text())
    assert again.run_name == "hf-tiny" and log2["status"] == "completed"
    assert set(log["summary"]) <= set(log2["summary"]) and log2["summary"]["final_train_loss"] == final_train_loss
    # (transformers 5 runs one more step and evaluation past a final checkpoint: step 21, no train log)
    assert len(log2["train"]) == 10 and [r["step"] for r in log2["eval"]][:4] == [5, 10, 15, 20]
    with ExperimentDB(db_path) as db:
        assert len(db.list_runs()) == 1 and db.get_run("hf-tiny")["final_train_loss"] == final_train_loss


def test_a_second_run_in_one_output_dir_has_its_own_files(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("WANDB_DISABLED", "true")
    from utils.training.hf import ExperimentCallback

    db_path, out = tmp_path / "experiments.db", tmp_path / "out"
    a = ExperimentCallback(db_path, live_plot=False)
    _trainer(tiny, out, [a], run_name="a", max_steps=4, save=False).train()
    files_a = {p: p.read_bytes() for p in (out / "a" / "run.json", out / "a" / "dashboard.png")}
    b = ExperimentCallback(db_path, live_plot=False)
    _trainer(tiny, out, [b], run_name="b", max_steps=6, save=False).train()
    a2 = ExperimentCallback(db_path, live_plot=False, dashboard=False)
    _trainer(tiny, out, [a2], run_name="a", max_steps=2, save=False).train()  # same name: a new run "a-2"

    assert {p: p.read_bytes() for p in files_a} == files_a  # the first run's files untouched
    assert b.dashboard_path == out / "b" / "dashboard.png" and b.dashboard_path.exists()
    logs = {n: json.loads((out / n / "run.json").read_text()) for n in ("a", "b", "a-2")}
    assert [lg["name"] for lg in logs.values()] == ["a", "b", "a-2"]
    assert [len(lg["train"]) for lg in logs.values()] == [2, 3, 1]
    assert not (out / "run.json").exists()


def test_a_run_log_of_the_one_run_layout_is_continued_where_it_is(tmp_path):
    from utils.training.hf import _run_folder
    from utils.training.tracking.run_log_format import new_document

    (tmp_path / "run.json").write_text(json.dumps(new_document("old")))
    assert _run_folder(tmp_path, "old") == tmp_path
    assert _run_folder(tmp_path, "new") == tmp_path / "new"
    (tmp_path / "run.json").write_text("{not json")
    assert _run_folder(tmp_path, "old") == tmp_path / "old"


def test_the_old_module_path_is_the_same_callback():
    from utils.training.tracking.hf import ExperimentCallback as old

    from utils.training.hf import ExperimentCallback

    assert old is ExperimentCallback


def test_a_checkpoint_written_without_the_callback_resumes_with_it(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("WANDB_DISABLED", "true")
    from utils.training.experiment_db import ExperimentDB

    from utils.training.hf import ExperimentCallback

    out = tmp_path / "out"
    _trainer(tiny, out, [], max_steps=10).train()
    cb = ExperimentCallback(tmp_path / "e.db", live_plot=False, dashboard=False)
    _trainer(tiny, out, [cb], max_steps=20).train(resume_from_checkpoint=True)  # saves at 15 and 20
    with ExperimentDB(tmp_path / "e.db") as db:
        assert db.get_run("hf-tiny")["status"] == "completed"
        assert db.get_metrics("hf-tiny", "train_loss")["step"].tolist() == [12, 14, 16, 18, 20]
    assert json.loads((out / "checkpoint-20" / "trainer_state.json").read_text())["stateful_callbacks"][
        "ExperimentCallback"]["args"]["run_name"] == "hf-tiny"

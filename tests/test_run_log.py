"""RunLogWriter and the readers. `smoke_training` is the real run the figure tests plot:
a tiny character model trained on the project's own architecture text, its events fed
to callbacks and its metrics to a RunLogWriter through the MetricsSink methods."""

from __future__ import annotations

import functools
import json
import math
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerControl, TrainerState
from utils.training.tracking.readers import load_run, load_runs
from utils.training.tracking.readers.llm_foundry import nanogpt_lr
from utils.training.tracking.run_log import RunLogWriter

ROOT = Path(__file__).resolve().parents[1]
FOUNDRY = ROOT.parent / "shared" / "data" / "external-runs" / "llm-foundry"
needs_foundry = pytest.mark.skipif(not FOUNDRY.is_dir(), reason=f"llm-foundry logs not found at {FOUNDRY}")


def foundry_logs() -> list[Path]:
    return sorted(FOUNDRY.glob("*.json"))


def smoke_training(run_dir: Path, callbacks=(), steps: int = 60, log_interval: int = 2, eval_interval: int = 10,
                   sample_interval: int = 20, min_interval_s: float = 0.0) -> Path:
    """Train a 2-layer character model for `steps` steps on CPU; returns the run.json path."""
    import psutil
    import torch

    torch.manual_seed(0)
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    n_train = int(0.9 * len(ids))
    train_ids, val_ids = ids[:n_train], ids[n_train:]
    vocab, block, batch, warmup, lr_max = len(chars), 32, 16, 10, 3e-3
    model = torch.nn.Sequential(torch.nn.Embedding(vocab, 64), torch.nn.Linear(64, 64), torch.nn.GELU(),
                                torch.nn.Linear(64, vocab))
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr_max)
    gen = torch.Generator().manual_seed(0)

    def get_batch(src):
        ix = torch.randint(len(src) - block - 1, (batch,), generator=gen)
        return torch.stack([src[i:i + block] for i in ix]), torch.stack([src[i + 1:i + block + 1] for i in ix])

    def lr_at(step):  # linear warmup, cosine to 10% at the end
        if step < warmup:
            return lr_max * (step + 1) / warmup
        return lr_max * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup))))

    config = {"model_name": "char-mlp", "steps": steps, "batch_size": batch, "block_size": block,
              "learning_rate": lr_max, "warmup_steps": warmup, "grad_clip": 1.0, "log_interval": log_interval,
              "eval_interval": eval_interval}
    run_info = {"model_name": "char-mlp", "model_family": "mlp", "n_params": n_params, "device": "cpu",
                "world_size": 1, "flops_per_token": 6 * n_params}
    path = Path(run_dir) / "run.json"
    sink = RunLogWriter(path, min_interval_s=min_interval_s, config=config)
    state, control = TrainerState(run_name=Path(run_dir).name, max_steps=steps), TrainerControl()
    sink.start(run_info)
    for cb in callbacks:
        cb.on_train_begin(state, control, config=config, model=model, run_info=run_info)
    t_start, t_int, losses, interval_steps = time.perf_counter(), time.perf_counter(), [], 0
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y = get_batch(train_ids)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, vocab), y.view(-1))
        opt.zero_grad()
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        state.step, state.tokens_seen = step + 1, (step + 1) * batch * block
        losses.append(loss.item())
        interval_steps += 1
        for cb in callbacks:
            cb.on_step_end(state, control)
        if state.step % log_interval == 0:
            dt = time.perf_counter() - t_int
            state.elapsed_s = time.perf_counter() - t_start
            mean_loss = sum(losses) / len(losses)
            logs = {"train_loss": mean_loss, "train_perplexity": math.exp(mean_loss),
                    "train_accuracy": float((logits.argmax(-1) == y).float().mean()), "lr": lr_at(step),
                    "grad_norm": grad_norm, "step_time_ms": 1000 * dt / interval_steps,
                    "tokens_per_sec": interval_steps * batch * block / dt,
                    "tokens_per_sec_per_gpu": interval_steps * batch * block / dt,
                    "tokens_seen": state.tokens_seen, "elapsed_s": state.elapsed_s,
                    "cpu_rss_gb": psutil.Process().memory_info().rss / 2**30}
            sink.write(state.step, logs, "train")
            for cb in callbacks:
                cb.on_log(state, control, logs=logs)
            losses, interval_steps, t_int = [], 0, time.perf_counter()
        if state.step % eval_interval == 0 or state.step == steps:
            with torch.no_grad():
                vx, vy = get_batch(val_ids)
                vlogits = model(vx)
                vloss = float(torch.nn.functional.cross_entropy(vlogits.view(-1, vocab), vy.view(-1)))
                vacc = float((vlogits.argmax(-1) == vy).float().mean())
            metrics = {"step": state.step, "val_loss": vloss, "val_perplexity": math.exp(vloss),
                       "val_accuracy": vacc, "val_bpb": vloss / math.log(2)}  # 1 byte per ASCII char
            state.last_val_loss = vloss
            if vloss < state.best_val_loss:
                state.best_val_loss, state.best_step = vloss, state.step
            sink.write(state.step, metrics, "eval")
            for cb in callbacks:
                cb.on_evaluate(state, control, metrics=metrics)
        if state.step % sample_interval == 0:
            with torch.no_grad():
                prompt, ref = val_ids[:16], val_ids[16:32]
                ctx, out = prompt.clone(), []
                for _ in range(16):
                    nxt = int(model(ctx[-block:])[-1].argmax())
                    out.append(nxt)
                    ctx = torch.cat([ctx, torch.tensor([nxt])])
            samples = [{"prompt": "".join(chars[i] for i in prompt), "output": "".join(chars[i] for i in out),
                        "accuracy": sum(int(a == b) for a, b in zip(out, ref.tolist())) / len(out)}]
            sink.add_samples(state.step, samples)
            for cb in callbacks:
                cb.on_sample(state, control, samples=samples)
    ckpt = Path(run_dir) / "checkpoints" / f"step_{steps:08d}.pt"
    sink.add_checkpoint(steps, str(ckpt))
    for cb in callbacks:
        cb.on_save(state, control, checkpoint_path=str(ckpt))
    summary = {"best_val_loss": state.best_val_loss, "best_step": state.best_step,
               "tokens_seen": state.tokens_seen, "elapsed_s": time.perf_counter() - t_start}
    sink.close(RunStatus.COMPLETED, summary)
    for cb in callbacks:
        cb.on_train_end(state, control, status=RunStatus.COMPLETED, error=None)
    return path


@functools.lru_cache(maxsize=1)
def shared_smoke_run() -> Path:
    """One smoke run per test session, shared by the figure tests (read-only for them)."""
    return smoke_training(Path(tempfile.mkdtemp(prefix="smoke-run-")) / "smoke")


@pytest.fixture(scope="module")
def smoke_run() -> Path:
    return shared_smoke_run()


def test_writer_round_trip_from_a_real_run(smoke_run):
    doc = json.loads(smoke_run.read_text())
    assert doc["format"] == "slm-run-log" and doc["status"] == "completed"
    assert [r["step"] for r in doc["train"]] == list(range(2, 61, 2))
    assert [r["step"] for r in doc["eval"]] == [10, 20, 30, 40, 50, 60]
    rec = load_run(smoke_run)
    assert rec.source == "run_log" and rec.name == "smoke"
    assert rec.model["n_params"] == doc["run_info"]["n_params"] and rec.label == "char-mlp"
    assert rec.train["train_loss"].tolist() == [r["train_loss"] for r in doc["train"]]
    assert rec.eval["val_loss"].tolist() == [r["val_loss"] for r in doc["eval"]]
    assert rec.best_val() == (doc["summary"]["best_val_loss"], doc["summary"]["best_step"])
    assert len(rec.samples) == 3 and set(rec.samples[0]) >= {"step", "prompt", "output", "accuracy"}
    assert rec.checkpoints[0]["step"] == 60 and not rec.lr_derived and rec.warmup_steps == 10
    assert rec.train["train_loss"].iloc[-1] < rec.train["train_loss"].iloc[0]  # it did learn


def test_writer_is_throttled_and_atomic(tmp_path):
    path = tmp_path / "run.json"
    w = RunLogWriter(path, min_interval_s=3600)
    w.start({"n_params": 10})
    for step in range(1, 50):
        w.write(step, {"train_loss": 1.0 / step}, "train")
    on_disk = json.loads(path.read_text())
    assert on_disk["train"] == []  # within the interval nothing is rewritten
    w.close("completed", {"best_val_loss": math.nan})
    done = json.loads(path.read_text())
    assert len(done["train"]) == 49 and math.isnan(done["summary"]["best_val_loss"])
    assert not list(tmp_path.glob(".*tmp"))


def test_resume_appends_and_drops_steps_logged_again(tmp_path):
    path = tmp_path / "r" / "run.json"
    w = RunLogWriter(path, min_interval_s=0)
    w.start({})
    for step in (10, 20, 30):
        w.write(step, {"train_loss": float(step)}, "train")
    w.close("interrupted", {})
    w2 = RunLogWriter(path, min_interval_s=0)  # resumed from the step-20 checkpoint
    w2.start({})
    w2.write(30, {"train_loss": 0.5}, "train")
    w2.write(40, {"train_loss": 0.4}, "train")
    w2.close("completed", {})
    doc = json.loads(path.read_text())
    assert [(r["step"], r["train_loss"]) for r in doc["train"]] == [(10, 10.0), (20, 20.0), (30, 0.5), (40, 0.4)]
    assert doc["status"] == "completed" and len(doc["resumes"]) == 1


def test_nanogpt_lr_matches_the_lr_llm_foundry_logged_at_evals():
    cfg = {"learning_rate": 3e-4, "min_lr": 3e-5, "warmup_iters": 2000, "lr_decay_iters": 25000}
    assert nanogpt_lr(1000, cfg) == pytest.approx(0.00015007496251874061)
    assert nanogpt_lr(2000, cfg) == pytest.approx(3e-4)
    assert nanogpt_lr(25000, cfg) == pytest.approx(3e-5) and nanogpt_lr(30000, cfg) == 3e-5


@needs_foundry
@pytest.mark.parametrize("log", foundry_logs(), ids=lambda p: p.stem)
def test_llm_foundry_logs_read_with_their_quirks(log):
    doc = json.loads(log.read_text())
    rec = load_run(log)
    its = doc["training_iterations"]
    assert rec.source == "llm-foundry" and rec.lr_derived and "lr" in rec.derived
    assert rec.n_params == doc["startup_info"]["model"]["total_params"]
    assert rec.train["step"].tolist() == [it["iter"] for it in its]
    assert rec.train["train_loss"].tolist() == [it["loss"] for it in its]
    # mfu -100.0 is a placeholder, not a value; dict values are per GPU
    for row, it in zip(rec.train.itertuples(), its):
        if isinstance(it["mfu"], dict):
            assert row.mfu_pct == it["mfu"]["mfu_percent"]
            assert row.tokens_per_sec_per_gpu == it["mfu"]["tokens_per_sec"]
            assert row.tokens_per_sec == pytest.approx(it["mfu"]["tokens_per_sec"] * it["mfu"]["num_gpus"])
        else:
            assert pd.isna(row.mfu_pct) and pd.isna(row.tokens_per_sec)
    # the derived lr agrees with the lr the trainer logged at its evals
    for e in doc["eval_steps"]:
        lr = rec.train.loc[rec.train["step"] == e["iter"], "lr"]
        assert lr.iloc[0] == pytest.approx(e["lr"])
    best, _ = rec.best_val()
    if not doc["eval_steps"]:
        assert math.isnan(best) and math.isnan(rec.summary["best_val_loss"])  # 1e9 means "no eval"
    else:
        assert best == doc["summary"]["best_val_loss"]


@needs_foundry
def test_interrupted_llm_foundry_log_without_summary(tmp_path):
    doc = json.loads(foundry_logs()[0].read_text())
    doc["training_iterations"] = doc["training_iterations"][:50]
    del doc["summary"], doc["end_time"]
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(doc))
    rec = load_run(path)
    assert rec.status == "interrupted" and len(rec.train) == 50 and rec.summary == {}


@needs_foundry
def test_load_runs_reads_a_folder():
    recs = load_runs(FOUNDRY)
    assert len(recs) == len(foundry_logs()) == 6
    assert {r.hardware["n_gpus"] for r in recs} == {2}


def test_load_run_rejects_unknown_json(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError):
        load_run(tmp_path / "x.json")
    with pytest.raises(ValueError):
        load_run("db:some-run")


def test_session_hardware_reaches_the_record(tmp_path):
    """run_info as TrainingSession writes it: hardware facts nested under "hardware"."""
    from utils.training.viz.analysis import summary_table

    def record(hardware: dict, device: str):
        w = RunLogWriter(tmp_path / f"{device}.json")
        w.start({"run_dir": str(tmp_path), "device": device, "world_size": 1, "hardware": hardware})
        w.write(1, {"train_loss": 3.0, "tokens_seen": 10}, "train")
        w.close("completed", {})
        return load_run(tmp_path / f"{device}.json")

    gpu = record({"device": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_memory_gb": 79.1}, "cuda:0")
    assert gpu.hardware["gpu_memory_gib"] == 79.1 and gpu.hardware["gpu_name"] == "NVIDIA H100 80GB HBM3"
    cpu = record({"device": "cpu", "gpu_name": "", "gpu_memory_gb": 0.0}, "cpu")
    assert cpu.hardware["gpu_name"] is None and cpu.hardware["gpu_memory_gib"] is None
    table = summary_table([gpu, cpu])
    assert list(table["hardware"]) == ["1x NVIDIA H100 80GB HBM3", "cpu"]


def test_flush_respects_the_throttle_and_close_always_writes(tmp_path):
    path = tmp_path / "run.json"
    w = RunLogWriter(path, min_interval_s=3600)
    w.start({"device": "cpu"})
    w.write(1, {"train_loss": 3.0}, "train")
    w.flush()  # as MetricsTracker does at every evaluation: within the interval, nothing is rewritten
    assert json.loads(path.read_text())["train"] == []
    w.close("completed", {})
    assert [r["step"] for r in json.loads(path.read_text())["train"]] == [1]


def test_a_resumed_log_keeps_one_record_checkpoint_and_sample_set_per_step(tmp_path):
    path = tmp_path / "r" / "run.json"
    w = RunLogWriter(path, min_interval_s=0)
    w.start({"resumed_from_step": None})
    for step in (4, 8, 12):
        w.write(step, {"train_loss": float(step)}, "train")
        w.add_samples(step, [{"prompt": "p", "output": str(step)}])
        w.add_checkpoint(step, f"step_{step}.pt")
    w.close("interrupted", {})  # killed: the newest checkpoint that loads is at step 4
    w2 = RunLogWriter(path, min_interval_s=0)
    w2.start({"resumed_from_step": 4})
    for step in (8, 12):
        w2.add_samples(step, [{"prompt": "p", "output": f"again {step}"}])
        w2.add_checkpoint(step, f"step_{step}.pt")
    w2.add_checkpoint(12, "step_12.pt")  # a re-run of the finished run saves its last step again
    w2.close("completed", {})
    doc = json.loads(path.read_text())
    assert [c["step"] for c in doc["checkpoints"]] == [4, 8, 12]
    assert [(s["step"], s["output"]) for s in doc["samples"]] == [(4, "4"), (8, "again 8"), (12, "again 12")]
    assert [r["step"] for r in doc["train"]] == [4]


def test_a_truncated_run_log_is_set_aside_and_rebuilt_from_the_database(tmp_path, capsys):
    from utils.training.tracking.experiment_db import ExperimentDB

    path = tmp_path / "runs" / "cut" / "run.json"
    w = RunLogWriter(path, min_interval_s=0)
    w.start({})
    w.write(2, {"train_loss": 2.0}, "train")
    w.close("interrupted", {})
    path.write_text(path.read_text()[:40])  # a disk that filled up mid-write, a bad copy
    with ExperimentDB(tmp_path / "e.db") as db:
        run_id = db.log_run("cut", {"lr": 1.0})
        db.log_metrics(run_id, {"train_loss": 2.0, "lr": 0.1}, 2)
        db.log_metrics(run_id, {"val_loss": 1.5}, 2)
        db.log_artifact(run_id, "checkpoint", "step_2.pt", step=2)
        w2 = RunLogWriter(path, min_interval_s=0, db=db)
    err = capsys.readouterr().err
    aside = [p.name for p in path.parent.glob("run.json.corrupt-*")]
    assert len(aside) == 1 and f"Run log {path} does not parse" in err and aside[0] in err
    w2.start({"resumed_from_step": 2})
    w2.write(4, {"train_loss": 1.0}, "train")
    w2.close("completed", {})
    doc = json.loads(path.read_text())
    assert [(r["step"], r["train_loss"]) for r in doc["train"]] == [(2, 2.0), (4, 1.0)]
    assert doc["eval"] == [{"step": 2, "val_loss": 1.5}] and doc["checkpoints"][0]["step"] == 2
    # Without a database the log starts anew, the bad file still set aside.
    path.write_text("{")
    RunLogWriter(path).start({})
    assert len(list(path.parent.glob("run.json.corrupt-*"))) >= 1


def test_every_reader_gives_the_clip_threshold_under_our_name(tmp_path, smoke_run):
    """max_grad_norm is read from each format's own key (ours, an older log's grad_clip,
    llm-foundry's grad_clip), so no consumer looks for aliases."""
    from utils.training.tracking.run_record import RunRecord

    assert load_run(smoke_run).max_grad_norm == 1.0  # this log's config says grad_clip
    path = tmp_path / "ours" / "run.json"
    writer = RunLogWriter(path, min_interval_s=0.0, config={"max_grad_norm": 0.5})
    writer.start({})
    writer.close("completed", {})
    assert load_run(path).max_grad_norm == 0.5
    doc = {"training_iterations": [], "config": {"grad_clip": 2.0}}
    (tmp_path / "foundry.json").write_text(json.dumps(doc))
    assert load_run(tmp_path / "foundry.json").max_grad_norm == 2.0
    assert RunRecord(name="r", source="dataframe", config={"max_grad_norm": 0.25}).max_grad_norm == 0.25
    assert RunRecord(name="r", source="dataframe").max_grad_norm is None


def test_readers_are_importable_from_the_old_and_new_paths():
    import utils.training.run_log as old

    import utils.training.tracking.run_log as new
    from utils.training.tracking import readers

    assert old is new
    for name in ("load_run", "load_runs", "run_log_specs", "RunRecord", "RunLogWriter", "RunLogError", "nanogpt_lr",
                 "GB_TO_GIB", "FORMAT", "VERSION"):
        assert hasattr(new, name), name
    assert new.load_run is readers.load_run


def test_a_resumed_log_keeps_summary_fields_the_new_process_does_not_know(tmp_path):
    path = tmp_path / "r" / "run.json"
    w = RunLogWriter(path)
    w.start({"resumed_from_step": None})
    w.write(2, {"train_loss": 3.0})
    w.close("completed", {"final_train_loss": 3.0, "best_val_loss": 2.9, "final_step": 2})
    resumed = RunLogWriter(path)
    resumed.start({"resumed_from_step": 2})
    resumed.close("completed", {"best_val_loss": None, "final_step": 2, "total_time": 1.5})
    summary = json.loads(path.read_text())["summary"]
    assert summary == {"final_train_loss": 3.0, "best_val_loss": 2.9, "final_step": 2, "total_time": 1.5}
    fresh = RunLogWriter(path)  # started again from step 0: its own summary only
    fresh.start({"resumed_from_step": None})
    fresh.close("completed", {"final_step": 1})
    assert json.loads(path.read_text())["summary"] == {"final_step": 1}

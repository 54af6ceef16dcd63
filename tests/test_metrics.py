"""MetricsTracker: peak-FLOPS lookup, derived metrics in place, GPU/CPU selection, sinks."""

from __future__ import annotations

import math

import pytest
import torch

from utils.training.engine.callbacks import TrainerControl, TrainerState
from utils.training.tracking.metrics import PEAK_FLOPS, MetricsTracker, peak_flops


@pytest.mark.parametrize("name,key", [
    ("Tesla T4", "T4"), ("NVIDIA L4", "L4"), ("Tesla V100-SXM2-16GB", "V100"),
    ("NVIDIA A100-SXM4-40GB", "A100 40GB"), ("NVIDIA A100 80GB PCIe", "A100 80GB"),
    ("NVIDIA RTX A6000", "A6000"), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H200", "H200"), ("NVIDIA B200", "B200"),
])
def test_peak_flops_by_device_name(name, key):
    flops, source, estimated = peak_flops(name)
    assert (flops, source, estimated) == (*PEAK_FLOPS[key], False)
    assert 50e12 < flops < 5e15 and source


def test_unknown_gpu_is_estimated_and_cpu_has_none():
    flops, source, estimated = peak_flops("NVIDIA L40S")  # not an L4
    assert estimated and flops > 0 and "estimate" in source
    assert peak_flops("cpu") == (None, "no GPU: MFU not reported", False)


class ListSink:
    def __init__(self):
        self.calls = []

    def start(self, run_info):
        self.calls.append(("start", dict(run_info)))
        run_info["tracking"]["list_id"] = 7

    def write(self, step, metrics, kind):
        self.calls.append(("write", step, dict(metrics), kind))

    def add_samples(self, step, samples):
        self.calls.append(("samples", step, samples))

    def add_checkpoint(self, step, path):
        self.calls.append(("checkpoint", step, path))

    def flush(self):
        self.calls.append(("flush",))

    def close(self, status, summary):
        self.calls.append(("close", status, summary))


def test_cpu_run_enriches_logs_and_fans_out():
    sink = ListSink()
    tracker = MetricsTracker([sink], flops_per_token=6e6, world_size=2)
    state, control = TrainerState(run_name="r", step=10, tokens_seen=640, world_size=2), TrainerControl()
    tracker.on_train_begin(state, control, config={"lr": 1}, run_info={"device": "cpu"})
    assert state.tracking == {"list_id": 7} and sink.calls[0][1]["peak_flops_per_gpu"] is None
    logs = {"train_loss": 2.0, "tokens_per_sec": 1000.0, "lr": 1e-3}  # no train_accuracy: fine
    tracker.on_log(state, control, logs=logs)
    assert logs["tokens_per_sec_per_gpu"] == 500.0 and logs["train_perplexity"] == pytest.approx(math.exp(2))
    assert "mfu_pct" not in logs and "memory_allocated_gb" not in logs and logs["cpu_rss_gb"] > 0
    assert logs["step"] == 10 and logs["tokens_seen"] == 640
    metrics = {"step": 10, "val_loss": 1.0}
    tracker.on_evaluate(state, control, metrics=metrics)
    assert metrics["val_perplexity"] == pytest.approx(math.e)
    tracker.on_sample(state, control, samples=[{"prompt": "a", "output": "b", "accuracy": None}])
    tracker.on_save(state, control, checkpoint_path="/c/step_10.pt")
    state.best_val_loss, state.best_step = 1.0, 10
    tracker.on_train_end(state, control, status="completed", error=None)
    kinds = [c[0] for c in sink.calls]
    assert kinds == ["start", "write", "write", "flush", "samples", "checkpoint", "close"]
    assert sink.calls[2][3] == "eval" and sink.calls[-1][1] == "completed"
    assert sink.calls[-1][2]["best_val_loss"] == 1.0 and sink.calls[-1][2]["final_step"] == 10


def test_cuda_path_reports_memory_and_mfu(monkeypatch):
    """The GPU selection logic, with torch.cuda's answers stubbed (no GPU here)."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i=None: 2 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i=None: 4 * 2**30)
    monkeypatch.setattr("utils.training.tracking.metrics.nvml_handle", lambda index: None)
    sink = ListSink()
    tracker = MetricsTracker([sink], flops_per_token=1e9, device="cuda:0")
    state = TrainerState(world_size=4)
    tracker.on_train_begin(state, TrainerControl(), run_info={"world_size": 4})
    logs = {"tokens_per_sec": 4 * 31_200.0}
    tracker.on_log(state, TrainerControl(), logs=logs)
    # 124.8k tok/s x 1e9 FLOP/tok over 4 x 312 TFLOP/s = 10 %
    assert logs["mfu_pct"] == pytest.approx(10.0) and logs["tokens_per_sec_per_gpu"] == 31_200.0
    assert (logs["memory_allocated_gb"], logs["memory_reserved_gb"], logs["memory_peak_gb"]) == (2, 3, 4)
    assert "gpu_util_pct" not in logs and "cpu_rss_gb" not in logs


def test_other_ranks_do_not_write_and_every_sink_closes():
    class Failing(ListSink):
        def close(self, status, summary):
            raise OSError("disk full")

    bad, good = Failing(), ListSink()
    tracker = MetricsTracker([bad, good])
    rank1 = TrainerState(is_world_process_zero=False)
    tracker.on_train_begin(rank1, TrainerControl(), run_info={"device": "cpu"})
    tracker.on_log(rank1, TrainerControl(), logs={"train_loss": 1.0})
    assert bad.calls == [] and good.calls == []
    state = TrainerState()
    with pytest.raises(OSError, match="disk full"):
        tracker.on_train_end(state, TrainerControl(), status="failed", error=RuntimeError("x"))
    assert good.calls[-1][0] == "close" and good.calls[-1][2]["error"] == "RuntimeError: x"


def test_final_train_loss_and_the_wandb_id_reach_the_database_and_the_run_log(tmp_path):
    import json

    from utils.training.contracts import RunStatus
    from utils.training.engine.callbacks import TrainerControl, TrainerState
    from utils.training.tracking.db_sink import ExperimentDBSink
    from utils.training.tracking.experiment_db import ExperimentDB
    from utils.training.tracking.metrics import MetricsTracker
    from utils.training.tracking.run_log import RunLogWriter

    class WandbLike:  # what WandbSink does at start: its id into the checkpoint's tracking dict
        def start(self, run_info):
            run_info["tracking"]["wandb_run_id"] = "abcd1234"

        def write(self, *a, **k): ...
        def add_samples(self, *a, **k): ...
        def add_checkpoint(self, *a, **k): ...
        def flush(self): ...
        def close(self, status, summary): ...

    db = ExperimentDB(tmp_path / "e.db")
    sinks = [ExperimentDBSink(db, "r", {}), RunLogWriter(tmp_path / "r" / "run.json", min_interval_s=3600), WandbLike()]
    tracker = MetricsTracker(sinks)
    state, control = TrainerState(run_name="r", max_steps=4), TrainerControl()
    tracker.on_train_begin(state, control, run_info={"device": "cpu"})
    for step, loss in ((2, 3.0), (4, 2.5)):
        state.step = step
        tracker.on_log(state, control, logs={"train_loss": loss})
    tracker.on_train_end(state, control, status=RunStatus.COMPLETED)
    run = db.get_run("r")
    assert run["final_train_loss"] == 2.5 and run["wandb_run_id"] == "abcd1234"
    doc = json.loads((tmp_path / "r" / "run.json").read_text())
    assert doc["tracking"]["wandb_run_id"] == "abcd1234" and doc["summary"]["final_train_loss"] == 2.5
    db.close()


def test_gpu_name_is_the_drivers_name_on_cuda_and_empty_elsewhere(monkeypatch):
    from utils.training.runtime import gpu_name  # the one lookup; the tracker and the run facts call it

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: f"NVIDIA H200 #{i}")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_name("cuda:1") == "NVIDIA H200 #1" and gpu_name(torch.device("cuda", 2)) == "NVIDIA H200 #2"
    assert gpu_name(torch.device("cuda", 0)) == "NVIDIA H200 #0"
    assert gpu_name("cpu") == "" and gpu_name(torch.device("cpu")) == "" and gpu_name("mps") == ""
    assert peak_flops(gpu_name("cuda:0"))[0] == PEAK_FLOPS["H200"][0]


def test_every_sink_of_ours_is_a_metrics_sink(tmp_path):
    """The MetricsSink Protocol (utils.training.contracts), checked at run time: each sink
    MetricsTracker is given in the library has every method of the contract."""
    from utils.training.contracts import MetricsSink
    from utils.training.tracking.db_sink import ExperimentDBSink
    from utils.training.tracking.experiment_db import ExperimentDB
    from utils.training.tracking.run_log import RunLogWriter
    from utils.training.tracking.wandb_logger import WandbSink

    with ExperimentDB(tmp_path / "e.db") as db:
        sinks = [ExperimentDBSink(db, "run"), RunLogWriter(tmp_path / "run.json"), WandbSink("p", mode="disabled")]
        for sink in sinks:
            assert isinstance(sink, MetricsSink), type(sink).__name__
        assert not isinstance(object(), MetricsSink)
        tracker = MetricsTracker(sinks)
        assert tracker.sinks == sinks


def test_a_finished_run_started_again_keeps_every_summary_field_in_the_run_log(tmp_path):
    """Started again at its last step, the run logs no train loss: the stored
    final_train_loss (and every other summary field) stays in run.json, as in the database."""
    import json

    from utils.training.contracts import RunStatus
    from utils.training.tracking.experiment_db import ExperimentDB, ExperimentDBSink
    from utils.training.tracking.run_log import RunLogWriter

    db = ExperimentDB(tmp_path / "e.db")
    path = tmp_path / "r" / "run.json"
    state, control = TrainerState(run_name="r", max_steps=4), TrainerControl()
    first = MetricsTracker([ExperimentDBSink(db, "r", {}), RunLogWriter(path)])
    first.on_train_begin(state, control, run_info={"device": "cpu"})
    for step, loss in ((2, 3.0), (4, 2.5)):
        state.step = step
        first.on_log(state, control, logs={"train_loss": loss})
    state.best_val_loss, state.best_step = 2.7, 4
    first.on_train_end(state, control, status=RunStatus.COMPLETED)
    before = json.loads(path.read_text())["summary"]

    again = TrainerState(run_name="r", max_steps=4, step=4, resumed_from_step=4, best_val_loss=2.7, best_step=4,
                         tracking=dict(state.tracking))
    second = MetricsTracker([ExperimentDBSink(db, "r", {}), RunLogWriter(path)])
    second.on_train_begin(again, control, run_info={"device": "cpu"})
    second.on_train_end(again, control, status=RunStatus.COMPLETED)
    doc = json.loads(path.read_text())
    assert set(before) <= set(doc["summary"]) and doc["summary"]["final_train_loss"] == 2.5
    assert len(doc["train"]) == 2 and doc["status"] == "completed"
    assert db.get_run("r")["final_train_loss"] == 2.5 and len(db.list_runs()) == 1
    db.close()


def test_the_core_tracker_carries_no_seed_calls():
    tracker = MetricsTracker([])
    for name in ("log_scalar", "log_epoch", "get_summary", "use_wandb", "_get_gpu_utilization"):
        assert not hasattr(tracker, name)
    with pytest.raises(TypeError):
        MetricsTracker(use_wandb=False)

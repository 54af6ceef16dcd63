"""The seed notebook's MetricsTracker (utils.training.compat.metrics_tracker): its errors,
its imports, its GPU columns and its W&B sink."""

from __future__ import annotations

import builtins
import os
import stat
import sys
import types

import pytest
import torch

from utils.training.compat.metrics_tracker import MetricsTracker
from utils.training.tracking.metrics import MetricsTracker as CoreMetricsTracker
from utils.training.tracking.wandb_logger import WandbRunSink


class FakeWandb(types.ModuleType):
    """wandb with a run started by the caller's code: records each log call."""

    def __init__(self):
        super().__init__("wandb")
        self.run = object()
        self.calls: list[tuple[dict, int | None]] = []

    def log(self, data, step=None, commit=True):
        self.calls.append((dict(data), step))


def _epoch(t: MetricsTracker, e: int = 0) -> dict:
    return t.log_epoch(e, {"loss": 3.0 - e, "accuracy": 0.5}, {"loss": 3.1 - e}, 1e-3, 0.7, 2.0)


def test_a_subclass_of_the_core_tracker_with_the_seed_signature():
    t = MetricsTracker(use_wandb=False, gradient_accumulation_steps=2)
    assert isinstance(t, CoreMetricsTracker) and t.use_wandb is False and t.gradient_accumulation_steps == 2
    assert t.sinks == [] and MetricsTracker(False).sinks == []
    assert [type(s) for s in MetricsTracker().sinks] == [WandbRunSink]  # use_wandb defaults to True
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        MetricsTracker(False, 0)
    for name in ("log_scalar", "log_epoch", "get_summary", "_get_gpu_utilization"):
        assert not hasattr(CoreMetricsTracker, name)  # the seed's calls are not in the core class


@pytest.mark.parametrize("value", ["x", None, [1.0], torch.ones(3), True])
def test_log_scalar_refuses_what_is_not_a_number(value):
    t = MetricsTracker(use_wandb=False)
    with pytest.raises(ValueError, match="value must be numeric"):
        t.log_scalar("train/batch_loss", value)
    assert t.get_step_metrics().empty


def test_log_scalar_takes_one_element_tensors_and_numpy_scalars():
    import numpy as np

    t = MetricsTracker(use_wandb=False)
    t.log_scalar("a", torch.tensor(2.5))
    t.log_scalar("a", np.float32(1.5))
    assert t.get_step_metrics()["value"].tolist() == [2.5, 1.5]


def _imports_of_construction_and_two_epochs() -> tuple[set[str], MetricsTracker]:
    imported: list[str] = []
    real_import = builtins.__import__

    def spy(name, *args, **kwargs):
        imported.append(name)
        return real_import(name, *args, **kwargs)

    builtins.__import__ = spy
    try:
        t = MetricsTracker(use_wandb=True)
        _epoch(t)
        _epoch(t, 1)
    finally:
        builtins.__import__ = real_import
    return set(imported), t


def test_construction_and_log_epoch_import_nothing_but_wandb(monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    imported, _ = _imports_of_construction_and_two_epochs()
    assert imported == {"wandb"}
    assert [step for _, step in fake.calls] == [0, 1] and fake.calls[0][0]["train/loss"] == 3.0


@pytest.mark.parametrize("body", ['echo "55"', "exit 3"])
def test_on_cuda_too_nothing_but_wandb_is_imported(tmp_path, monkeypatch, cuda, body):
    monkeypatch.setitem(sys.modules, "wandb", FakeWandb())
    _fake_nvidia_smi(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    imported, t = _imports_of_construction_and_two_epochs()
    assert imported == {"wandb"}
    assert t.get_summary()["system/gpu_utilization"].tolist() == ([55.0] * 2 if "55" in body else [0.0] * 2)


def test_wandb_gets_the_seed_names_through_its_sink_and_no_step_goes_back(monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    t = MetricsTracker(use_wandb=True)
    for _ in range(3):
        t.log_scalar("train/batch_loss", 1.0)
    t.log_scalar("lr", 1e-4, step=1)
    _epoch(t)
    assert [s for _, s in fake.calls] == [0, 1, 2, 2, 2]
    assert {"train/loss", "val/perplexity", "learning_rate"} <= set(fake.calls[-1][0])
    fake.run = None  # no run started: nothing is logged, nothing raises
    _epoch(t, 1)
    assert len(fake.calls) == 5


def _fake_nvidia_smi(bin_dir, body: str):
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def cuda(monkeypatch):
    """torch.cuda as on a GPU that peaked at 300 MiB."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 300 * 2**20)


def test_on_cuda_the_epoch_row_has_the_seeds_gpu_columns(tmp_path, monkeypatch, cuda):
    _fake_nvidia_smi(tmp_path / "bin", f'echo "$@" > {tmp_path}/args\nprintf "37\\n12\\n"')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    t = MetricsTracker(use_wandb=False)
    row = _epoch(t)
    assert row["system/gpu_memory_mb"] == 300.0 and row["system/gpu_utilization"] == 37.0
    assert (tmp_path / "args").read_text().split() == ["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
    assert list(t.get_summary().columns)[-2:] == ["system/gpu_memory_mb", "system/gpu_utilization"]


@pytest.mark.parametrize("body", [None, "exit 3", 'echo "[N/A]"', "true"])
def test_gpu_utilization_is_zero_when_nvidia_smi_fails(tmp_path, monkeypatch, cuda, body):
    if body is None:  # no nvidia-smi at all
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    else:
        _fake_nvidia_smi(tmp_path / "bin", body)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    t = MetricsTracker(use_wandb=False)
    assert t._get_gpu_utilization() == 0.0
    assert _epoch(t)["system/gpu_utilization"] == 0.0


def test_off_cuda_there_are_no_gpu_columns(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not any(k.startswith("system/") for k in _epoch(MetricsTracker(use_wandb=False)))


def test_wandb_not_installed_is_said_once_and_logging_goes_on(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    t = MetricsTracker(use_wandb=True)
    _epoch(t)
    _epoch(t, 1)
    assert capsys.readouterr().out.count("wandb is not installed") == 1 and len(t.metrics_history) == 2


def test_the_seed_and_old_module_paths_are_this_module():
    import utils.training.loop_metrics as old_flat
    import utils.training.metrics_tracker as seed
    import utils.training.tracking.loop_metrics as old

    import utils.training.compat.metrics_tracker as compat

    assert seed is compat and old is compat and old_flat is compat

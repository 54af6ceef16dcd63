"""The live system panel (tracking/system_monitor.py, panels.system_panel): readings from
a stand-in NVML module and a stand-in process, a GPU that disappears mid-run, a sampler
that stops at once (an Event, no sleep race), and the panel in the live figure and the
dashboard of a CPU run and of a simulated GPU run."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import matplotlib
import pandas as pd
import pytest
import torch
from engine_fixtures import ArrayBatches, make_tokens, tiny_config

from utils.training.engine.callbacks import TrainerCallback
from utils.training.engine.models import build_model
from utils.training.engine.trainer import Trainer
from utils.training.tracking.run_record import RunRecord
from utils.training.tracking.system_monitor import (
    GIB,
    NVML_MISSING,
    SYSTEM_KEYS,
    SystemMonitor,
    SystemSampler,
    import_nvml,
)

matplotlib.use("Agg")
torch.set_num_threads(1)


class FakeNVML:
    """The part of pynvml the sampler calls; `lose_after` readings, then the GPU is lost."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, lose_after: int | None = None):
        self.lose_after, self.reads, self.shutdowns = lose_after, 0, 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def nvmlDeviceGetUtilizationRates(self, handle):
        self.reads += 1
        if self.lose_after is not None and self.reads > self.lose_after:
            raise self.NVMLError("GPU is lost")
        return SimpleNamespace(gpu=57, memory=20)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=3 * GIB, total=16 * GIB)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 66

    def nvmlDeviceGetPowerUsage(self, handle):
        return 70_500  # mW


class FakeProcess:
    def __init__(self):
        self.calls = 0

    def cpu_percent(self, interval):
        self.calls += 1
        return 0.0 if self.calls == 1 else 150.0

    def memory_info(self):
        return SimpleNamespace(rss=GIB // 2)

    def cpu_times(self):
        return SimpleNamespace(user=30.0, system=10.0)

    def create_time(self):
        return time.time() - 50.0  # 40 s of CPU in 50 s alive: 80%


class Steps:
    """An Event stand-in: wait() says "not stopped" `n` times, then "stopped"."""

    def __init__(self, n):
        self.n = n

    def wait(self, timeout):
        self.n -= 1
        return self.n < 0

    def set(self):
        self.n = -1


def test_gpu_readings_from_nvml():
    sampler = SystemSampler("cuda:1", nvml=FakeNVML(), say=print)
    sampler._open()
    assert sampler.handle == ("gpu", 1)
    assert sampler.sample_once() == {"gpu_util_pct": 57.0, "gpu_memory_used_gb": 3.0, "gpu_temp_c": 66.0,
                                     "gpu_power_w": 70.5}


def test_cpu_readings_from_the_process():
    sampler = SystemSampler("cpu", process=FakeProcess())
    sampler._open()  # primes cpu_percent (its first answer means nothing)
    first = sampler.sample_once()  # no last reading yet: the average over the process's life
    assert first["cpu_pct"] == pytest.approx(80.0, rel=0.01) and first["cpu_rss_gb"] == 0.5
    assert sampler.sample_once() == {"cpu_pct": 150.0, "cpu_rss_gb": 0.5}  # since the last reading


def test_a_gpu_that_disappears_ends_the_gpu_readings_with_one_line():
    said = []
    nvml = FakeNVML(lose_after=2)
    sampler = SystemSampler("cuda", nvml=nvml, say=said.append)
    sampler._open()
    assert "gpu_util_pct" in sampler.sample_once() and "gpu_util_pct" in sampler.sample_once()
    assert sampler.sample_once() == {} and sampler.sample_once() == {}
    assert said == ["GPU 0 stopped answering NVML (GPU is lost): no more GPU readings this run"]
    assert nvml.reads == 3  # never asked again
    assert sampler.stop() and nvml.shutdowns == 0  # nothing to shut down on a lost device


def test_the_thread_samples_each_interval_and_stops_at_once():
    sampler = SystemSampler("cpu", interval_s=3600.0, process=FakeProcess())
    sampler._stop = Steps(3)  # three intervals pass, then the stop
    sampler.start()
    sampler._thread.join(5)
    assert sampler.samples == 4 and not sampler.running  # the first reading + one per interval
    # a real Event: an hour's interval, and stop() still returns at once
    slow = SystemSampler("cpu", interval_s=3600.0, process=FakeProcess()).start()
    assert slow.running and slow.samples == 1
    assert slow.stop(timeout_s=1.0) and not slow.running and slow.samples == 1


def test_nvml_missing_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert import_nvml() is None
    assert "pip install nvidia-ml-py" in capsys.readouterr().err
    sampler = SystemSampler("cuda")
    sampler._open()
    assert sampler.handle is None and sampler.sample_once() == {}  # no torch.cuda here: nothing to read
    assert NVML_MISSING in capsys.readouterr().err


class Keep(TrainerCallback):
    """Keeps each log step's metrics (it runs after the monitor)."""

    def __init__(self):
        self.logs = []

    def on_log(self, state, control, logs=None, **kw):
        self.logs.append(dict(logs))


def _train(tmp_path, monitor):
    cfg = tiny_config(max_steps=6, log_interval=2, eval_interval=3)
    train = ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1)
    val = ArrayBatches(make_tokens(seed=5), cfg.batch_size, cfg.block_size)
    keep = Keep()
    Trainer(cfg, build_model(cfg), train, val, run_dir=tmp_path / "run", callbacks=[monitor, keep],
            progress_bar=False).train()
    return keep.logs


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_run_logs_the_readings_and_draws_the_panel_live_and_in_the_dashboard(tmp_path, device, monkeypatch):
    from utils.training.viz import live_plotting
    from utils.training.viz.dashboard import PANEL_TITLES, TrainingDashboard
    from utils.training.viz.live_plotting import LivePlotter

    shown = []
    monkeypatch.setattr(live_plotting, "_display", lambda image: shown.append(image) or SimpleNamespace(
        update=shown.append))

    monitor = SystemMonitor(3600.0, device=device, nvml=FakeNVML(), process=FakeProcess())
    logs = _train(tmp_path, monitor)
    assert monitor.sampler is None  # stopped at on_train_end
    keys = {"gpu_util_pct", "gpu_memory_used_gb", "gpu_temp_c", "gpu_power_w"} if device == "cuda" else \
        {"cpu_pct", "cpu_rss_gb"}
    assert len(logs) == 3 and all(keys <= set(log) and set(log) & set(SYSTEM_KEYS) == keys for log in logs)
    # the live figure: a System panel drawn from the logged readings
    live = LivePlotter(mode="figure")
    for log in logs:
        live.on_log(SimpleNamespace(step=log["step"]), None, logs=log)
    live.draw(final=True)
    assert shown and "System" in live.axes and live.axes["System"].lines
    # the dashboard
    record = RunRecord(name="r", source="test", train=pd.DataFrame(logs),
                       hardware={"gpu_memory_gib": 16.0} if device == "cuda" else {})
    fig = TrainingDashboard(record).figure()
    system = [ax for ax in fig.axes if ax.get_title().startswith(PANEL_TITLES[6])]
    assert len(system) == 1 and system[0].lines
    title = system[0].get_title()
    assert ("66 °C" in title and "70 W" in title) if device == "cuda" else "0.5 GiB RSS" in title


def test_the_session_puts_the_monitor_before_the_tracker(tmp_path):
    from utils.training.config import TrainingConfig
    from utils.training.session import ReportingOptions, TrainingSession
    from utils.training.tracking.metrics import MetricsTracker

    session = TrainingSession(TrainingConfig.preset("smoke"), tmp_path, tracking=ReportingOptions(progress_bar=False))
    kinds = [type(cb) for cb in session.callbacks()]
    assert kinds.index(SystemMonitor) < kinds.index(MetricsTracker)
    off = TrainingSession(TrainingConfig.preset("smoke", run_name="off"), tmp_path,
                          tracking=ReportingOptions(system_interval_s=0))
    assert SystemMonitor not in [type(cb) for cb in off.callbacks()]
    session.close()
    off.close()

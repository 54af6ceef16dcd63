"""The live system panel's numbers: a background thread samples the device every few
seconds, and the run's log steps pick up the latest sample.

On a GPU (NVML, `pip install nvidia-ml-py`): utilisation, device memory used, the
caching allocator's reserved memory, temperature and power. On CPU (psutil): this
process's CPU use and resident memory. The thread never touches the training hot path:
it reads NVML and the allocator's host-side counters (no CUDA call that synchronises),
and the callback only copies its last sample into the logs of a log step, under a lock.

Metric names (docs/ARCHITECTURE.md's vocabulary): SYSTEM_KEYS. A device that stops
answering (NVML's "GPU is lost") ends the GPU readings with one line; the run goes on.
`stop()` sets an Event the thread waits on, so it returns within a second however long
the interval.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState

GIB = 2**30
GPU_KEYS = ("gpu_util_pct", "gpu_memory_used_gb", "memory_reserved_gb", "gpu_temp_c", "gpu_power_w")
CPU_KEYS = ("cpu_pct", "cpu_rss_gb")
SYSTEM_KEYS = GPU_KEYS + CPU_KEYS
NVML_MISSING = ("the live GPU panel needs NVML: pip install nvidia-ml-py (in requirements-training.txt); "
                "until then it shows the allocator's reserved memory only")


def import_nvml() -> Any:
    """The pynvml module (from nvidia-ml-py), or None with one line saying how to get it."""
    try:
        import pynvml
    except ImportError:
        print(NVML_MISSING, file=sys.stderr, flush=True)
        return None
    return pynvml


class SystemSampler:
    """Samples `device` ("cuda", "cuda:1", "cpu", ...) every `interval_s` seconds on a
    daemon thread. `nvml`: the pynvml module or a stand-in (None on a GPU: imported);
    `process`: a psutil.Process or a stand-in (None on CPU: this process)."""

    def __init__(self, device: str = "cpu", interval_s: float = 5.0, *, nvml: Any = None, process: Any = None,
                 say=None):
        self.device = str(device)
        self.interval_s = float(interval_s)
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.on_gpu = self.device.split(":")[0] == "cuda"
        self.index = int(self.device.split(":")[1]) if self.on_gpu and ":" in self.device else 0
        self.nvml, self.handle, self.process = nvml, None, process
        self.samples = 0
        self._cpu_readings = 0
        self.sample_s = 0.0  # wall time spent reading, summed (bench/plot_overhead.py reports it)
        self._latest: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one reading -------------------------------------------------------------------
    def _open(self) -> None:
        if self.on_gpu:
            self.nvml = self.nvml if self.nvml is not None else import_nvml()
            if self.nvml is not None:
                try:
                    self.nvml.nvmlInit()
                    self.handle = self.nvml.nvmlDeviceGetHandleByIndex(self.index)
                except self.nvml.NVMLError as e:
                    self.say(f"NVML cannot read GPU {self.index} ({e}): the GPU panel shows reserved memory only")
                    self.handle = None
        elif self.process is None:
            import psutil

            self.process = psutil.Process()
        if self.process is not None and not self.on_gpu:
            self.process.cpu_percent(None)  # the first call primes the counter (it returns 0.0)

    def sample_once(self) -> dict[str, float]:
        """One reading of every metric this device has (a lost GPU: none of NVML's)."""
        out: dict[str, float] = {}
        if self.on_gpu:
            if self.handle is not None:
                nv = self.nvml
                try:
                    out["gpu_util_pct"] = float(nv.nvmlDeviceGetUtilizationRates(self.handle).gpu)
                    out["gpu_memory_used_gb"] = nv.nvmlDeviceGetMemoryInfo(self.handle).used / GIB
                    out["gpu_temp_c"] = float(nv.nvmlDeviceGetTemperature(self.handle, nv.NVML_TEMPERATURE_GPU))
                    out["gpu_power_w"] = nv.nvmlDeviceGetPowerUsage(self.handle) / 1000.0  # mW
                except nv.NVMLError as e:
                    self.handle, out = None, {}
                    self.say(f"GPU {self.index} stopped answering NVML ({e}): no more GPU readings this run")
            reserved = self._reserved_gb()
            if reserved is not None:
                out["memory_reserved_gb"] = reserved
        if self.process is not None and not self.on_gpu:
            out["cpu_pct"] = self._cpu_pct()
            out["cpu_rss_gb"] = self.process.memory_info().rss / GIB
        return out

    def _cpu_pct(self) -> float:
        """This process's CPU use since the last reading, 100 = one core; the first reading
        (no last one yet) averages over the process's life."""
        since_last = float(self.process.cpu_percent(None))
        self._cpu_readings += 1
        if self._cpu_readings > 1:
            return since_last
        times = self.process.cpu_times()
        alive = max(1e-3, time.time() - self.process.create_time())
        return 100.0 * (times.user + times.system) / alive

    def _reserved_gb(self) -> float | None:
        """The caching allocator's reserved bytes: a host-side counter (no synchronisation)."""
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return None
        return torch.cuda.memory_reserved(self.index) / GIB

    # -- the thread --------------------------------------------------------------------
    def start(self) -> SystemSampler:
        self._open()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="system-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        t0 = time.perf_counter()
        sample = self.sample_once()
        with self._lock:
            self._latest = sample
            self.samples += 1
            self.sample_s += time.perf_counter() - t0

    def latest(self) -> dict[str, float]:
        with self._lock:
            return dict(self._latest)

    def stop(self, timeout_s: float = 1.0) -> bool:
        """Stop the thread; -> whether it ended within `timeout_s`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            alive = self._thread.is_alive()
        else:
            alive = False
        if self.handle is not None:
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError:
                pass  # the driver went away with the device: nothing left to shut down
            self.handle = None
        return not alive

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class SystemMonitor(TrainerCallback):
    """Starts a SystemSampler on the run's device at on_train_begin, adds its latest
    sample to each log step's metrics, and stops it at on_train_end. Put it before the
    MetricsTracker (which writes the logs to the sinks)."""

    def __init__(self, interval_s: float = 5.0, *, device: str | None = None, nvml: Any = None, process: Any = None):
        self.interval_s, self.device, self.nvml, self.process = interval_s, device, nvml, process
        self.sampler: SystemSampler | None = None
        self.samples, self.sample_s = 0, 0.0  # the last run's readings and their cost (s)

    def on_train_begin(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        device = self.device or str((kwargs.get("run_info") or {}).get("device", "cpu"))
        self.sampler = SystemSampler(device, self.interval_s, nvml=self.nvml, process=self.process).start()

    def on_log(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        logs = kwargs.get("logs")
        if logs is not None and self.sampler is not None:
            logs.update(self.sampler.latest())

    def on_train_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.samples, self.sample_s = self.sampler.samples, self.sampler.sample_s
            self.sampler = None

"""Derived metrics (throughput per GPU, MFU, perplexity, memory) and their fan-out to sinks.

`MetricsTracker` is the first callback in the list: on every log it adds the derived
metrics to the `logs` dict in place (names from docs/ARCHITECTURE.md), so the plotting
callbacks after it read the enriched dict, then writes the dict to each sink
(ExperimentDBSink, WandbSink, RunLogWriter: the MetricsSink protocol).

MFU = tokens_per_sec (all GPUs) x flops_per_token / (peak FLOPS per GPU x n GPUs), with
the peak the dense bf16/fp16 tensor figure below. CPU runs report no MFU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from utils.training.contracts import MetricsSink
from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState

GIB = 2**30  # bytes. The memory metrics named `*_gb` (memory_allocated_gb, memory_reserved_gb,
# memory_peak_gb, cpu_rss_gb) hold GiB: the names are a stored data contract, the unit is GiB.

# Dense (no structured sparsity) bf16/fp16 tensor-core peak per GPU, FLOP/s. Datasheets
# often print the 2:4 sparse figure, which is twice these.
PEAK_FLOPS: dict[str, tuple[float, str]] = {
    "T4": (65e12, "NVIDIA T4 datasheet: 65 TFLOPS mixed precision FP16/FP32 (no bf16)"),
    "L4": (121e12, "NVIDIA L4 datasheet: 242 TFLOPS bf16 with sparsity / 2"),
    "V100": (125e12, "NVIDIA V100 datasheet: 125 TFLOPS tensor (SXM2; PCIe 112)"),
    "A100 40GB": (312e12, "NVIDIA A100 datasheet: 312 TFLOPS bf16 dense"),
    "A100 80GB": (312e12, "NVIDIA A100 datasheet: 312 TFLOPS bf16 dense"),
    "A6000": (154.8e12, "NVIDIA RTX A6000 datasheet: 309.7 TFLOPS tensor with sparsity / 2"),
    "RTX 4090": (165.2e12, "NVIDIA Ada Lovelace whitepaper: RTX 4090 FP16 tensor dense, FP16 accumulate "
                           "(82.6 with FP32 accumulate)"),
    "H100 SXM": (989.4e12, "NVIDIA H100 datasheet: 1979 TFLOPS bf16 SXM with sparsity / 2"),
    "H100 PCIe": (756e12, "NVIDIA H100 datasheet: 1513 TFLOPS bf16 PCIe with sparsity / 2"),
    "H200": (989.4e12, "NVIDIA H200 datasheet: 1979 TFLOPS bf16 SXM with sparsity / 2"),
    "B200": (2.25e15, "NVIDIA HGX B200 datasheet: 4.5 PFLOPS bf16 per GPU with sparsity / 2"),
}
UNKNOWN_GPU_FALLBACK = "A100 40GB"  # an unknown GPU gets this figure, marked estimated


def _table_key(device_name: str) -> str | None:
    """torch.cuda.get_device_name() (e.g. 'NVIDIA A100-SXM4-80GB', 'Tesla T4') -> PEAK_FLOPS key."""
    n = device_name.upper().replace("-", " ").replace("_", " ")
    if "H100" in n:
        return "H100 PCIe" if "PCIE" in n else "H100 SXM"  # 'H100 80GB HBM3' is the SXM part
    if "A100" in n:
        return "A100 80GB" if "80G" in n else "A100 40GB"
    for key, pattern in (("H200", "H200"), ("B200", "B200"), ("RTX 4090", "4090"), ("A6000", "A6000"),
                         ("V100", "V100")):
        if pattern in n:
            return key
    for key in ("T4", "L4"):  # whole words only: 'L40S' is not an L4
        if key in n.split():
            return key
    return None


def cuda_index(device: Any) -> int | None:
    """The CUDA ordinal of `device` (the current device for a bare "cuda"); None off CUDA."""
    dev = str(device)
    if not dev.startswith("cuda"):
        return None
    if ":" in dev:
        return int(dev.split(":")[1])
    import torch

    return torch.cuda.current_device()


def nvml_handle(index: int) -> Any:
    """pynvml handle for GPU `index` (for gpu_util_pct), or None when pynvml is not
    installed or NVML fails: every other metric works without it."""
    try:
        import pynvml
    except ImportError:
        return None  # gpu_util_pct needs `pip install nvidia-ml-py`
    try:
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except pynvml.NVMLError:
        return None


def peak_flops(device_name: str | None) -> tuple[float | None, str, bool]:
    """(peak dense bf16/fp16 FLOP/s per GPU, source, estimated). CPU or None: (None, why, False)."""
    if not device_name or device_name.lower().startswith("cpu") or device_name.lower() == "mps":
        return None, "no GPU: MFU not reported", False
    key = _table_key(device_name)
    if key is None:
        flops, _ = PEAK_FLOPS[UNKNOWN_GPU_FALLBACK]
        return flops, f"unknown GPU {device_name!r}: {UNKNOWN_GPU_FALLBACK} figure used as an estimate", True
    flops, source = PEAK_FLOPS[key]
    return flops, source, False


def mfu_pct(tokens_per_sec: float, flops_per_token: float, peak: float, n_gpus: int = 1) -> float:
    """Model FLOPs utilisation in %: tokens/s of all GPUs x FLOPs per token (forward and
    backward, models.flops_per_token) over the peak FLOP/s of one GPU x n_gpus."""
    return 100.0 * float(tokens_per_sec) * float(flops_per_token) / (float(peak) * int(n_gpus))


def _perplexity(loss: Any) -> float:
    try:
        return math.exp(float(loss))
    except OverflowError:
        return math.inf


class MetricsTracker(TrainerCallback):
    """Adds derived metrics to the log dict in place and writes every dict to `sinks`
    (made by tracking.sinks.sinks_for)."""

    def __init__(self, sinks: Sequence[MetricsSink] = (), *, flops_per_token: float | None = None, world_size: int = 1,
                 device: Any = None):
        self.sinks: list[MetricsSink] = list(sinks)
        self.flops_per_token = flops_per_token  # forward + backward FLOPs per trained token
        self.world_size = int(world_size)
        self.device = device
        self.peak = None  # FLOP/s per GPU
        self.peak_source, self.peak_estimated = "", False
        self._cuda_index: int | None = None
        self._nvml = None  # pynvml device handle when pynvml is installed
        self._process = None  # psutil.Process
        self._last_train_loss: float | None = None  # the run's final_train_loss

    # -- device facts -----------------------------------------------------------
    def _setup_device(self, run_info: dict) -> dict:
        device = self.device if self.device is not None else run_info.get("device", "cpu")
        dev = str(device)
        name = dev
        self._cuda_index = cuda_index(dev)
        if self._cuda_index is not None:
            from utils.training.runtime import gpu_name  # the one lookup of a GPU's name

            # the run facts carry it (measured once); a tracker in someone's own loop asks
            name = run_info.get("gpu_name") or gpu_name(self._cuda_index)
            self._nvml = nvml_handle(self._cuda_index)
        else:
            import psutil

            self._process = psutil.Process()
        self.peak, self.peak_source, self.peak_estimated = peak_flops(name)
        return {"device": dev, "gpu_name": name if self._cuda_index is not None else None,
                "peak_flops_per_gpu": self.peak, "peak_flops_source": self.peak_source,
                "peak_flops_estimated": self.peak_estimated}

    def _resources(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self._cuda_index is not None:
            import torch

            i = self._cuda_index
            out["memory_allocated_gb"] = torch.cuda.memory_allocated(i) / GIB
            out["memory_reserved_gb"] = torch.cuda.memory_reserved(i) / GIB
            out["memory_peak_gb"] = torch.cuda.max_memory_allocated(i) / GIB
            if self._nvml is not None:
                import pynvml

                try:
                    out["gpu_util_pct"] = float(pynvml.nvmlDeviceGetUtilizationRates(self._nvml).gpu)
                except pynvml.NVMLError:
                    self._nvml = None  # driver refused once: stop asking
        if self._process is not None:
            out["cpu_rss_gb"] = self._process.memory_info().rss / GIB
        return out

    def derive(self, logs: dict, state: TrainerState | None = None) -> dict:
        """Add derived metrics to `logs` in place (also usable without a trainer)."""
        if state is not None:
            logs.setdefault("step", state.step)
            logs.setdefault("tokens_seen", state.tokens_seen)
        tps = logs.get("tokens_per_sec")
        if tps is not None:
            logs["tokens_per_sec_per_gpu"] = float(tps) / self.world_size
            if self.peak and self.flops_per_token:
                logs["mfu_pct"] = mfu_pct(tps, self.flops_per_token, self.peak, self.world_size)
        if logs.get("train_loss") is not None and "train_perplexity" not in logs:
            logs["train_perplexity"] = _perplexity(logs["train_loss"])
        logs.update(self._resources())
        return logs

    # -- events -------------------------------------------------------------------
    def on_train_begin(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        run_info = dict(kwargs.get("run_info") or {})
        if self.flops_per_token is None:
            self.flops_per_token = run_info.get("flops_per_token")
        self.world_size = int(run_info.get("world_size") or state.world_size or self.world_size)
        run_info.update(self._setup_device(run_info))
        if kwargs.get("config") is not None:
            run_info.setdefault("config", kwargs["config"])
        # Sinks store their ids here (db_run_id, wandb_run_id): it is the checkpoint's dict.
        run_info["tracking"] = state.tracking
        run_info["resumed_from_step"] = state.resumed_from_step
        run_info["run_name"] = state.run_name
        for sink in self._writers(state):
            sink.start(run_info)

    def on_log(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        logs = kwargs.get("logs")
        if logs is None:
            return
        self.derive(logs, state)
        if logs.get("train_loss") is not None:
            self._last_train_loss = float(logs["train_loss"])
        for sink in self._writers(state):
            sink.write(state.step, logs, "train")

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        metrics = kwargs.get("metrics")
        if metrics is None:
            return
        if metrics.get("val_loss") is not None and metrics.get("val_perplexity") is None:
            metrics["val_perplexity"] = _perplexity(metrics["val_loss"])
        step = int(metrics.get("step", state.step))
        for sink in self._writers(state):
            sink.write(step, metrics, "eval")
            sink.flush()

    def on_sample(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        for sink in self._writers(state):
            sink.add_samples(state.step, list(kwargs.get("samples") or []))

    def on_before_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # A checkpoint at step S counts only once everything logged up to S is on disk:
        # a resume from it never logs those steps again.
        for sink in self._writers(state):
            getattr(sink, "sync", sink.flush)()

    def on_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        for sink in self._writers(state):
            sink.add_checkpoint(state.step, str(kwargs.get("checkpoint_path")))

    def on_train_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        status = str(kwargs.get("status") or "completed")
        error = kwargs.get("error")
        summary = {"best_val_loss": state.best_val_loss if math.isfinite(state.best_val_loss) else None,
                   "best_step": state.best_step if state.best_step >= 0 else None,
                   "tokens_seen": state.tokens_seen, "final_step": state.step, "total_time": state.elapsed_s}
        if self._last_train_loss is not None:  # unknown when a finished run is started again: keep the stored one
            summary["final_train_loss"] = self._last_train_loss
        if state.tracking.get("wandb_run_id"):
            summary["wandb_run_id"] = state.tracking["wandb_run_id"]
        if error is not None:
            summary["error"] = f"{type(error).__name__}: {error}"
        first_error: Exception | None = None
        for sink in self._writers(state):  # every sink closes, even when one fails
            try:
                sink.close(status, dict(summary))
            except Exception as e:  # noqa: BLE001 - the other sinks must still close; re-raised below
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def _writers(self, state: TrainerState) -> list[MetricsSink]:
        return self.sinks if state.is_world_process_zero else []  # one rank writes


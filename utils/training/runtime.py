"""Where we run: Colab or not, which device, how much memory.

Used by the notebooks' first cells and the run facts (engine/run_facts.py: the summary
card, the memory check, the trainer's run_info). Importing this module does not import
torch; `detect_runtime` and `gpu_name` do.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Any


def in_colab() -> bool:
    """True inside a Colab runtime (or a test that installs a fake google.colab)."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ModuleNotFoundError, ValueError):  # no `google` package at all
        return False


@dataclass(frozen=True)
class RuntimeInfo:
    device: str  # "cuda" | "mps" | "cpu"
    gpu_name: str  # "" on CPU
    gpu_count: int
    gpu_memory_gb: float  # per GPU, GiB; 0 on CPU
    bf16_supported: bool
    colab: bool
    python: str
    torch: str
    cpu_count: int
    ram_gb: float  # host memory, GiB

    def describe(self) -> str:
        where = "Colab" if self.colab else "local"
        if self.device == "cuda":
            dev = f"{self.gpu_count}x {self.gpu_name} ({self.gpu_memory_gb:.1f} GiB each, bf16={'yes' if self.bf16_supported else 'no'})"
        else:
            dev = f"{self.device.upper()} ({self.cpu_count} cores)"
        return f"{where} runtime | {dev} | {self.ram_gb:.1f} GiB RAM | Python {self.python} | torch {self.torch}"

    def to_dict(self) -> dict:
        return asdict(self)


def detect_runtime() -> RuntimeInfo:
    import torch

    name, count, memory_gb, bf16 = "", 0, 0.0, False
    if torch.cuda.is_available():
        device = "cuda"
        count = torch.cuda.device_count()
        name, memory_gb = gpu_name(0), torch.cuda.get_device_properties(0).total_memory / 2**30
        bf16 = torch.cuda.is_bf16_supported()
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
    return RuntimeInfo(
        device=device,
        gpu_name=name,
        gpu_count=count,
        gpu_memory_gb=round(memory_gb, 2),
        bf16_supported=bf16,
        colab=in_colab(),
        python=platform.python_version(),
        torch=torch.__version__,
        cpu_count=os.cpu_count() or 1,
        ram_gb=round(_host_memory_bytes() / 2**30, 1),
    )


def gpu_name(device: Any = None) -> str:
    """The one lookup of a GPU's name (torch.cuda.get_device_name, e.g. 'NVIDIA A100-SXM4-80GB',
    'Tesla T4'): `device` a CUDA device, index or string ("cuda:1"; None = the current one).
    "" when it is not a CUDA device or no GPU is there."""
    import torch

    if device is None:
        if not torch.cuda.is_available():
            return ""
    elif isinstance(device, (str, torch.device)):
        device = torch.device(device)
        if device.type != "cuda":
            return ""
        device = torch.cuda.current_device() if device.index is None else device.index
    # a CUDA device named outright: ask the driver (an error here is a real one, not "no GPU")
    return torch.cuda.get_device_name(device)


def _host_memory_bytes() -> int:
    try:
        import psutil
    except ImportError:  # psutil is in requirements-training.txt; stay usable without it
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return psutil.virtual_memory().total

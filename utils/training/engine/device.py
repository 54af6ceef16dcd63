"""Where and how a run computes: the device, the precision, autocast, torch.compile,
and the process-wide backend switches. Pure functions of their arguments (unit-tested
on CPU); the session resolves precision once with `resolve_precision` for its summary,
the trainer with the same function for the run.
"""

from __future__ import annotations

import contextlib
import os

import torch

from utils.training.config_rules import MUON_PRECISIONS
from utils.training.registries import PRECISIONS


def resolve_device(device=None) -> torch.device:
    """`device` as a torch.device; None: CUDA, else MPS, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str, use_amp: bool, device_type: str, bf16_supported: bool) -> str:
    """-> the registries.PRECISIONS name a run computes in. auto: bf16 where the GPU has it
    (Ampere+), fp16 with a GradScaler on older GPUs (T4, V100), fp32 on CPU/MPS. Raises
    ValueError (naming `precision`) for a choice the device cannot run."""
    facts = PRECISIONS.get(precision).facts
    if not use_amp or facts["dtype"] == "float32":
        return "fp32"
    if facts["dtype"] is None:  # auto
        if device_type != "cuda":
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if device_type not in facts["devices"]:
        raise ValueError(f"precision: {precision!r} runs on {' or '.join(facts['devices'])}, not on {device_type}; "
                         "use 'auto' or 'fp32'")
    if facts["dtype"] == "bfloat16" and device_type == "cuda" and not bf16_supported:
        raise ValueError(f"precision: {precision!r} is not supported by this GPU; use 'fp16' or 'auto'")
    return precision


def needs_grad_scaler(precision: str) -> bool:
    """Whether a run in this (resolved) precision scales its loss (fp16's narrow range)."""
    return bool(PRECISIONS.get(precision).facts.get("grad_scaler"))


def device_precision(config, device: torch.device) -> str:
    """`resolve_precision` for `config` on `device` (asks CUDA whether it has bf16)."""
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return resolve_precision(config.precision, config.use_amp, device.type, bf16_ok)


# The dtypes Muon's Newton-Schulz iterations may run in (config.muon_precision resolved;
# config_rules.MUON_PRECISIONS: the choices, "auto" first).
MUON_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}


def resolve_muon_precision(setting: str, device_type: str, cuda_capability: tuple[int, int] | None = None,
                           cpu_bf16: bool = False) -> str:
    """-> "bf16" | "fp32" | "fp16": the dtype of Muon's Newton-Schulz matmuls on this device.
    auto: bf16 where the device multiplies bf16 natively (CUDA capability >= 8.0; a CPU
    whose oneDNN has bf16, AVX-512-BF16 or AMX: `cpu_bf16`), else fp32: a T4 (7.5), an AVX2
    CPU (where torch emulates bf16, ~68x slower per matmul than native) and MPS. fp16 is
    taken only on CUDA (a CPU emulates it as it does bf16); ValueError naming the field
    otherwise. bf16 and fp32 are allowed everywhere (bf16 is what torch.optim.Muon does)."""
    if setting not in MUON_PRECISIONS:
        raise ValueError(f"muon_precision: {setting!r} is not one of {list(MUON_PRECISIONS)}")
    if setting == "fp16" and device_type != "cuda":
        raise ValueError(f"muon_precision: 'fp16' runs on CUDA only, not on {device_type}; use 'auto', 'fp32' "
                         "or 'bf16'")
    if setting != "auto":
        return setting
    if device_type == "cuda":
        return "bf16" if cuda_capability is not None and tuple(cuda_capability) >= (8, 0) else "fp32"
    if device_type == "cpu":
        return "bf16" if cpu_bf16 else "fp32"
    return "fp32"  # MPS and anything else: no measured native bf16 matmul


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN multiplies bf16 natively on this CPU (follows ONEDNN_MAX_CPU_ISA)."""
    probe = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    return bool(probe()) if probe is not None and torch.backends.mkldnn.is_available() else False


def device_muon_precision(config, device: torch.device | str) -> str:
    """`resolve_muon_precision` for `config` on `device` (asks it for its facts)."""
    device = torch.device(device)
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    cpu_bf16 = cpu_has_native_bf16() if device.type == "cpu" else False
    return resolve_muon_precision(config.muon_precision, device.type, capability, cpu_bf16)


def autocast_context(device_type: str, precision: str):
    """A fresh autocast context per use; nullcontext in fp32 (no per-step overhead)."""
    dtype = PRECISIONS.get(precision).facts["dtype"]
    if dtype in (None, "float32"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=getattr(torch, dtype))


def resolve_compile(setting: str, device_type: str, capability: tuple[int, int] | None) -> bool:
    """Whether to torch.compile the model. auto: on CUDA GPUs of capability >= 8.0 (A100,
    L4, H100: fused kernels pay for the compile within a few hundred steps); off on CPU,
    where compiling the cpu preset's model took 52 s for steps 8% faster, paid back only
    after ~3,600 steps (README), on MPS, and on older GPUs (T4), never measured.
    true/false mean on/off."""
    if setting in (True, "on"):
        return True
    if setting in (False, "off"):
        return False
    return device_type == "cuda" and capability is not None and tuple(capability) >= (8, 0)


def device_compiles(config, device: torch.device) -> bool:
    """`resolve_compile` for `config` on `device` (asks CUDA for its capability)."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return resolve_compile(config.compile, device.type, capability)


def wrap_model(model: torch.nn.Module, *, compiled: bool, device: torch.device, ddp: bool) -> torch.nn.Module:
    """What the training step calls: `model` compiled (lazily: the first step pays for
    it, timed apart by the trainer) and/or wrapped in DistributedDataParallel."""
    wrapped = torch.compile(model) if compiled else model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(wrapped, device_ids=[device.index] if device.type == "cuda" else None)
    return wrapped


def configure_backends(config, device: torch.device) -> None:
    """Process-wide switches a run needs: deterministic kernels when asked, TF32 matmuls
    on CUDA (Ampere+ tensor cores; fp32 accuracy is not what a language model needs)."""
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

"""RunFacts: the facts of one run, computed once and passed on.

Parameters, FLOPs per token, the resolved precision (and Muon's Newton-Schulz one), the device and its GPU name, the
world size and the config hash: `measure_run_facts` computes them once. The session does
it in prepare() and hands the object to the Trainer (`run_facts=`), the summary card and
the memory check; a Trainer built without a session (tests, bench/, examples) measures
its own. The sinks receive them in run_info (`run_info()`, `hardware()`, `model()`).

Import-light: torch and the other engine modules are imported inside `measure_run_facts`
only (`from utils.training import RunFacts` imports no torch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RunFacts:
    model_family: str  # the model's own type (model.config.model_type), else the config's family
    n_params: int  # unique parameters (tied ones once)
    n_params_non_embedding: int  # minus the token and position tables (Kaplan et al.)
    flops_per_token: float  # training FLOPs per token, 6N + 12LHQT (engine.models.flops_per_token)
    precision: str  # resolved for this device: fp32 | bf16 | fp16
    device: str  # the torch device training runs on: "cpu", "mps", "cuda", "cuda:1"
    gpu_name: str  # runtime.gpu_name of that device; "" off GPU
    gpu_memory_gb: float  # GiB per GPU; 0 off GPU
    world_size: int  # processes (one GPU each under DDP)
    config_hash: str  # TrainingConfig.config_hash, the run's one hash
    tokens_per_step: int  # all ranks together
    max_steps: int  # the step budget (TrainingConfig.resolve_max_steps)
    train_tokens: int | None  # tokens in the training split; None when streamed (size unknown)
    cpu_count: int
    ram_gb: float  # host memory, GiB
    colab: bool
    torch_version: str
    # The micro-batch each rank passes forward at once and its accumulation (engine/batch_size.py's
    # BatchChoice): measured for batch_size="auto" on a GPU; 0 in facts made without a choice.
    micro_batch: int = 0
    accumulation: int = 0
    batch_choice: str = ""  # how they were chosen, one line (the summary card shows it)
    probe_peak_gb: float | None = None  # the probe's measured peak memory at micro_batch (GPU), GiB
    # The dtype of Muon's Newton-Schulz iterations on this device (engine/device.py
    # resolve_muon_precision: bf16 where native, else fp32); "" when the optimizer is not Muon.
    muon_precision: str = ""

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    @property
    def on_gpu(self) -> bool:
        return self.device_type == "cuda"

    @property
    def memory_gb(self) -> float:
        """GiB this device offers a run: the GPU's memory, else the host's RAM."""
        return self.gpu_memory_gb if self.on_gpu else self.ram_gb

    def describe_device(self) -> str:
        """'NVIDIA A100 (79.3 GiB)' or 'this machine (15.6 GiB RAM)': the memory check's words."""
        if self.on_gpu:
            return f"{self.gpu_name} ({self.gpu_memory_gb:.1f} GiB)"
        return f"this machine ({self.ram_gb:.1f} GiB RAM)"

    def run_info(self) -> dict[str, Any]:
        """The flat run_info keys the trainer has always reported (readers look them up)."""
        return {
            "model_family": self.model_family,
            "parameters": self.n_params,
            "non_embedding_parameters": self.n_params_non_embedding,
            "flops_per_token": self.flops_per_token,
            "device": self.device,
            "device_name": self.gpu_name or self.device_type,
            "gpu_name": self.gpu_name or None,  # None off GPU: readers then say "cpu", never "1x cpu"
            "precision": self.precision,
            "world_size": self.world_size,
            "tokens_per_step": self.tokens_per_step,
            "max_steps": self.max_steps,
            "train_tokens": self.train_tokens,
            "config_hash": self.config_hash,
            "micro_batch": self.micro_batch,
            "accumulation": self.accumulation,
            "batch_choice": self.batch_choice,
            "muon_precision": self.muon_precision or None,
        }

    def hardware(self) -> dict[str, Any]:
        """run_info["hardware"], as the session has always written it."""
        return {
            "device": self.device_type,
            "gpu_name": self.gpu_name,
            "n_gpus": self.world_size if self.on_gpu else 0,  # one GPU per rank
            "gpu_memory_gb": self.gpu_memory_gb,
            "cpu_count": self.cpu_count,
            "ram_gb": self.ram_gb,
            "colab": self.colab,
            "torch": self.torch_version,
        }

    def model(self, config: Any) -> dict[str, Any]:
        """run_info["model"]: the counts with the shape fields of `config`."""
        return {
            "family": config.model_family,
            "n_params": self.n_params,
            "n_params_non_embedding": self.n_params_non_embedding,
            "flops_per_token": self.flops_per_token,
            "n_layer": config.n_layer,
            "d_model": config.d_model,
            "n_head": config.n_head,
            "block_size": config.block_size,
            "vocab_size": config.vocab_size,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_run_facts(config: Any, model: Any, *, device: Any = None, world_size: int = 1,
                      train_tokens: int | None = None, precision: str | None = None,
                      max_steps: int | None = None, batch: Any = None) -> RunFacts:
    """The facts of training `model` under `config` on `device` (None: the trainer's
    choice, engine.device.resolve_device) with `world_size` processes over
    `train_tokens` training tokens (None: unknown, streamed). `precision` and `max_steps`:
    the ones a caller already resolved (a Trainer without a session), else resolved here:
    ValueError for a precision this device cannot run (as the trainer says it),
    ConfigError naming max_steps for epochs over a corpus of unknown size. `batch`: the
    run's engine.batch_size.BatchChoice (None: the config's rank_batch, as given)."""
    import torch

    from utils.training.engine.device import device_muon_precision, resolve_device, resolve_precision
    from utils.training.engine.models import count_parameters, flops_per_token
    from utils.training.runtime import detect_runtime, gpu_name

    dev = resolve_device(device)
    rt = detect_runtime()
    if precision is None:
        bf16_ok = dev.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = resolve_precision(config.precision, config.use_amp, dev.type, bf16_ok)
    counts = count_parameters(model)
    if batch is None:
        from utils.training.engine.batch_size import BatchChoice

        micro, accum = config.rank_batch(world_size)
        batch = BatchChoice(micro, accum, int(world_size), "config", f"batch_size {config.batch_size} from the config")
    on_gpu = dev.type == "cuda"
    return RunFacts(
        model_family=getattr(getattr(model, "config", None), "model_type", None) or config.model_family,
        n_params=counts["total"],
        n_params_non_embedding=counts["non_embedding"],
        flops_per_token=flops_per_token(config, counts["non_embedding"]),
        precision=precision,
        device=str(dev),
        gpu_name=gpu_name(dev) if on_gpu else "",
        gpu_memory_gb=(round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 2) if on_gpu else 0.0),
        world_size=int(world_size),
        config_hash=config.config_hash,
        tokens_per_step=config.tokens_per_step,
        max_steps=config.resolve_max_steps(train_tokens) if max_steps is None else int(max_steps),
        train_tokens=train_tokens,
        cpu_count=rt.cpu_count,
        ram_gb=rt.ram_gb,
        colab=rt.colab,
        torch_version=rt.torch,
        micro_batch=batch.micro_batch,
        accumulation=batch.accumulation,
        batch_choice=batch.note,
        probe_peak_gb=batch.peak_memory_gb,
        muon_precision=device_muon_precision(config, dev) if getattr(config, "optimizer", "") == "muon" else "",
    )

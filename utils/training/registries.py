"""The registries: every optimizer, lr schedule, data source, model family and precision
a config may name, each once, with its form label, its builder and its facts.

Config validation reads the allowed names here (`CHOICES` in config_rules.py), the
notebook's dropdowns are generated from them (build_notebooks.py), and the engine and
data floors build what an entry names through `Registry.builder(name)`. Adding an
optimizer is one `Entry` below plus its builder function in engine/optimizers.py;
nothing else switches on the name.

This module sits on the base floor with config: it imports nothing of the library and no
torch. A builder is therefore named as "module:function" and imported on first use, from
the floor that uses it (engine, data); a test or a user may also register a callable.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One choice: its `name` (the config value), `label` (what the form's help and the
    docs call it), `builder` ("module:function", or the callable itself; None where there
    is nothing to build) and `facts` the library reads instead of switching on the name."""

    name: str
    label: str
    builder: str | Callable | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))

    def build_function(self) -> Callable:
        """The builder, imported on first use when it is named as "module:function"."""
        if callable(self.builder):
            return self.builder
        if not isinstance(self.builder, str) or ":" not in self.builder:
            raise TypeError(f"{self.name!r} has no builder (got {self.builder!r})")
        module, _, attr = self.builder.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry:
    """name -> Entry for one config field, in the order forms and messages list them.
    Iterating, `in` and `len` see the names, so a Registry is what CHOICES holds."""

    def __init__(self, field_name: str, entries: list[Entry]):
        self.field = field_name
        self._entries: dict[str, Entry] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: Entry) -> Entry:
        """Register `entry`; ValueError when its name is taken (remove() it first)."""
        if not isinstance(entry.name, str) or not entry.name.strip():
            raise ValueError(f"{self.field}: a registry name must be a non-empty string, got {entry.name!r}")
        if entry.name in self._entries:
            raise ValueError(f"{self.field}: {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def register(self, name: str, label: str, builder: str | Callable | None = None, **facts: Any) -> Entry:
        return self.add(Entry(name, label, builder, facts))

    def remove(self, name: str) -> Entry:
        return self._entries.pop(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def get(self, name: Any) -> Entry:
        """The entry of `name`; ValueError naming the field and what is allowed."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"{self.field}: {name!r} is not one of {', '.join(self._entries)}") from None

    def builder(self, name: str) -> Callable:
        return self.get(name).build_function()

    @property
    def builders(self) -> Mapping[str, Callable]:
        """A live read-only view {name: builder}, imported on access."""
        return _Builders(self)

    def where(self, fact: str, value: Any = True) -> tuple[str, ...]:
        """The names whose `fact` equals `value`, in registry order."""
        return tuple(n for n, e in self._entries.items() if e.facts.get(fact) == value)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # an unhashable value (a list from a JSON file) is no choice
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.field!r}, {list(self._entries)})"


class _Builders(Mapping):
    def __init__(self, registry: Registry):
        self._registry = registry

    def __getitem__(self, name: str) -> Callable:
        if name not in self._registry:
            raise KeyError(name)
        return self._registry.builder(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry)

    def __len__(self) -> int:
        return len(self._registry)


_OPT = "utils.training.engine.optimizers"
OPTIMIZERS = Registry("optimizer", [
    Entry("adamw", "AdamW on every parameter", f"{_OPT}:build_adamw"),
    Entry("muon", "Muon on the hidden matrices (a lower loss in the same steps), AdamW on the rest",
          f"{_OPT}:build_muon"),
])

# A schedule's builder: (optimizer, config, max_steps, warmup_steps) -> a LambdaLR; each
# decays after a linear warmup.
SCHEDULES = Registry("schedule", [
    Entry("cosine", "cosine decay to min_lr_ratio x peak", f"{_OPT}:cosine_schedule"),
    Entry("linear", "linear decay to min_lr_ratio x peak", f"{_OPT}:linear_schedule"),
    Entry("constant", "constant after warmup", f"{_OPT}:constant_schedule"),
])

# A data source's builder is its loader (returns a TextCorpus). Facts:
#   reads:    "memory" (loaded whole, no input), "hub" (a Hugging Face dataset), "files" (a path)
#   options:  {loader keyword: config field} read from the config ("" means not given)
#   requires: the config field that must be non-empty for this source
#   synthetic: not text; every figure of a run on it says so
_SRC = "utils.training.data.sources"
_FILE_OPTIONS = {"path": "data_path", "text_column": "text_column"}
DATA_SOURCES = Registry("data_source", [
    Entry("builtin", "ICD-10-CM code descriptions, shipped (no network)", f"{_SRC}:load_builtin",
          {"reads": "memory", "options": {}}),
    Entry("hf", "a Hugging Face dataset (hf_dataset, hf_config)", f"{_SRC}:load_hf",
          {"reads": "hub", "requires": "hf_dataset",
           "options": {"name": "hf_dataset", "config": "hf_config", "text_column": "text_column"}}),
    Entry("drive", "files under the Drive workspace (data_path)", f"{_SRC}:load_drive",
          {"reads": "files", "requires": "data_path", "options": _FILE_OPTIONS}),
    Entry("upload", "files picked in Colab's browser", f"{_SRC}:load_upload",
          {"reads": "files", "options": _FILE_OPTIONS}),
    Entry("local", "a file or folder on this machine (data_path)", f"{_SRC}:load_local",
          {"reads": "files", "requires": "data_path", "options": _FILE_OPTIONS}),
    Entry("synthetic", "random text, for tests only (labelled synthetic)", f"{_SRC}:load_synthetic",
          {"reads": "memory", "options": {"seed": "random_seed"}, "synthetic": True}),
])

# A model family's builder: (config, d_ff) -> the transformers config object. Facts:
#   gqa:    grouped-query attention (n_kv_head < n_head allowed)
#   rotary: rotary position embeddings (d_model / n_head must be even)
#   mlp:    "gelu" (d_ff = 4 d_model by default) or "swiglu" (d_ff ~ 8/3 d_model)
#   options: has the architecture options (qk_norm, relu2_mlp, zero_init_proj, logit_softcap,
#           value_embeds, unet_skips; config_rules.ARCH_OPTIONS); transformers classes do not
_MOD = "utils.training.engine.models"
MODEL_FAMILIES = Registry("model_family", [
    Entry("llama", "RoPE, RMSNorm, SwiGLU MLP, grouped-query attention", f"{_MOD}:llama_config",
          {"gqa": True, "rotary": True, "mlp": "swiglu"}),
    Entry("gpt2", "learned positions, LayerNorm, GELU MLP", f"{_MOD}:gpt2_config",
          {"gqa": False, "rotary": False, "mlp": "gelu"}),
    Entry("qwen2", "llama plus q/k/v biases", f"{_MOD}:qwen2_config",
          {"gqa": True, "rotary": True, "mlp": "swiglu"}),
    Entry("nanogpt", "ours: llama-like, no norm gains, plus qk_norm, relu2_mlp, softcap, value embeds, U-net skips",
          f"{_MOD}:nanogpt_config", {"gqa": True, "rotary": True, "mlp": "swiglu", "options": True}),
])

# Facts: dtype (a torch dtype name; None for auto), bytes (per activation element),
# devices (device types that run it), grad_scaler (fp16 needs loss scaling). "auto" is
# resolved by engine/device.py.
PRECISIONS = Registry("precision", [
    Entry("auto", "bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU/MPS", None, {"dtype": None}),
    Entry("fp32", "32-bit floats, no autocast", None, {"dtype": "float32", "bytes": 4, "devices": ("cuda", "cpu", "mps")}),
    Entry("bf16", "bfloat16 autocast (Ampere+ GPUs, CPU)", None, {"dtype": "bfloat16", "bytes": 2, "devices": ("cuda", "cpu")}),
    Entry("fp16", "float16 autocast with a GradScaler (CUDA)", None,
          {"dtype": "float16", "bytes": 2, "devices": ("cuda",), "grad_scaler": True}),
])

# config field -> its registry: what config validation and the notebook's dropdowns read.
REGISTRIES: dict[str, Registry] = {r.field: r for r in (OPTIMIZERS, SCHEDULES, DATA_SOURCES, MODEL_FAMILIES,
                                                          PRECISIONS)}

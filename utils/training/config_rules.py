"""The rules a TrainingConfig must meet, and the error that lists every broken one.

`check_config(cfg)` is the one validation: types first (a bool is not an int, a string is
not a number, NaN and infinity are refused), then ranges, choices and the cross-field
rules; a field that failed its type check is not checked again, so one mistake is reported
once. `TrainingConfig.__post_init__` calls it; `replace()` calls it for the changed fields
only (`only=`), the cross-field rules always; `require_valid` is the check a run makes on
entry. `unknown_key` names the field a mistyped or foreign key (max_seq_len, lr) most
likely meant.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, get_type_hints

from utils.training.presets import PRESETS
from utils.training.registries import (
    DATA_SOURCES,
    MODEL_FAMILIES,
    OPTIMIZERS,
    PRECISIONS,
    REGISTRIES,
    SCHEDULES,
)

__all__ = [
    "ARCH_OPTIONS", "AUTO", "AUTO_FIELDS", "CHOICES", "COMPILE_MODES", "DATA_SOURCES", "KNOWN_ALIASES",
    "MODEL_FAMILIES", "MUON_ADJUST_LR_FNS", "MUON_PRECISIONS", "OPTIMIZERS", "PATH_NAME_RULE",
    "PRECISIONS", "RANGES", "SCHEDULES", "ConfigError", "Problem", "check_config", "check_types", "check_values",
    "field_types", "is_auto", "path_name_problem", "type_matches", "unknown_key",
]

COMPILE_MODES = ("auto", "on", "off")
# The dtype of Muon's Newton-Schulz iterations (engine/device.py resolve_muon_precision: auto =
# bf16 where the device multiplies bf16 natively, else fp32), and torch.optim.Muon's adjust_lr_fn.
MUON_PRECISIONS = ("auto", "bf16", "fp32", "fp16")
MUON_ADJUST_LR_FNS = ("original", "match_rms_adamw")
# Fields that take the string "auto" besides their type: batch_size="auto" is measured on the
# device when the run is prepared (engine/batch_size.py), keeping the global batch;
# muon_weight_decay="auto" is weight_decay and embedding_lr="auto" is learning_rate
# (TrainingConfig.effective_muon_weight_decay, effective_embedding_lr).
AUTO = "auto"
AUTO_FIELDS = frozenset({"batch_size", "muon_weight_decay", "embedding_lr"})


def is_auto(name: str, value: Any) -> bool:
    """Whether `value` is the "auto" that field `name` accepts besides its type."""
    return name in AUTO_FIELDS and value == AUTO

# The one rule for names that become folder or file names (run_name, the HPO study name):
# matched whole (fullmatch: a trailing newline is not allowed, as `$` would let it be), so
# no separator, no leading dot ('..'), nothing a shell or a file system reads specially.
_PATH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
PATH_NAME_RULE = ("must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit "
                  "(it names a folder)")


@dataclass(frozen=True)
class Problem:
    field: str
    value: Any
    message: str

    def __str__(self) -> str:
        shown = repr(self.value)
        if len(shown) > 80:  # a 400-digit number or a huge nested value: enough to recognise it
            shown = f"{shown[:60]}... ({len(shown)} characters)"
        return f"{self.field} = {shown}: {self.message}"


class ConfigError(ValueError):
    """Every problem of one config, each naming the field, the value and what is allowed."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid TrainingConfig ({n} problem{'s' if n != 1 else ''}):\n{lines}")

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: in a notebook a bad form value reads
        as the list of problems, not as a stack of library frames."""
        return [f"ConfigError: {self}", "Fix the form values above and run the cell again."]


def path_name_problem(field: str, value: Any) -> Problem | None:
    """None when `value` may name a folder; else the Problem naming `field` and the rule."""
    if isinstance(value, str) and _PATH_NAME.fullmatch(value):
        return None
    return Problem(field, value, PATH_NAME_RULE)


# (low, high, low_inclusive, high_inclusive) for numeric fields.
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "validation_split": (0.0, 0.5, False, True),
    "n_layer": (1, 256, True, True),
    "n_head": (1, 256, True, True),
    "n_kv_head": (1, 256, True, True),
    "d_model": (8, 65536, True, True),
    "d_ff": (0, 262144, True, True),
    "block_size": (8, 131072, True, True),
    "vocab_size": (260, 1_000_000, True, True),  # 256 bytes + special tokens
    "dropout": (0.0, 1.0, True, False),
    "logit_softcap": (0.0, 1e4, True, True),
    "learning_rate": (0.0, 1.0, False, True),
    "muon_lr": (0.0, 1.0, False, True),
    "embedding_lr": (0.0, 1.0, False, True),
    "min_lr_ratio": (0.0, 1.0, True, True),
    "warmup_ratio": (0.0, 1.0, True, False),
    "weight_decay": (0.0, 1.0, True, True),
    "muon_weight_decay": (0.0, 1.0, True, True),
    "max_grad_norm": (0.0, 1e6, True, True),
    "batch_size": (1, 65536, True, True),
    "gradient_accumulation_steps": (1, 4096, True, True),
    "epochs": (0.0, 10000.0, False, True),
    "max_steps": (0, 10**9, True, True),
    "max_tokens": (0, 10**15, True, True),
    "time_limit_s": (0.0, 365 * 86400.0, True, True),
    "log_interval": (1, 10**9, True, True),
    "eval_interval": (1, 10**9, True, True),
    "eval_batches": (1, 100000, True, True),
    "checkpoint_interval": (1, 10**9, True, True),
    "keep_checkpoints": (1, 1000, True, True),
    "sample_interval": (0, 10**9, True, True),
    "early_stopping_patience": (0, 100000, True, True),
    "random_seed": (0, 2**32 - 1, True, True),
    "wandb_timeout_s": (0.0, 3600.0, False, True),
    "memory_limit_gb": (0.0, 1e6, True, True),
}
# The allowed values of the choice fields: the registries (registries.py), read at each
# check, so an entry registered later is allowed at once.
CHOICES = {**REGISTRIES, "compile": COMPILE_MODES, "muon_precision": MUON_PRECISIONS,
           "muon_adjust_lr": MUON_ADJUST_LR_FNS}
# The cross-field rules below read these; they run only when all of them are well typed.
# The architecture options and their "off" values: a family without the registry fact
# `options` (the transformers classes) cannot express any other value.
ARCH_OPTIONS = {"qk_norm": False, "relu2_mlp": False, "zero_init_proj": False, "logit_softcap": 0.0,
                "value_embeds": False, "unet_skips": False}
_CROSS_FIELDS = frozenset({"run_name", "preset", "tokenizer", "n_head", "n_kv_head", "d_model", "model_family",
                           "data_source", "hf_dataset", "data_path"})


def type_matches(value: Any, kind: type) -> bool:
    """The one type rule of every field: a bool is not an int, an int is a float, a
    string is only a string. (Finiteness is checked separately.)"""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


@functools.cache
def field_types(cls: type) -> dict[str, type]:
    """{field name: its type} of a config dataclass, in declaration order (string
    annotations resolved once per class)."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_config(cfg: Any, only: Iterable[str] | None = None) -> list[Problem]:
    """Every problem of config `cfg` (empty: valid). `only`: check the type, range and
    choice of these fields alone (the others are known valid, e.g. in replace()); the
    cross-field rules always run."""
    types = field_types(type(cfg))
    names = list(types) if only is None else [n for n in types if n in set(only)]
    problems = check_types(cfg, names)
    return problems + check_values(cfg, skip={p.field for p in problems}, names=names)


def require_valid(cfg: Any) -> None:
    """ConfigError listing every problem of config `cfg`, if it has any. A TrainingConfig is
    validated when made, but a subclass may defer its checks to an explicit validate(), so
    a run checks the config it is handed once more on entry (microseconds)."""
    if dataclasses.is_dataclass(cfg):
        problems = check_config(cfg)
        if problems:
            raise ConfigError(problems)


def check_types(cfg: Any, names: Iterable[str] | None = None) -> list[Problem]:
    """Type and finiteness problems of the fields `names` (default: all)."""
    types = field_types(type(cfg))
    problems = []
    for name in types if names is None else names:
        kind, value = types[name], getattr(cfg, name)
        if is_auto(name, value):
            continue
        if not type_matches(value, kind):
            also = f" or {AUTO!r}" if name in AUTO_FIELDS else ""
            problems.append(Problem(name, value, f"must be {kind.__name__}{also}, got {type(value).__name__}"))
        elif kind is float and not _finite(value):
            problems.append(Problem(name, value, "must be a finite number (NaN and infinity are not allowed)"))
    return problems


def check_values(cfg: Any, skip: set[str], names: Iterable[str] | None = None) -> list[Problem]:
    """Range and choice rules of the fields `names` (default: all), then the cross-field
    rules. Fields in `skip` already failed their type check; rules that read them are
    skipped so one mistake is reported once."""
    wanted = None if names is None else set(names)
    problems = []
    for name, (lo, hi, lo_inc, hi_inc) in RANGES.items():
        if name in skip or (wanted is not None and name not in wanted):
            continue
        v = getattr(cfg, name)
        if is_auto(name, v):
            continue
        if (v < lo if lo_inc else v <= lo) or (v > hi if hi_inc else v >= hi):
            allowed = f"{'[' if lo_inc else '('}{lo}, {hi}{']' if hi_inc else ')'}"
            problems.append(Problem(name, v, f"must be in {allowed}"))
    for name, choices in CHOICES.items():
        if name in skip or (wanted is not None and name not in wanted):
            continue
        if getattr(cfg, name) not in choices:
            problems.append(Problem(name, getattr(cfg, name), f"must be one of {list(choices)}"))
    if skip & {"run_name", "tokenizer", "n_head", "n_kv_head", "d_model", "model_family"}:
        return problems  # the cross-field rules below need these fields well typed
    return problems + _cross_field_problems(cfg)


def _cross_field_problems(cfg: Any) -> list[Problem]:
    problems = []
    name_problem = path_name_problem("run_name", cfg.run_name)
    if name_problem:
        problems.append(name_problem)
    if cfg.preset and cfg.preset not in PRESETS:
        problems.append(Problem("preset", cfg.preset, f"must be '' or one of {sorted(PRESETS)}"))
    if not cfg.tokenizer.strip():
        problems.append(Problem("tokenizer", cfg.tokenizer, "must be 'bpe', 'gpt2' or a hub tokenizer name"))
    if cfg.n_head >= 1 and cfg.d_model % cfg.n_head:
        problems.append(Problem("d_model", cfg.d_model, f"must be divisible by n_head ({cfg.n_head})"))
    if cfg.n_kv_head >= 1 and cfg.n_head % cfg.n_kv_head:
        problems.append(Problem("n_head", cfg.n_head, f"must be divisible by n_kv_head ({cfg.n_kv_head})"))
    family = MODEL_FAMILIES.get(cfg.model_family).facts if cfg.model_family in MODEL_FAMILIES else {}
    if family.get("gqa") is False and cfg.n_kv_head != cfg.n_head:
        problems.append(Problem("n_kv_head", cfg.n_kv_head, f"must equal n_head ({cfg.n_head}) for "
                                                            f"{cfg.model_family}, which has no grouped-query attention"))
    if family.get("rotary") and cfg.n_head >= 1 and (cfg.d_model // cfg.n_head) % 2:
        problems.append(Problem("d_model", cfg.d_model,
                                f"d_model / n_head must be even for rotary embeddings ({cfg.model_family})"))
    if cfg.model_family in MODEL_FAMILIES and not family.get("options"):
        for name, off in ARCH_OPTIONS.items():
            value = getattr(cfg, name, off)
            if type_matches(value, type(off)) and _finite(value) and value != off:
                problems.append(Problem(name, value, f"model_family {cfg.model_family!r} (a transformers class) "
                                                     f"cannot express {name}; model_family=\"nanogpt\" has it"))
    required = DATA_SOURCES.get(cfg.data_source).facts.get("requires") if cfg.data_source in DATA_SOURCES else None
    if required and not getattr(cfg, required):
        problems.append(Problem(required, getattr(cfg, required),
                                f"is required when data_source is {cfg.data_source!r}"))
    return problems


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range (10**400 from a JSON file)
        return False


# Names other tools (the seed notebook, nanoGPT, HF) use for our fields: spelling distance
# alone would send max_seq_len to max_steps.
KNOWN_ALIASES = {
    "max_seq_len": "block_size", "seq_len": "block_size", "context_length": "block_size",
    "max_position_embeddings": "block_size", "n_positions": "block_size",
    "num_layers": "n_layer", "n_layers": "n_layer", "num_hidden_layers": "n_layer",
    "num_heads": "n_head", "n_heads": "n_head", "num_attention_heads": "n_head",
    "num_key_value_heads": "n_kv_head", "n_embd": "d_model", "hidden_size": "d_model",
    "intermediate_size": "d_ff", "lr": "learning_rate", "seed": "random_seed", "num_epochs": "epochs",
    "grad_clip": "max_grad_norm", "max_iters": "max_steps", "num_train_epochs": "epochs",
}


def unknown_key(key: str, field_names: Iterable[str]) -> Problem:
    """The Problem for a key that is no field of `field_names`, with the likeliest meant
    field (a known alias first, else the closest spelling)."""
    close = [KNOWN_ALIASES[key]] if key in KNOWN_ALIASES else difflib.get_close_matches(key, list(field_names),
                                                                                         n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return Problem(key, "(unknown key)", f"is not a TrainingConfig field{hint}")

"""TrainingConfig: every setting of a run, typed and validated in one place.

A config is built from a preset (`TrainingConfig.preset("smoke")`), a notebook form
(`from_form(**values)`), a JSON file (`load`), a dict (`from_dict`), or command-line
overrides (`parse_overrides(["learning_rate=3e-4"])`). Each is validated ONCE, when the
config is made (config_rules.check_config: it collects every problem and raises one
`ConfigError` naming each field, the value given and what is allowed); a made config is
frozen, so nothing downstream checks its fields again, and `replace()` checks only the
fields it changes (plus the cross-field rules). Nothing is coerced silently: a bool is not
an int, a string is not a number (the form and command-line paths parse strings
explicitly, config_parse.py, and say so when they cannot).

Presets live in presets.py, the rules in config_rules.py; both are re-exported here.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.training.config_parse import parse_text, read_form, read_overrides
from utils.training.config_rules import (
    AUTO,
    ConfigError,
    Problem,
    check_config,
    field_types,
    unknown_key,
)
from utils.training.io import atomic_write_text
from utils.training.presets import MODEL_SIZES, PRESET_CHOICE, PRESETS, preset_values
from utils.training.registries import MODEL_FAMILIES


@dataclass(frozen=True)
class TrainingConfig:
    # --- identity and data -------------------------------------------------------
    run_name: str = "run"  # folder name under WORKSPACE/runs/; letters, digits, . _ -
    preset: str = ""  # the preset this config started from ("" = none); figures label smoke/cpu runs
    data_source: str = "builtin"  # a name of registries.DATA_SOURCES
    data_path: str = ""  # file or folder for local/drive/upload
    hf_dataset: str = ""  # datasets.load_dataset name for data_source="hf", e.g. "wikitext"
    hf_config: str = ""  # its config, e.g. "wikitext-2-raw-v1"
    text_column: str = ""  # column holding the text; "" = detect
    tokenizer: str = "bpe"  # "bpe" (trained on the corpus) | "gpt2" (packaged files) | a hub name
    validation_split: float = 0.1  # share of documents held out for validation
    # --- model ---------------------------------------------------------------------
    model_family: str = "llama"  # a name of registries.MODEL_FAMILIES (transformers architectures)
    pretrained: str = ""  # hub name to start from pretrained weights (needs internet)
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    n_kv_head: int = 4  # key/value heads (grouped-query attention when < n_head)
    d_model: int = 256  # residual stream width
    d_ff: int = 0  # MLP hidden width; 0 = the family's default
    block_size: int = 256  # context length in tokens
    vocab_size: int = 4096  # BPE vocabulary to train; fixed tokenizers bring their own size
    dropout: float = 0.0  # dropout probability in attention and MLP
    # architecture options (docs/models.md): model_family="nanogpt" has them all; the
    # transformers families only tie_embeddings (config_rules.ARCH_OPTIONS)
    qk_norm: bool = False  # RMS-normalise q and k per head before the dot product
    relu2_mlp: bool = False  # MLP relu(x)^2, non-gated, d_ff = 4·d_model by default
    zero_init_proj: bool = False  # attention output and MLP down projections start at zero
    tie_embeddings: bool = True  # output head = token embedding; False = a separate head
    logit_softcap: float = 0.0  # c > 0: logits = c·tanh(logits / c); 0 = off
    value_embeds: bool = False  # extra embedding tables added to the values of the first/last layers
    unet_skips: bool = False  # first half's block outputs added to the second half's, learned weights
    # --- optimisation ----------------------------------------------------------------
    learning_rate: float = 1e-3  # peak learning rate after warmup
    min_lr_ratio: float = 0.1  # final lr as a share of the peak (cosine/linear)
    schedule: str = "cosine"  # a name of registries.SCHEDULES, after linear warmup
    warmup_ratio: float = 0.05  # share of max_steps spent warming up
    weight_decay: float = 0.1  # decoupled weight decay, lr-scaled (matrices only)
    optimizer: str = "adamw"  # a name of registries.OPTIMIZERS
    muon_lr: float = 0.02  # Muon's peak learning rate (learning_rate stays AdamW's), same schedule
    # Muon's Newton-Schulz dtype: auto (bf16 where the device multiplies bf16 natively: CUDA >= 8.0,
    # AVX-512-BF16/AMX CPUs; else fp32) | bf16 | fp32 | fp16 (CUDA only). engine/device.py
    muon_precision: str = "auto"
    muon_adjust_lr: str = "original"  # torch.optim.Muon's adjust_lr_fn: original | match_rms_adamw
    muon_weight_decay: float = "auto"  # type: ignore[assignment]  # Muon's decay; "auto" = weight_decay
    # Peak lr of the embeddings, the output head, norm gains and biases (everything but the
    # blocks' weight matrices), with either optimizer; "auto" = learning_rate. A Muon run's
    # AdamW part. The recipes raise it (untied embeddings and head learn faster at a higher lr).
    embedding_lr: float = "auto"  # type: ignore[assignment]
    max_grad_norm: float = 1.0  # clip the global gradient norm to this; 0 = no clipping
    # sequences per micro-step (one process; ranks split it, see rank_batch), or "auto": the
    # largest micro-batch that fits the device, measured when the run is prepared, with the
    # accumulation raised to keep the global batch (engine/batch_size.py; `base_batch_size`)
    batch_size: int = 32
    gradient_accumulation_steps: int = 1  # micro-steps per optimizer step, all ranks together
    use_amp: bool = True  # mixed precision on GPU; False forces fp32
    # --- budget: max_steps wins, then max_tokens, then epochs ------------------------
    epochs: float = 1.0  # passes over the training tokens
    max_steps: int = 0  # optimizer steps; 0 = derive from max_tokens or epochs
    max_tokens: int = 0  # training tokens; 0 = derive from epochs
    time_limit_s: float = 0.0  # stop cleanly with a checkpoint after this long; 0 = none
    # --- cadence (in optimizer steps) -------------------------------------------------
    log_interval: int = 20  # train metrics (one host sync per interval)
    eval_interval: int = 200  # validation loss, accuracy, bits per byte
    eval_batches: int = 20  # batches per evaluation
    checkpoint_interval: int = 500  # full-state checkpoint
    keep_checkpoints: int = 3  # newest checkpoints kept (the best is kept too)
    sample_interval: int = 0  # text samples from fixed prompts; 0 = at the end only
    early_stopping_patience: int = 0  # evaluations without val_loss improvement; 0 = off
    # --- numerics ------------------------------------------------------------------
    precision: str = "auto"  # a name of registries.PRECISIONS (auto: bf16 > fp16 > fp32 by device)
    compile: str = "auto"  # auto (on for CUDA capability >= 8.0) | on | off; true/false mean on/off
    deterministic: bool = False  # deterministic kernels (slower)
    random_seed: int = 42  # seeds model init, batches and dropout
    # --- tracking --------------------------------------------------------------------
    wandb_timeout_s: float = 15.0  # the bound of every wait on W&B (start, finish); seconds
    # --- limits ----------------------------------------------------------------------
    memory_limit_gb: float = 0.0  # refuse runs whose minimum training memory exceeds this (GiB); 0 = the device's

    def __post_init__(self) -> None:
        _normalise(self)
        problems = check_config(self)
        if problems:
            raise ConfigError(problems)

    # --- construction ----------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainingConfig:
        """`TrainingConfig.preset(name, **overrides)` calls this (see _PresetName)."""
        if name not in PRESETS:
            raise ConfigError([Problem("preset", name, f"must be one of {sorted(PRESETS)}")])
        return cls.from_dict({**preset_values(name), **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        """The config of `d` (field name -> value), validated once; unknown keys are
        reported together with whatever else is wrong in the known ones."""
        if not isinstance(d, dict):
            raise ConfigError([Problem("config", type(d).__name__, "must be a mapping of field names to values")])
        unknown = [unknown_key(k, FIELD_NAMES) for k in d if k not in FIELD_NAMES]
        return build_config(cls, {k: v for k, v in d.items() if k in FIELD_NAMES}, unknown)

    @classmethod
    def from_form(cls, preset: str = "", model_size: str = "", **values: Any) -> TrainingConfig:
        """Build from a notebook's #@param values. Empty strings and None keep the
        preset's value (so do the dropdowns' named defaults "preset's size", "preset's
        schedule", ...: PRESET_CHOICE); numeric strings are parsed (Colab string fields
        arrive as str). Validated once, every problem reported together."""
        if isinstance(model_size, str) and model_size.startswith(PRESET_CHOICE):
            model_size = ""
        if preset and preset not in PRESETS:
            raise ConfigError([Problem("preset", preset, f"must be one of {sorted(PRESETS)}")])
        base = preset_values(preset) if preset else {}
        problems: list[Problem] = []
        if model_size:
            if model_size not in MODEL_SIZES:
                problems.append(Problem("model_size", model_size, f"must be one of {sorted(MODEL_SIZES)}"))
            else:
                base.update(MODEL_SIZES[model_size])
        parsed, parse_problems = read_form(values, FIELD_TYPES)
        merged = {**base, **parsed}
        family = merged.get("model_family", FIELD_DEFAULTS["model_family"])
        if family in MODEL_FAMILIES and MODEL_FAMILIES.get(family).facts.get("gqa") is False \
                and "n_kv_head" not in parsed:
            merged["n_kv_head"] = merged.get("n_head", FIELD_DEFAULTS["n_head"])  # no grouped-query attention
        return build_config(cls, merged, problems + parse_problems)

    @classmethod
    def load(cls, path: str | Path) -> TrainingConfig:
        return cls.from_dict(read_config_file(path))

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with `changes`. This config is valid (it is frozen and was validated when
        made), so only the changed fields are checked, with the cross-field rules."""
        unknown = [unknown_key(k, FIELD_NAMES) for k in changes if k not in FIELD_NAMES]
        if unknown:
            raise ConfigError(unknown)
        new = copy.copy(self)
        for name, value in changes.items():
            object.__setattr__(new, name, value)
        _normalise(new)
        problems = check_config(new, only=changes)
        if problems:
            raise ConfigError(problems)
        return new

    # --- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> Path:
        """Write JSON to `path` (atomically); if `path` is a folder (existing, or named
        without a .json suffix) write `config_<run_name>_<UTC time>.json` inside it."""
        path = Path(path)
        if path.is_dir() or path.suffix.lower() != ".json":
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            path = path / f"config_{self.run_name}_{stamp}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.to_json() + "\n")
        return path

    @property
    def config_hash(self) -> str:
        """Stable 12-hex-digit id of the full config (see config_dict_hash)."""
        return config_dict_hash(self.to_dict())

    # --- comparing -------------------------------------------------------------------
    def diff(self, other: TrainingConfig) -> dict[str, tuple[Any, Any]]:
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in FIELD_NAMES if a[k] != b[k]}

    def resume_blockers(self, other: TrainingConfig) -> list[str]:
        """Fields that differ from `other` and change what training computes. A run
        may resume from a checkpoint written under `other` only if this is empty."""
        return [k for k in self.diff(other) if k not in RESUME_SAFE_FIELDS]

    # --- derived quantities ----------------------------------------------------------
    @property
    def effective_embedding_lr(self) -> float:
        """embedding_lr as the optimizer uses it: "auto" is learning_rate."""
        return self.learning_rate if self.embedding_lr == AUTO else self.embedding_lr

    @property
    def effective_muon_weight_decay(self) -> float:
        """muon_weight_decay as Muon uses it: "auto" is weight_decay."""
        return self.weight_decay if self.muon_weight_decay == AUTO else self.muon_weight_decay

    @property
    def base_batch_size(self) -> int:
        """batch_size; for batch_size="auto", the preset's (the field's default without one):
        the micro-batch a CPU run uses, and with gradient_accumulation_steps the global batch
        that the measured micro-batch keeps (engine/batch_size.py)."""
        if self.batch_size != AUTO:
            return self.batch_size
        return int(PRESETS.get(self.preset, {}).get("batch_size", FIELD_DEFAULTS["batch_size"]))

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step, all ranks together."""
        return self.base_batch_size * self.gradient_accumulation_steps

    @property
    def tokens_per_step(self) -> int:
        """Training tokens per optimizer step, all ranks together."""
        return self.global_batch * self.block_size

    def rank_batch(self, world_size: int) -> tuple[int, int]:
        """(sequences per micro-step, micro-steps per optimizer step) on each of
        `world_size` ranks, so that all ranks together take the global batch of
        batch_size * gradient_accumulation_steps sequences, as one process would.

        The accumulation is split first (nanoGPT); what it cannot absorb splits the
        micro-batch. A world size that does not divide the global batch is a ConfigError.
        batch_size="auto" splits base_batch_size (what a run uses until it is measured).
        """
        if world_size < 1:
            raise ConfigError([Problem("world_size", world_size, "must be >= 1")])
        accum, batch = self.gradient_accumulation_steps, self.base_batch_size
        shared = math.gcd(accum, world_size)  # ranks absorbed by the accumulation
        rest = world_size // shared  # ranks that must split each micro-batch
        if batch % rest:
            global_batch = batch * accum
            fits = [w for w in range(1, global_batch + 1) if global_batch % w == 0 and w <= 64]
            raise ConfigError([Problem(
                "gradient_accumulation_steps", accum,
                f"the global batch of batch_size * gradient_accumulation_steps = {batch} * {accum} = "
                f"{global_batch} sequences cannot be split evenly over a world size of {world_size}; use a world "
                f"size that divides it ({', '.join(map(str, fits))}) or change batch_size/gradient_accumulation_steps",
            )])
        return batch // rest, accum // shared

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def warmup_steps(self, max_steps: int) -> int:
        """Steps of linear warmup: warmup_ratio of the run's step budget."""
        return warmup_steps_for(self.warmup_ratio, max_steps)

    def resolve_max_steps(self, train_tokens: int | None) -> int:
        """The step budget: max_steps, else max_tokens, else epochs over the corpus's
        `train_tokens`. The one place that refuses a budget that cannot be known: epochs
        over a corpus of unknown size (None or 0: streaming, mode chunk) is a ConfigError
        naming max_steps."""
        if self.max_steps > 0:
            return self.max_steps
        if self.max_tokens <= 0 and not train_tokens:
            raise ConfigError([Problem("max_steps", self.max_steps, "the corpus size is unknown (streaming, mode "
                                       "chunk, or batches without a token count), so epochs cannot set the budget: "
                                       "set max_steps or max_tokens")])
        tokens = self.max_tokens if self.max_tokens > 0 else self.epochs * (train_tokens or 0)
        return max(1, math.ceil(tokens / self.tokens_per_step))


class _PresetName:
    """`TrainingConfig.preset("smoke")` builds a config from a preset, and `config.preset` is
    the field naming the preset a config started from. A non-data descriptor installed after
    the dataclass is built: an instance's own value (its __dict__) wins, the class gets the
    constructor."""

    def __get__(self, obj: Any, owner: type) -> Any:
        return owner.from_preset


TrainingConfig.preset = _PresetName()  # type: ignore[assignment]

FIELD_TYPES: dict[str, type] = field_types(TrainingConfig)  # resolves the string annotations
FIELD_NAMES = tuple(FIELD_TYPES)
FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainingConfig)}


def _normalise(cfg: TrainingConfig) -> None:
    """The one accepted legacy spelling: compile as a bool (configs and checkpoints from
    when it was one) becomes "on"/"off"."""
    if isinstance(cfg.compile, bool):
        object.__setattr__(cfg, "compile", "on" if cfg.compile else "off")


def build_config(cls: type[TrainingConfig], values: dict[str, Any], problems: list[Problem]) -> TrainingConfig:
    """`cls(**values)`, constructed and so validated once; `problems` found before (unknown
    keys, unparsable strings) are raised together with the construction's own, each field
    named once."""
    try:
        cfg = cls(**values)
    except ConfigError as e:
        named = {p.field for p in problems}
        raise ConfigError(problems + [p for p in e.problems if p.field not in named]) from None
    if problems:
        raise ConfigError(problems)
    return cfg


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The JSON object of a config file, unvalidated (the config made from it validates);
    ConfigError naming the file when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([Problem("config file", str(path), "does not exist or is not a file")])
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError([Problem("config file", str(path), "is nested too deeply to be a config (a config is "
                                   "one flat JSON object of field names and values)")]) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        why = ("holds a number of more than 4300 digits, which no field takes" if "integer string conversion"
               in str(e) else f"is not valid JSON: {e}")
        raise ConfigError([Problem("config file", str(path), why)]) from None


def config_dict_hash(d: dict) -> str:
    """The one hash of a config: sha256 of its sorted-key compact JSON, 12 hex digits. The
    experiment database hashes stored configs with it too, so a run has one hash everywhere."""
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def warmup_steps_for(warmup_ratio: float, max_steps: int) -> int:
    """The one rule for the warmup length (the scheduler and the plots both use it)."""
    return int(warmup_ratio * max_steps)


def parse_value(name: str, text: str) -> Any:
    """Parse a string from a form or the command line into field `name`'s type."""
    return parse_text(name, text, FIELD_TYPES[name])


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["learning_rate=3e-4", "n_layer=2"]` -> typed dict; every bad item is reported."""
    return read_overrides(items, FIELD_TYPES)


# Changing these between a checkpoint and its resume does not change what is trained.
RESUME_SAFE_FIELDS = frozenset(
    {
        "run_name",
        "preset",  # a label: which preset the config started from
        "log_interval",
        "eval_interval",
        "eval_batches",
        "checkpoint_interval",
        "keep_checkpoints",
        "sample_interval",
        "early_stopping_patience",
        "time_limit_s",
        "compile",
        "wandb_timeout_s",
        "memory_limit_gb",
        "data_path",  # the same corpus may move (local disk vs Drive); its hash is checked by the data cache
    }
)

"""TrainingConfig: every setting of a run, typed and validated in one place.

A config is built from a preset (`TrainingConfig.preset("smoke")`), a notebook form
(`from_form(**values)`), a JSON file (`load`), or command-line overrides
(`parse_overrides(["learning_rate=3e-4"])`). All of them go through the same
validation, which collects every problem and raises one `ConfigError` naming each
field, the value given and what is allowed. Nothing is coerced silently: a bool is
not an int, a string is not a number (the form and command-line paths parse strings
explicitly, and say so when they cannot).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

MODEL_FAMILIES = ("gpt2", "llama", "qwen2")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "muon")
COMPILE_MODES = ("auto", "on", "off")
DATA_SOURCES = ("builtin", "hf", "local", "drive", "upload", "synthetic")
# The one rule for names that become folder or file names (run_name, the HPO study name):
# matched whole (fullmatch: a trailing newline is not allowed, as `$` would let it be), so
# no separator, no leading dot ('..'), nothing a shell or a file system reads specially.
_PATH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
PATH_NAME_RULE = ("must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit "
                  "(it names a folder)")


def path_name_problem(field: str, value: Any) -> Problem | None:
    """None when `value` may name a folder; else the Problem naming `field` and the rule."""
    if isinstance(value, str) and _PATH_NAME.fullmatch(value):
        return None
    return Problem(field, value, PATH_NAME_RULE)


# A dropdown offers no blank choice, so "keep the preset's value" is a named first choice:
# "preset's size" (model_size), "preset's schedule", "preset's optimizer". from_form reads any
# value starting with PRESET_CHOICE as "not given".
PRESET_CHOICE = "preset's "
PRESET_SIZE = PRESET_CHOICE + "size"


@dataclass(frozen=True)
class TrainingConfig:
    # --- identity and data -------------------------------------------------------
    run_name: str = "run"  # folder name under WORKSPACE/runs/; letters, digits, . _ -
    preset: str = ""  # the preset this config started from ("" = none); figures label smoke/cpu runs
    data_source: str = "builtin"  # builtin | hf | local | drive | upload | synthetic
    data_path: str = ""  # file or folder for local/drive/upload
    hf_dataset: str = ""  # datasets.load_dataset name for data_source="hf", e.g. "wikitext"
    hf_config: str = ""  # its config, e.g. "wikitext-2-raw-v1"
    text_column: str = ""  # column holding the text; "" = detect
    tokenizer: str = "bpe"  # "bpe" (trained on the corpus) | "gpt2" (packaged files) | a hub name
    validation_split: float = 0.1  # share of documents held out for validation
    # --- model ---------------------------------------------------------------------
    model_family: str = "llama"  # gpt2 | llama | qwen2 (transformers architectures)
    pretrained: str = ""  # hub name to start from pretrained weights (needs internet)
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    n_kv_head: int = 4  # key/value heads (grouped-query attention when < n_head)
    d_model: int = 256  # residual stream width
    d_ff: int = 0  # MLP hidden width; 0 = the family's default
    block_size: int = 256  # context length in tokens
    vocab_size: int = 4096  # BPE vocabulary to train; fixed tokenizers bring their own size
    dropout: float = 0.0  # dropout probability in attention and MLP
    # --- optimisation ----------------------------------------------------------------
    learning_rate: float = 1e-3  # peak learning rate after warmup
    min_lr_ratio: float = 0.1  # final lr as a share of the peak (cosine/linear)
    schedule: str = "cosine"  # cosine | linear | constant, after linear warmup
    warmup_ratio: float = 0.05  # share of max_steps spent warming up
    weight_decay: float = 0.1  # decoupled weight decay, lr-scaled (matrices only)
    optimizer: str = "adamw"  # adamw | muon (Muon on the hidden matrices, AdamW on the rest)
    muon_lr: float = 0.02  # Muon's peak learning rate (learning_rate stays AdamW's), same schedule
    max_grad_norm: float = 1.0  # clip the global gradient norm to this; 0 = no clipping
    batch_size: int = 32  # sequences per micro-step (one process; ranks split it, see rank_batch)
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
    precision: str = "auto"  # auto (bf16 > fp16 > fp32 by device) | fp32 | bf16 | fp16
    compile: str = "auto"  # auto (on for CUDA capability >= 8.0) | on | off; true/false mean on/off
    deterministic: bool = False  # deterministic kernels (slower)
    random_seed: int = 42  # seeds model init, batches and dropout
    # --- tracking --------------------------------------------------------------------
    wandb_timeout_s: float = 15.0  # the bound of every wait on W&B (start, finish); seconds
    # --- limits ----------------------------------------------------------------------
    memory_limit_gb: float = 0.0  # refuse runs whose minimum training memory exceeds this (GiB); 0 = the device's

    def __post_init__(self) -> None:
        if isinstance(self.compile, bool):  # configs and checkpoints from when compile was a bool
            object.__setattr__(self, "compile", "on" if self.compile else "off")
        type_problems = _check_types(self)
        problems = type_problems + _check_values(self, skip={p.field for p in type_problems})
        if problems:
            raise ConfigError(problems)

    # --- construction ----------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainingConfig:
        """`TrainingConfig.preset(name, **overrides)` calls this (see _PresetName)."""
        if name not in PRESETS:
            raise ConfigError([Problem("preset", name, f"must be one of {sorted(PRESETS)}")])
        return cls.from_dict({**PRESETS[name], "preset": name, **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        if not isinstance(d, dict):
            raise ConfigError([Problem("config", type(d).__name__, "must be a mapping of field names to values")])
        unknown = [_unknown_key(k) for k in d if k not in FIELD_NAMES]
        if unknown:
            # Report unknown keys together with whatever else is wrong in the known ones.
            try:
                cls(**{k: v for k, v in d.items() if k in FIELD_NAMES})
            except ConfigError as e:
                unknown += e.problems
            raise ConfigError(unknown)
        return cls(**d)

    @classmethod
    def from_form(cls, preset: str = "", model_size: str = "", **values: Any) -> TrainingConfig:
        """Build from a notebook's #@param values. Empty strings and None keep the
        preset's value (so do the dropdowns' named defaults "preset's size", "preset's
        schedule", ...: PRESET_CHOICE); numeric strings are parsed (Colab string fields
        arrive as str)."""
        if isinstance(model_size, str) and model_size.startswith(PRESET_CHOICE):
            model_size = ""
        if preset and preset not in PRESETS:
            raise ConfigError([Problem("preset", preset, f"must be one of {sorted(PRESETS)}")])
        base = {**PRESETS[preset], "preset": preset} if preset else {}
        problems: list[Problem] = []
        if model_size:
            if model_size not in MODEL_SIZES:
                problems.append(Problem("model_size", model_size, f"must be one of {sorted(MODEL_SIZES)}"))
            else:
                base.update(MODEL_SIZES[model_size])
        given = {k: v for k, v in values.items()
                 if v is not None and v != "" and not (isinstance(v, str) and v.startswith(PRESET_CHOICE))}
        parsed: dict[str, Any] = {}
        for key, value in given.items():
            if key not in FIELD_NAMES:
                problems.append(_unknown_key(key))
                continue
            try:
                parsed[key] = parse_value(key, value) if isinstance(value, str) else value
            except ValueError as e:
                problems.append(Problem(key, value, str(e)))
        merged = {**base, **parsed}
        if merged.get("model_family") == "gpt2" and "n_kv_head" not in parsed:
            merged["n_kv_head"] = merged.get("n_head", FIELD_DEFAULTS["n_head"])  # GPT-2 has no GQA
        if problems:
            try:
                cls.from_dict(merged)
            except ConfigError as e:
                problems += [p for p in e.problems if p.field not in {q.field for q in problems}]
            raise ConfigError(problems)
        return cls.from_dict(merged)

    @classmethod
    def load(cls, path: str | Path) -> TrainingConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError([Problem("config file", str(path), "does not exist or is not a file")])
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except RecursionError:
            raise ConfigError([Problem("config file", str(path), "is nested too deeply to be a config (a config is "
                                       "one flat JSON object of field names and values)")]) from None
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
            why = ("holds a number of more than 4300 digits, which no field takes" if "integer string conversion"
                   in str(e) else f"is not valid JSON: {e}")
            raise ConfigError([Problem("config file", str(path), why)]) from None
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> TrainingConfig:
        return self.from_dict({**self.to_dict(), **changes})

    # --- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> Path:
        """Write JSON to `path`; if `path` is a folder (existing, or named without a
        .json suffix) write `config_<run_name>_<UTC time>.json` inside it."""
        path = Path(path)
        if path.is_dir() or path.suffix.lower() != ".json":
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            path = path / f"config_{self.run_name}_{stamp}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        tmp.replace(path)
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
    def tokens_per_step(self) -> int:
        """Training tokens per optimizer step, all ranks together."""
        return self.batch_size * self.block_size * self.gradient_accumulation_steps

    def rank_batch(self, world_size: int) -> tuple[int, int]:
        """(sequences per micro-step, micro-steps per optimizer step) on each of
        `world_size` ranks, so that all ranks together take the global batch of
        batch_size * gradient_accumulation_steps sequences, as one process would.

        The accumulation is split first (nanoGPT); what it cannot absorb splits the
        micro-batch. A world size that does not divide the global batch is a ConfigError.
        """
        if world_size < 1:
            raise ConfigError([Problem("world_size", world_size, "must be >= 1")])
        accum = self.gradient_accumulation_steps
        shared = math.gcd(accum, world_size)  # ranks absorbed by the accumulation
        rest = world_size // shared  # ranks that must split each micro-batch
        if self.batch_size % rest:
            global_batch = self.batch_size * accum
            fits = [w for w in range(1, global_batch + 1) if global_batch % w == 0 and w <= 64]
            raise ConfigError([Problem(
                "gradient_accumulation_steps", accum,
                f"the global batch of batch_size * gradient_accumulation_steps = {self.batch_size} * {accum} = "
                f"{global_batch} sequences cannot be split evenly over a world size of {world_size}; use a world "
                f"size that divides it ({', '.join(map(str, fits))}) or change batch_size/gradient_accumulation_steps",
            )])
        return self.batch_size // rest, accum // shared

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def warmup_steps(self, max_steps: int) -> int:
        """Steps of linear warmup: warmup_ratio of the run's step budget."""
        return warmup_steps_for(self.warmup_ratio, max_steps)

    def resolve_max_steps(self, train_tokens: int) -> int:
        """The step budget: max_steps, else max_tokens, else epochs over the corpus."""
        if self.max_steps > 0:
            return self.max_steps
        tokens = self.max_tokens if self.max_tokens > 0 else self.epochs * train_tokens
        return max(1, math.ceil(tokens / self.tokens_per_step))


def config_dict_hash(d: dict) -> str:
    """The one hash of a config: sha256 of its sorted-key compact JSON, 12 hex digits. The
    experiment database hashes stored configs with it too, so a run has one hash everywhere."""
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def warmup_steps_for(warmup_ratio: float, max_steps: int) -> int:
    """The one rule for the warmup length (the scheduler and the plots both use it)."""
    return int(warmup_ratio * max_steps)


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

PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on a laptop CPU: tests, CI and the notebooks' smoke parameters.
    "smoke": dict(
        run_name="smoke", n_layer=2, n_head=4, n_kv_head=2, d_model=64, block_size=64, vocab_size=512,
        batch_size=8, max_steps=30, learning_rate=3e-3, warmup_ratio=0.1, log_interval=5,
        eval_interval=10, eval_batches=2, checkpoint_interval=10, keep_checkpoints=2, sample_interval=0,
    ),
    # A few minutes on 2 CPU cores (make run): small enough to finish, big enough to learn.
    "cpu": dict(
        run_name="cpu", n_layer=4, n_head=4, n_kv_head=2, d_model=128, block_size=128, vocab_size=2048,
        batch_size=16, max_steps=600, learning_rate=2e-3, warmup_ratio=0.05, log_interval=10,
        eval_interval=100, eval_batches=10, checkpoint_interval=100, keep_checkpoints=3, sample_interval=300,
        optimizer="muon", muon_lr=0.02,  # measured winner here (bench/time_to_quality.py, README)
    ),
    # The seed's three training modes, sized for a Colab GPU (T4 and up).
    "fast": dict(
        run_name="fast", n_layer=4, n_head=4, n_kv_head=4, d_model=256, block_size=256, vocab_size=4096,
        batch_size=32, max_steps=2000, learning_rate=1e-3, log_interval=20, eval_interval=200,
        eval_batches=20, checkpoint_interval=500, sample_interval=500,
    ),
    "balanced": dict(
        run_name="balanced", n_layer=6, n_head=6, n_kv_head=2, d_model=384, block_size=512, vocab_size=8192,
        batch_size=32, max_steps=5000, learning_rate=6e-4, log_interval=25, eval_interval=250,
        eval_batches=40, checkpoint_interval=500, sample_interval=1000,
    ),
    "quality": dict(
        run_name="quality", n_layer=12, n_head=12, n_kv_head=4, d_model=768, block_size=1024,
        vocab_size=16384, batch_size=16, gradient_accumulation_steps=4, max_steps=10000,
        learning_rate=3e-4, log_interval=50, eval_interval=500, eval_batches=50, checkpoint_interval=1000,
        sample_interval=2000,
    ),
}

# The notebook form's "model size" choice: shapes only, everything else from the preset.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(n_layer=2, d_model=128, n_head=4, n_kv_head=2),
    "small": dict(n_layer=4, d_model=256, n_head=4, n_kv_head=2),
    "medium": dict(n_layer=6, d_model=384, n_head=6, n_kv_head=2),
    "base": dict(n_layer=12, d_model=768, n_head=12, n_kv_head=4),
}


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------
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


class _PresetName:
    """`TrainingConfig.preset("smoke")` builds a config from a preset, and `config.preset` is
    the field naming the preset a config started from. A non-data descriptor installed after
    the dataclass is built: an instance's own value (its __dict__) wins, the class gets the
    constructor."""

    def __get__(self, obj: Any, owner: type) -> Any:
        return owner.from_preset


TrainingConfig.preset = _PresetName()  # type: ignore[assignment]

FIELD_NAMES = tuple(f.name for f in fields(TrainingConfig))
FIELD_DEFAULTS = {f.name: f.default for f in fields(TrainingConfig)}
FIELD_TYPES: dict[str, type] = get_type_hints(TrainingConfig)  # resolves the string annotations

# (low, high, low_inclusive, high_inclusive) for numeric fields.
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "validation_split": (0.0, 0.5, False, True),
    "n_layer": (1, 256, True, True),
    "n_head": (1, 256, True, True),
    "n_kv_head": (1, 256, True, True),
    "d_model": (8, 65536, True, True),
    "d_ff": (0, 262144, True, True),
    "block_size": (8, 131072, True, True),
    "vocab_size": (260, 1_000_000, True, True),  # 256 bytes + special tokens
    "dropout": (0.0, 1.0, True, False),
    "learning_rate": (0.0, 1.0, False, True),
    "muon_lr": (0.0, 1.0, False, True),
    "min_lr_ratio": (0.0, 1.0, True, True),
    "warmup_ratio": (0.0, 1.0, True, False),
    "weight_decay": (0.0, 1.0, True, True),
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
_CHOICES = {
    "model_family": MODEL_FAMILIES,
    "schedule": SCHEDULES,
    "precision": PRECISIONS,
    "data_source": DATA_SOURCES,
    "optimizer": OPTIMIZERS,
    "compile": COMPILE_MODES,
}


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


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range (10**400 from a JSON file)
        return False


def _check_types(cfg: TrainingConfig) -> list[Problem]:
    problems = []
    for name in FIELD_NAMES:
        kind, value = FIELD_TYPES[name], getattr(cfg, name)
        if not type_matches(value, kind):
            problems.append(Problem(name, value, f"must be {kind.__name__}, got {type(value).__name__}"))
        elif kind is float and not _finite(value):
            problems.append(Problem(name, value, "must be a finite number (NaN and infinity are not allowed)"))
    return problems


def _check_values(cfg: TrainingConfig, skip: set[str]) -> list[Problem]:
    """Range, choice and cross-field rules. Fields in `skip` already failed their type
    check; rules that read them are skipped so one mistake is reported once."""
    problems = []
    for name, (lo, hi, lo_inc, hi_inc) in _RANGES.items():
        if name in skip:
            continue
        v = getattr(cfg, name)
        if (v < lo if lo_inc else v <= lo) or (v > hi if hi_inc else v >= hi):
            allowed = f"{'[' if lo_inc else '('}{lo}, {hi}{']' if hi_inc else ')'}"
            problems.append(Problem(name, v, f"must be in {allowed}"))
    for name, choices in _CHOICES.items():
        if name not in skip and getattr(cfg, name) not in choices:
            problems.append(Problem(name, getattr(cfg, name), f"must be one of {list(choices)}"))
    if skip & {"run_name", "tokenizer", "n_head", "n_kv_head", "d_model", "model_family"}:
        return problems  # the cross-field rules below need these fields well typed
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
    if cfg.model_family == "gpt2" and cfg.n_kv_head != cfg.n_head:
        problems.append(Problem("n_kv_head", cfg.n_kv_head,
                                f"must equal n_head ({cfg.n_head}) for gpt2, which has no grouped-query attention"))
    if cfg.model_family in ("llama", "qwen2") and cfg.n_head >= 1 and (cfg.d_model // cfg.n_head) % 2:
        problems.append(Problem("d_model", cfg.d_model,
                                f"d_model / n_head must be even for rotary embeddings ({cfg.model_family})"))
    if cfg.data_source == "hf" and not cfg.hf_dataset:
        problems.append(Problem("hf_dataset", cfg.hf_dataset, "is required when data_source is 'hf'"))
    if cfg.data_source in ("local", "drive") and not cfg.data_path:
        problems.append(Problem("data_path", cfg.data_path, f"is required when data_source is {cfg.data_source!r}"))
    return problems


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


def _unknown_key(key: str) -> Problem:
    close = [KNOWN_ALIASES[key]] if key in KNOWN_ALIASES else difflib.get_close_matches(key, FIELD_NAMES, n=1,
                                                                                         cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return Problem(key, "(unknown key)", f"is not a TrainingConfig field{hint}")


_LEGACY_COMPILE = {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}


def parse_value(name: str, text: str) -> Any:
    """Parse a string from a form or the command line into the field's type."""
    kind = FIELD_TYPES[name]
    s = text.strip()
    if name == "compile" and s.lower() in _LEGACY_COMPILE:  # compile=true from when it was a bool
        return _LEGACY_COMPILE[s.lower()]
    if kind is bool:
        if s.lower() in ("true", "1", "yes", "on"):
            return True
        if s.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"must be true or false, got {text!r}")
    if kind is int:
        try:
            f = float(s)
        except ValueError:
            raise ValueError(f"must be an integer, got {text!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ValueError(f"must be an integer, got {text!r}")
        return int(f)
    if kind is float:
        try:
            return float(s)
        except ValueError:
            raise ValueError(f"must be a number, got {text!r}") from None
    return s


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["learning_rate=3e-4", "n_layer=2"]` -> typed dict; every bad item is reported."""
    out: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            problems.append(Problem(item, "(no '=')", "overrides are written key=value"))
        elif key not in FIELD_NAMES:
            problems.append(_unknown_key(key))
        else:
            try:
                out[key] = parse_value(key, value)
            except ValueError as e:
                problems.append(Problem(key, value, str(e)))
    if problems:
        raise ConfigError(problems)
    return out

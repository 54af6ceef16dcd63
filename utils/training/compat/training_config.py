"""The seed notebook's TrainingConfig (utils.training.training_config) over ours.

`TrainingConfig` here IS our TrainingConfig (a subclass: the Trainer, the session, the
database and the CLI take it as is) that also accepts the seed's field names and behaves as
the seed's class does where its users can tell:

- construction takes invalid values without raising (the seed's dataclass did); an unknown
  key still raises ConfigError at once, as the seed's dataclass raised TypeError;
- `validate()` raises one ValueError (a ConfigError) whose message starts
  "Configuration validation failed:" with one "  - <problem>" line per problem, in the
  seed's wording for the seed's rules and ours for the rest;
- a run refuses an invalid config: the Trainer and TrainingSession check it on entry;
- defaults are the seed's (SEED_DEFAULTS: GPT-2 small, lr 5e-5, batch 4, 10 epochs) for
  the fields the seed has, ours for the others;
- each seed name is mapped to our field (SEED_FIELD_MAP) or kept as metadata
  (SEED_METADATA: carried in to_dict(), saved and loaded, never read by training);
  `seed_fields` says which became what.

    cfg = TrainingConfig(num_layers=2, num_heads=4, max_seq_len=64, notes="baseline")
    cfg.validate(); path = cfg.save("configs/")         # configs/config_YYYYMMDD_HHMMSS.json
    cfg2 = TrainingConfig.load(path); print_config_diff(cfg, cfg2)
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from utils.training import config as _config
from utils.training.config import FIELD_DEFAULTS, FIELD_NAMES, read_config_file
from utils.training.config_rules import ConfigError, Problem, check_config, check_types, unknown_key
from utils.training.presets import PRESETS, preset_values

# Seed name -> our field, where the names differ.
SEED_FIELD_MAP = {"num_layers": "n_layer", "num_heads": "n_head", "max_seq_len": "block_size"}
# The seed's defaults, under our names. n_kv_head follows n_head (the seed's models had no
# grouped-query attention); its vocab_size 50257 is GPT-2's, so its tokenizer is GPT-2's.
SEED_DEFAULTS: dict[str, Any] = {
    "random_seed": 42, "deterministic": False, "learning_rate": 5e-5, "batch_size": 4, "epochs": 10,
    "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0, "use_amp": True,
    "gradient_accumulation_steps": 1, "early_stopping_patience": 5, "validation_split": 0.1,
    "vocab_size": 50257, "tokenizer": "gpt2", "block_size": 128, "d_model": 768, "n_layer": 12, "n_head": 12,
    "n_kv_head": 12, "d_ff": 3072, "dropout": 0.1,
}
# Seed fields with no counterpart in our training: kept as metadata, with the seed's defaults
# (checkpoint_dir excepted: ours go to the workspace, so None says "not set").
SEED_METADATA: dict[str, Any] = {
    "model_name": "custom-transformer", "model_type": "gpt", "task_name": "lm_tiny", "eval_dataset_id": None,
    "dataset_name": "wikitext-103-v1", "dataset_split": "train", "dataset_subset": None,
    "max_train_samples": None, "max_val_samples": None, "checkpoint_dir": None, "save_every_n_epochs": 5,
    "keep_best_only": False, "wandb_project": "transformer-builder-training", "wandb_entity": None,
    "notes": "", "created_at": None, "config_version": "1.0",
}
COMPARE_SKIP = ("created_at", "run_name")  # differ between runs by design
VALIDATION_HEADER = "Configuration validation failed:"
NOT_JSON = "is not valid JSON"  # config.read_config_file's words for a file that does not parse


class SeedValidationError(ConfigError):
    """Our ConfigError (problems, fields) with the seed's message layout."""

    def __init__(self, problems: list[Problem], lines: list[str]):
        super().__init__(problems)
        self.args = (VALIDATION_HEADER + "\n" + "\n".join(f"  - {line}" for line in lines),)

    def __str__(self) -> str:
        return self.args[0]


def _seed_rules(cfg: TrainingConfig) -> dict[str, str]:
    """{our field: the seed's message} for each of the seed's validate() rules that fails;
    a field of the wrong type is left to our type check."""
    bad_type = {p.field for p in check_types(cfg)}
    rules = [
        ("learning_rate", lambda v: v <= 0, "learning_rate must be positive"),
        ("batch_size", lambda v: v < 1, "batch_size must be >= 1"),
        ("epochs", lambda v: v < 1, "epochs must be >= 1"),
        ("warmup_ratio", lambda v: not 0 <= v <= 1, "warmup_ratio must be in [0, 1]"),
        ("validation_split", lambda v: not 0 <= v <= 0.5, "validation_split must be in [0, 0.5]"),
        ("vocab_size", lambda v: v < 1, "vocab_size must be >= 1"),
        ("block_size", lambda v: v < 1, "max_seq_len must be >= 1"),
    ]
    failed = {name: msg for name, bad, msg in rules if name not in bad_type and bad(getattr(cfg, name))}
    if not {"d_model", "n_head"} & bad_type and cfg.n_head != 0 and cfg.d_model % cfg.n_head:
        failed["d_model"] = f"d_model ({cfg.d_model}) must be divisible by num_heads ({cfg.n_head})"
    return failed


class TrainingConfig(_config.TrainingConfig):
    """Our TrainingConfig, also built from the seed's field names (module docstring)."""

    def __init__(self, **values: Any):
        ours: dict[str, Any] = {}
        meta = dict(SEED_METADATA)
        meta["created_at"] = datetime.now().isoformat()
        mapped: dict[str, str] = {}
        problems: list[Problem] = []
        for key, value in values.items():
            if key in SEED_FIELD_MAP:
                target = SEED_FIELD_MAP[key]
                if target in values and values[target] != value:
                    problems.append(Problem(key, value, f"is the seed's name for {target}, which is given as "
                                                        f"{values[target]!r}; give one of them"))
                ours[target] = value
                mapped[key] = target
            elif key in SEED_METADATA:
                meta[key] = value
                mapped[key] = "metadata"
            elif key == "run_name" and value is None:
                mapped[key] = "run_name (None: the default)"  # the seed's "auto-generated"
            elif key in FIELD_NAMES:
                ours[key] = value
            else:
                problems.append(unknown_key(key, FIELD_NAMES))
        if "n_head" in ours and "n_kv_head" not in ours:
            ours["n_kv_head"] = ours["n_head"]
        super().__init__(**{**SEED_DEFAULTS, **ours})
        object.__setattr__(self, "metadata", meta)
        object.__setattr__(self, "seed_fields", mapped)
        if problems:  # an unknown or doubly given name: said at once, with the values' problems
            named = {p.field for p in problems}
            raise ConfigError(problems + [p for p in check_config(self) if p.field not in named])

    def __post_init__(self) -> None:
        """Normalised but not validated: validate() and the run's entry check do that."""
        _config._normalise(self)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found normally: the seed's aliases and metadata.
        if name in SEED_FIELD_MAP:
            return getattr(self, SEED_FIELD_MAP[name])
        meta = self.__dict__.get("metadata")
        if meta is not None and name in meta:
            return meta[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # -- construction and files -------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainingConfig:
        """A preset is ours: the fields it leaves unset take our defaults, not the seed's."""
        if name not in PRESETS:
            return super().from_preset(name)  # our ConfigError naming the presets
        base = {**FIELD_DEFAULTS, **preset_values(name)}
        for seed, ours in SEED_FIELD_MAP.items():  # a seed name given wins over the preset's value
            if seed in overrides:
                base.pop(ours)
        if {"n_head", "num_heads"} & set(overrides) and "n_kv_head" not in overrides:
            base.pop("n_kv_head")
        return cls.from_dict({**base, **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        if not isinstance(d, dict):
            raise ConfigError([Problem("config", type(d).__name__, "must be a mapping of field names to values")])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainingConfig:
        """A config saved by the seed or by this class. A missing file is FileNotFoundError, a
        file that is not JSON a ValueError saying "Invalid JSON"; a JSON document no config
        can be (nested too deeply, a number of thousands of digits) the ConfigError the
        command line gives."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Configuration file not found: {path} (expected a JSON file written by "
                                    f"TrainingConfig.save())")
        try:
            d = read_config_file(path)
        except ConfigError as e:
            why = e.problems[0].message if e.problems else ""
            if why.startswith(NOT_JSON):
                detail = why[len(NOT_JSON):].lstrip(": ")
                raise ConfigError([Problem("config file", str(path), f"Invalid JSON ({detail})")]) from None
            raise
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> TrainingConfig:
        d = self.to_dict()
        for seed, ours in SEED_FIELD_MAP.items():  # a change under one name drops the other
            if ours in changes:
                d.pop(seed, None)
            elif seed in changes:
                d.pop(ours, None)
        return self.from_dict({**d, **changes})

    def to_dict(self) -> dict[str, Any]:
        """Our fields, the seed's names of the mapped ones, and the metadata: every key the
        seed's to_dict() had (so its readers find them), and from_dict reads it back."""
        d = super().to_dict()
        d.update({seed: d[ours] for seed, ours in SEED_FIELD_MAP.items()})
        d.update(self.metadata)
        return d

    def save(self, path: str | Path | None = None) -> str:
        """Write JSON; None or a folder gives config_YYYYMMDD_HHMMSS.json (in the current
        folder, or that one); parent folders are created. Returns the path as a string."""
        target = Path(path) if path is not None else Path.cwd()
        if path is None or target.is_dir() or target.suffix.lower() != ".json":
            target = target / f"config_{time.strftime('%Y%m%d_%H%M%S')}.json"
        return str(super().save(target))

    # -- checks -------------------------------------------------------------------------
    def validate(self) -> bool:
        """True, or one SeedValidationError (a ValueError and our ConfigError) listing every
        problem: the seed's rules in its wording, then our other rules (our ranges are
        tighter in places, e.g. vocab_size >= 260, block_size >= 8) in ours."""
        seed = _seed_rules(self)
        ours = [p for p in check_config(self) if p.field not in seed]
        if not seed and not ours:
            return True
        problems = [Problem(field, getattr(self, field), msg) for field, msg in seed.items()] + ours
        raise SeedValidationError(problems, list(seed.values()) + [str(p) for p in ours])

    def describe_seed_fields(self) -> str:
        """One line per seed name given: which field of ours it set, or that it is metadata."""
        if not self.seed_fields:
            return "no seed field names given"
        return "\n".join(f"{k} -> {v}" for k, v in self.seed_fields.items())


def _as_dict(cfg: Any) -> dict[str, Any]:
    """The seed's view: seed names for mapped fields (ours dropped), no duplicates."""
    if isinstance(cfg, dict):
        d = dict(cfg)
    elif isinstance(cfg, TrainingConfig):
        d = cfg.to_dict()
    elif isinstance(cfg, _config.TrainingConfig):
        d = cfg.to_dict()
        d.update({seed: d[ours] for seed, ours in SEED_FIELD_MAP.items()})
    else:
        raise TypeError(f"compare_configs takes TrainingConfig objects or dicts, got {type(cfg).__name__}")
    for seed, ours in SEED_FIELD_MAP.items():
        if seed in d:
            d.pop(ours, None)
    return d


def compare_configs(config1: Any, config2: Any) -> dict[str, dict[str, Any]]:
    """{'changed': {k: (v1, v2)}, 'added': {k: v2}, 'removed': {k: v1}}, skipping created_at
    and run_name; mapped fields under the seed's names."""
    a, b = _as_dict(config1), _as_dict(config2)
    for k in COMPARE_SKIP:
        a.pop(k, None)
        b.pop(k, None)
    return {"changed": {k: (a[k], b[k]) for k in a if k in b and a[k] != b[k]},
            "added": {k: b[k] for k in b if k not in a},
            "removed": {k: a[k] for k in a if k not in b}}


def print_config_diff(config1: Any, config2: Any) -> None:
    diff = compare_configs(config1, config2)
    if not any(diff.values()):
        print("configurations are identical (created_at and run_name not compared)")
        return
    for k, (v1, v2) in sorted(diff["changed"].items()):
        print(f"  {k}: {v1!r} -> {v2!r}")
    for k, v in sorted(diff["added"].items()):
        print(f"+ {k}: {v!r}")
    for k, v in sorted(diff["removed"].items()):
        print(f"- {k}: {v!r}")


__all__ = ["TrainingConfig", "compare_configs", "print_config_diff", "ConfigError", "SeedValidationError",
           "SEED_FIELD_MAP", "SEED_DEFAULTS", "SEED_METADATA"]

"""The seed notebook's TrainingConfig API over ours (utils.training.config).

`TrainingConfig` here IS our TrainingConfig (a subclass: the Trainer, the database and the
CLI take it as is, validated on construction like ours) that also accepts the seed's
field names. Each seed name is either mapped to our field (SEED_FIELD_MAP, plus the names
both share) or kept as metadata (SEED_METADATA: carried in to_dict(), saved and loaded,
never read by training); `seed_fields` says which became what.

    cfg = TrainingConfig(num_layers=2, num_heads=4, max_seq_len=64, notes="baseline")
    cfg.validate(); path = cfg.save("configs/")         # configs/config_YYYYMMDD_HHMMSS.json
    cfg2 = TrainingConfig.load(path); print_config_diff(cfg, cfg2)
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from utils.training import config as _config
from utils.training.config import FIELD_NAMES
from utils.training.config_rules import ConfigError, Problem, check_config, unknown_key

# Seed name -> our field, where the names differ.
SEED_FIELD_MAP = {"num_layers": "n_layer", "num_heads": "n_head", "max_seq_len": "block_size"}
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
        if "num_heads" in values and "n_kv_head" not in values:
            ours["n_kv_head"] = ours["n_head"]  # the seed's models had no grouped-query attention
        if problems:
            try:
                super().__init__(**ours)
            except ConfigError as e:
                problems += e.problems
            raise ConfigError(problems)
        super().__init__(**ours)
        object.__setattr__(self, "metadata", meta)
        object.__setattr__(self, "seed_fields", mapped)

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
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        if not isinstance(d, dict):
            raise ConfigError([Problem("config", type(d).__name__, "must be a mapping of field names to values")])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainingConfig:
        """A config saved by the seed or by this class. A missing file is FileNotFoundError."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Configuration file not found: {path} (expected a JSON file written by "
                                    f"TrainingConfig.save())")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError([Problem("config file", str(path), f"is not valid JSON: {e}")]) from e
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
        """True, or ConfigError (a ValueError) listing every problem. Construction already ran
        these checks; this re-runs them for the seed's habit of calling validate()."""
        problems = check_config(self)
        if problems:
            raise ConfigError(problems)
        return True

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


__all__ = ["TrainingConfig", "compare_configs", "print_config_diff", "ConfigError", "SEED_FIELD_MAP",
           "SEED_METADATA"]

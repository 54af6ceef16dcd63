"""compat/training_config.py: the seed notebook's TrainingConfig as its users meet it
(issue 22 section 3), on top of our validated TrainingConfig."""

from __future__ import annotations

import json

import pytest

from utils.training import config as ours
from utils.training.compat.training_config import SEED_DEFAULTS, TrainingConfig
from utils.training.config_rules import ConfigError


def test_invalid_values_construct_and_validate_lists_each_in_the_seeds_words():
    cfg = TrainingConfig(learning_rate=-1.0, batch_size=0, epochs=0, warmup_ratio=1.5, validation_split=0.7,
                         vocab_size=0, max_seq_len=0, d_model=768, num_heads=5)  # no raise: the seed's dataclass
    with pytest.raises(ValueError) as err:
        cfg.validate()
    lines = str(err.value).splitlines()
    assert lines[0] == "Configuration validation failed:"
    for problem in ("learning_rate must be positive", "batch_size must be >= 1", "epochs must be >= 1",
                    "warmup_ratio must be in [0, 1]", "validation_split must be in [0, 0.5]",
                    "vocab_size must be >= 1", "max_seq_len must be >= 1",
                    "d_model (768) must be divisible by num_heads (5)"):
        assert f"  - {problem}" in lines
    assert all(line.startswith("  - ") for line in lines[1:])
    assert len(lines) == len(set(lines))  # one line per problem: a seed rule is not repeated in our words
    assert isinstance(err.value, ConfigError) and "learning_rate" in err.value.fields


def test_our_other_rules_are_listed_in_the_same_error():
    cfg = TrainingConfig(vocab_size=100, schedule="sawtooth")  # the seed allows vocab 100; we need >= 260
    with pytest.raises(ValueError, match=r"(?s)^Configuration validation failed:\n  - vocab_size = 100: must be in"):
        cfg.validate()
    with pytest.raises(ValueError, match="schedule = 'sawtooth'"):
        cfg.validate()
    assert TrainingConfig().validate() is True


def test_a_run_refuses_an_invalid_seed_config_with_our_config_error(tmp_path):
    from utils.training.engine.trainer import Trainer
    from utils.training.session import TrainingSession

    bad = TrainingConfig(learning_rate=-1.0)
    with pytest.raises(ConfigError, match=r"invalid TrainingConfig .*\n  - learning_rate = -1.0"):
        TrainingSession(bad, tmp_path / "ws")
    assert not (tmp_path / "ws").exists()  # refused before the workspace is made
    with pytest.raises(ConfigError, match="learning_rate"):
        Trainer(bad, model=None, train_batches=None, run_dir=tmp_path / "run")


def test_an_unknown_key_still_raises_at_construction():
    with pytest.raises(ConfigError, match="did you mean 'block_size'") as err:
        TrainingConfig(block_sise=64, batch_size=0)
    assert {"block_sise", "batch_size"} <= set(err.value.fields)


def test_defaults_are_the_seeds():
    cfg = TrainingConfig()
    assert (cfg.learning_rate, cfg.batch_size, cfg.epochs, cfg.vocab_size) == (5e-5, 4, 10, 50257)
    assert (cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.n_kv_head, cfg.max_seq_len) == (12, 768, 12, 12, 128)
    assert cfg.tokenizer == "gpt2"  # the seed's 50257 is GPT-2's vocabulary
    assert isinstance(cfg, ours.TrainingConfig) and ours.TrainingConfig().learning_rate != 5e-5  # ours keep theirs
    assert set(SEED_DEFAULTS) <= set(ours.FIELD_NAMES)


def test_load_of_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("learning_rate: 5e-5\n")
    with pytest.raises(ValueError, match="Invalid JSON") as err:
        TrainingConfig.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"random_seed": ' + "7" * 5001 + "}"])
def test_load_of_a_hostile_json_gives_the_command_lines_error(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as seed_err:
        TrainingConfig.load(path)
    with pytest.raises(ConfigError) as our_err:
        ours.read_config_file(path)
    assert str(seed_err.value) == str(our_err.value)
    assert "nested too deeply" in str(seed_err.value) or "4300 digits" in str(seed_err.value)


def test_replace_and_round_trip_keep_an_invalid_value_for_validate(tmp_path):
    cfg = TrainingConfig(num_layers=2).replace(batch_size=0)
    assert cfg.batch_size == 0 and cfg.num_layers == 2
    loaded = TrainingConfig.load(cfg.save(tmp_path / "c.json"))
    assert loaded.batch_size == 0
    with pytest.raises(ValueError, match="  - batch_size must be >= 1"):
        loaded.validate()
    assert json.loads((tmp_path / "c.json").read_text())["max_seq_len"] == 128


def test_a_preset_on_the_seed_class_is_our_preset():
    seed = TrainingConfig.preset("smoke", num_layers=3)
    base = ours.TrainingConfig.preset("smoke", n_layer=3)
    assert isinstance(seed, TrainingConfig) and seed.n_layer == 3
    assert {k: v for k, v in seed.to_dict().items() if k in ours.FIELD_NAMES} == base.to_dict()
    with pytest.raises(ConfigError, match="preset"):
        TrainingConfig.preset("no-such-preset")

"""TrainingConfig: validation names every bad field, presets, forms, files, hashing, resume rules."""

from __future__ import annotations

import json
import math

import pytest

from utils.training.config import FIELD_NAMES, RESUME_SAFE_FIELDS, TrainingConfig, parse_overrides
from utils.training.config_rules import ConfigError
from utils.training.presets import PRESETS

# (overrides on top of the smoke preset, the field the error must name)
BAD_INPUTS = [
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": 2.0}, "learning_rate"),
    ({"learning_rate": "3e-4"}, "learning_rate"),
    ({"learning_rate": True}, "learning_rate"),
    ({"learning_rate": None}, "learning_rate"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -4}, "batch_size"),
    ({"batch_size": 8.0}, "batch_size"),
    ({"batch_size": "8"}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"epochs": 0.0}, "epochs"),
    ({"epochs": float("nan")}, "epochs"),
    ({"epochs": -1.0}, "epochs"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"),
    ({"warmup_ratio": -0.1}, "warmup_ratio"),
    ({"warmup_ratio": float("-inf")}, "warmup_ratio"),
    ({"weight_decay": -0.01}, "weight_decay"),
    ({"weight_decay": 5.0}, "weight_decay"),
    ({"max_grad_norm": -1.0}, "max_grad_norm"),
    ({"max_grad_norm": float("nan")}, "max_grad_norm"),
    ({"use_amp": 1}, "use_amp"),
    ({"use_amp": "yes"}, "use_amp"),
    ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps"),
    ({"deterministic": "false"}, "deterministic"),
    ({"run_name": ""}, "run_name"),
    ({"run_name": "../escape"}, "run_name"),
    ({"run_name": "a b"}, "run_name"),
    ({"run_name": "abc\n"}, "run_name"),  # `$` would let a trailing newline through
    ({"run_name": ".."}, "run_name"),
    ({"run_name": 7}, "run_name"),
    ({"random_seed": -1}, "random_seed"),
    ({"random_seed": 2**40}, "random_seed"),
    ({"random_seed": 1.5}, "random_seed"),
    ({"early_stopping_patience": -2}, "early_stopping_patience"),
    ({"validation_split": 0.0}, "validation_split"),
    ({"validation_split": 0.9}, "validation_split"),
    ({"model_family": "mamba"}, "model_family"),
    ({"model_family": "GPT2"}, "model_family"),
    ({"n_layer": 0}, "n_layer"),
    ({"n_layer": True}, "n_layer"),
    ({"n_head": 0}, "n_head"),
    ({"n_head": 3}, "d_model"),  # 64 is not divisible by 3
    ({"n_kv_head": 3}, "n_head"),  # 4 heads not divisible by 3 kv heads
    ({"d_model": 66}, "d_model"),
    ({"d_model": 4}, "d_model"),
    ({"d_ff": -1}, "d_ff"),
    ({"block_size": 4}, "block_size"),
    ({"block_size": 64.5}, "block_size"),
    ({"vocab_size": 100}, "vocab_size"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"max_steps": -1}, "max_steps"),
    ({"max_tokens": -5}, "max_tokens"),
    ({"time_limit_s": -1.0}, "time_limit_s"),
    ({"eval_interval": 0}, "eval_interval"),
    ({"eval_batches": 0}, "eval_batches"),
    ({"log_interval": 0}, "log_interval"),
    ({"checkpoint_interval": 0}, "checkpoint_interval"),
    ({"keep_checkpoints": 0}, "keep_checkpoints"),
    ({"sample_interval": -1}, "sample_interval"),
    ({"compile": "true"}, "compile"),  # a string must be auto/on/off; only the JSON booleans are legacy
    ({"compile": 1}, "compile"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"optimizer": "Muon"}, "optimizer"),
    ({"muon_lr": 0.0}, "muon_lr"),
    ({"muon_lr": float("nan")}, "muon_lr"),
    ({"precision": "fp8"}, "precision"),
    ({"precision": "BF16"}, "precision"),
    ({"schedule": "step"}, "schedule"),
    ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ({"tokenizer": " "}, "tokenizer"),
    ({"data_source": "s3"}, "data_source"),
    ({"data_source": "hf"}, "hf_dataset"),
    ({"data_source": "local"}, "data_path"),
    ({"model_family": "gpt2"}, "n_kv_head"),  # smoke uses 2 kv heads; GPT-2 has no GQA
    ({"d_model": 60, "n_head": 4}, "d_model"),  # head_dim 15 is odd: no rotary
    ({"lerning_rate": 1e-3}, "lerning_rate"),
    ({"batchsize": 8}, "batchsize"),
    ({"nonsense": 1}, "nonsense"),
]


def test_there_are_at_least_fifty_bad_inputs():
    assert len(BAD_INPUTS) >= 50


@pytest.mark.parametrize("overrides,field", BAD_INPUTS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_INPUTS)])
def test_bad_input_is_rejected_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        TrainingConfig.preset("smoke", **overrides)
    assert field in info.value.fields
    assert field in str(info.value)


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict(
            {"learning_rate": math.nan, "lerning_rate": 1, "n_layer": True, "d_model": 66, "batch_size": "8"}
        )
    assert set(info.value.fields) == {"learning_rate", "lerning_rate", "n_layer", "d_model", "batch_size"}
    assert "did you mean 'learning_rate'" in str(info.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_named(name):
    cfg = TrainingConfig.preset(name)
    assert cfg.run_name == name
    assert cfg.d_model % cfg.n_head == 0


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="smoke"):
        TrainingConfig.preset("turbo")


def test_round_trip_dict_json_and_file(tmp_path):
    cfg = TrainingConfig.preset("smoke", learning_rate=1e-3)
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg
    path = cfg.save(tmp_path / "sub" / "c.json")
    assert path == tmp_path / "sub" / "c.json"
    assert TrainingConfig.load(path) == cfg


def test_save_into_a_folder_writes_a_timestamped_file(tmp_path):
    cfg = TrainingConfig.preset("smoke")
    path = cfg.save(tmp_path / "configs")
    assert path.parent == tmp_path / "configs"
    assert path.name.startswith("config_smoke_") and path.suffix == ".json"
    assert TrainingConfig.load(path) == cfg


def test_load_names_the_file_when_broken(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        TrainingConfig.load(bad)
    with pytest.raises(ConfigError, match="missing.json"):
        TrainingConfig.load(tmp_path / "missing.json")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"learning_rat": 1e-3}))
    with pytest.raises(ConfigError, match="learning_rat"):
        TrainingConfig.load(unknown)


def test_hash_is_stable_and_sensitive():
    a = TrainingConfig.preset("smoke")
    assert a.config_hash == TrainingConfig.preset("smoke").config_hash
    assert a.config_hash != a.replace(learning_rate=1e-4).config_hash
    assert len(a.config_hash) == 12


def test_diff_and_resume_blockers():
    a = TrainingConfig.preset("smoke")
    b = a.replace(learning_rate=1e-4, log_interval=1, n_layer=3)
    assert a.diff(b) == {"learning_rate": (3e-3, 1e-4), "log_interval": (5, 1), "n_layer": (2, 3)}
    assert sorted(a.resume_blockers(b)) == ["learning_rate", "n_layer"]
    assert a.resume_blockers(a.replace(eval_interval=7, time_limit_s=10.0)) == []
    assert RESUME_SAFE_FIELDS <= set(FIELD_NAMES)


def test_from_form_parses_strings_and_keeps_preset_for_blanks():
    cfg = TrainingConfig.from_form(preset="smoke", learning_rate="1e-3", max_steps="12", run_name="", dropout=None)
    assert cfg.learning_rate == 1e-3 and cfg.max_steps == 12
    assert cfg.run_name == "smoke" and cfg.dropout == 0.0


def test_from_form_model_size_and_gpt2_heads():
    cfg = TrainingConfig.from_form(preset="smoke", model_size="tiny", model_family="gpt2")
    assert (cfg.n_layer, cfg.d_model) == (2, 128)
    assert cfg.n_kv_head == cfg.n_head  # GPT-2 has no grouped-query attention


def test_from_form_reports_every_bad_value():
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_form(preset="smoke", learning_rate="fast", model_size="huge", batch_size="0", lr="1")
    assert {"learning_rate", "model_size", "batch_size", "lr"} <= set(info.value.fields)


def test_parse_overrides():
    assert parse_overrides(["learning_rate=3e-4", "n_layer=2", "compile=true", "run_name=a"]) == {
        "learning_rate": 3e-4,
        "n_layer": 2,
        "compile": "on",  # the bool spelling of before compile took auto/on/off
        "run_name": "a",
    }
    with pytest.raises(ConfigError) as info:
        parse_overrides(["n_layer=two", "nlayer=2", "oops"])
    assert info.value.fields == ["n_layer", "nlayer", "oops"]


def test_step_budget_resolution():
    cfg = TrainingConfig.preset("smoke", max_steps=0, max_tokens=0, epochs=2.0)
    assert cfg.tokens_per_step == 8 * 64
    assert cfg.resolve_max_steps(train_tokens=10 * 512) == 20
    assert cfg.replace(max_tokens=512 * 3).resolve_max_steps(10**9) == 3
    assert cfg.replace(max_steps=7, max_tokens=512 * 3).resolve_max_steps(10**9) == 7


def test_config_is_immutable():
    cfg = TrainingConfig.preset("smoke")
    with pytest.raises(AttributeError):
        cfg.learning_rate = 1.0  # type: ignore[misc]


def test_config_error_renders_as_its_problems_in_ipython():
    with pytest.raises(ConfigError) as info:
        TrainingConfig.preset("smoke", learning_rate=-1.0)
    lines = info.value._render_traceback_()
    assert "learning_rate = -1.0" in lines[0] and "must be in" in lines[0]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_keeps_its_global_batch_on_every_world_size_that_divides_it(name):
    cfg = TrainingConfig.preset(name)
    global_batch = cfg.batch_size * cfg.gradient_accumulation_steps
    for world in range(1, 2 * global_batch + 1):
        if global_batch % world:
            with pytest.raises(ConfigError) as err:
                cfg.rank_batch(world)
            assert err.value.fields == ["gradient_accumulation_steps"]
            assert f"world size of {world}" in str(err.value)
            continue
        micro, accum = cfg.rank_batch(world)
        assert micro * accum * world == global_batch, (world, micro, accum)
        assert micro <= cfg.batch_size  # never more memory per rank than one process uses


def test_rank_batch_splits_the_accumulation_first_as_nanogpt_does():
    cfg = TrainingConfig.preset("quality")  # batch 16, accumulation 4
    assert cfg.rank_batch(1) == (16, 4)
    assert cfg.rank_batch(2) == (16, 2) and cfg.rank_batch(4) == (16, 1)
    assert cfg.rank_batch(8) == (8, 1)  # then the micro-batch
    assert TrainingConfig.preset("smoke").rank_batch(2) == (4, 1)
    assert TrainingConfig.preset("smoke", gradient_accumulation_steps=3).rank_batch(6) == (4, 1)


def test_from_form_model_size_dropdown_default_keeps_the_presets_size():
    from utils.training.presets import PRESET_SIZE

    assert TrainingConfig.from_form(preset="smoke", model_size=PRESET_SIZE) == TrainingConfig.from_form(preset="smoke")


@pytest.mark.parametrize("text, words", [
    ('{"a":' * 100000 + "1" + "}" * 100000, ["config file", "nested too deeply"]),
    ('{"run_name": ' + "[" * 50000 + "]" * 50000 + "}", ["config file", "nested too deeply"]),
    ('{"max_steps": ' + "9" * 5000 + "}", ["config file", "more than 4300 digits"]),
    ('{"learning_rate": ' + "9" * 400 + "}", ["learning_rate", "(400 characters)", "finite"]),
    ('{"max_steps": ' + "9" * 400 + "}", ["max_steps", "(400 characters)", "must be in"]),
])
def test_hostile_config_json_is_a_config_error_naming_the_file_or_field(tmp_path, text, words):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        TrainingConfig.load(path)
    for w in words:
        assert w in str(e.value)
    assert len(str(e.value)) < 400  # the value is shown shortened, not as 5000 digits


def test_from_form_named_preset_choices_keep_the_presets_values():
    from utils.training.presets import PRESET_CHOICE

    base = TrainingConfig.from_form(preset="smoke")
    named = TrainingConfig.from_form(preset="smoke", schedule=PRESET_CHOICE + "schedule")
    assert named == base and named.schedule == base.schedule


def test_the_forms_preset_family_keeps_a_nanogpt_presets_family_and_its_options():
    """The form's model_family dropdown starts with "preset's family": a preset whose recipe
    needs the nanogpt family (its options) keeps it; naming llama over it is refused."""
    form = dict(preset="speedrun", model_family="preset's family", qk_norm=None, relu2_mlp=None)
    cfg = TrainingConfig.from_form(**form)
    assert cfg.model_family == "nanogpt" and cfg.qk_norm and cfg.relu2_mlp
    with pytest.raises(ConfigError, match="qk_norm"):
        TrainingConfig.from_form(**{**form, "model_family": "llama"})


def test_compile_takes_auto_on_off_and_the_old_booleans(tmp_path):
    assert TrainingConfig().compile == "auto"
    assert TrainingConfig.preset("smoke", compile=True).compile == "on"
    assert TrainingConfig.preset("smoke", compile=False).compile == "off"
    old = tmp_path / "old.json"  # a config file written when compile was a bool
    old.write_text(json.dumps({**TrainingConfig.preset("smoke").to_dict(), "compile": True}))
    assert TrainingConfig.load(old).compile == "on"
    assert parse_overrides(["compile=false"]) == {"compile": "off"}
    assert parse_overrides(["compile=auto"]) == {"compile": "auto"}
    assert TrainingConfig.from_form(preset="smoke", compile="off").compile == "off"


def test_optimizer_fields_change_training():
    a = TrainingConfig.preset("smoke", optimizer="adamw")
    assert sorted(a.resume_blockers(a.replace(optimizer="muon", muon_lr=0.05))) == ["muon_lr", "optimizer"]
    assert TrainingConfig.from_form(preset="smoke", optimizer="muon", muon_lr="0.01").muon_lr == 0.01


def test_from_form_unknown_preset_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as err:
        TrainingConfig.from_form(preset="bogus")
    assert err.value.fields == ["preset"] and "bogus" in str(err.value)


# --- validated once, at the edge ------------------------------------------------------
@pytest.fixture
def validations(monkeypatch) -> list:
    """The `only` argument of every run of the one validation (None: every field)."""
    from utils.training import config as config_module

    calls: list = []
    real = config_module.check_config

    def counted(cfg, only=None):
        calls.append(None if only is None else sorted(only))
        return real(cfg, only=only)

    monkeypatch.setattr(config_module, "check_config", counted)
    return calls


def test_a_config_from_a_form_is_validated_once(validations):
    cfg = TrainingConfig.from_form(preset="smoke", model_size="tiny", learning_rate="3e-4", max_steps="12")
    assert (cfg.learning_rate, cfg.max_steps, cfg.d_model) == (3e-4, 12, 128)
    assert validations == [None]


def test_a_bad_form_is_validated_once_and_names_every_field(validations):
    with pytest.raises(ConfigError) as e:
        TrainingConfig.from_form(preset="smoke", learning_rate="fast", batch_size="0", bogus="1")
    assert set(e.value.fields) == {"learning_rate", "batch_size", "bogus"}
    assert validations == [None]


def test_preset_and_dict_are_validated_once(validations):
    TrainingConfig.preset("smoke")
    TrainingConfig.from_dict({"run_name": "x"})
    assert validations == [None, None]


def test_replace_checks_only_what_changed_and_the_cross_field_rules(validations):
    cfg = TrainingConfig.preset("smoke")
    validations.clear()
    assert cfg.replace(batch_size=4).batch_size == 4
    assert validations == [["batch_size"]]
    with pytest.raises(ConfigError, match="batch_size"):
        cfg.replace(batch_size=0)
    with pytest.raises(ConfigError, match="n_head"):  # a cross-field rule, though only n_kv_head changed
        cfg.replace(n_kv_head=3)
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        cfg.replace(lr=1e-3)
    assert cfg.replace(compile=False).compile == "off"  # the legacy bool, normalised as on construction
    assert cfg.batch_size == 8  # frozen: the original is untouched


def test_a_budget_from_epochs_over_a_corpus_of_unknown_size_is_a_config_error():
    cfg = TrainingConfig.preset("smoke", max_steps=0)
    with pytest.raises(ConfigError, match="max_steps"):
        cfg.resolve_max_steps(None)
    assert cfg.replace(max_tokens=512 * 4).resolve_max_steps(None) == 4

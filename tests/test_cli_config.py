"""The `train` command's config (cli.config_from_args), in process: the preset or file,
the flags and the --set overrides are merged as plain values and validated once; bad
input exits 2 naming the field, before any data or model."""

from __future__ import annotations

import json

import pytest

from utils.training import config as config_module
from utils.training.cli import EXIT_USAGE, build_parser, config_from_args, main


@pytest.fixture
def validations(monkeypatch) -> list[int]:
    """Counts the runs of the one validation (config_rules.check_config, as config.py calls it)."""
    calls: list[int] = []
    real = config_module.check_config

    def counted(cfg, only=None):
        calls.append(1)
        return real(cfg, only=only)

    monkeypatch.setattr(config_module, "check_config", counted)
    return calls


def test_a_config_from_the_command_line_is_validated_once(validations):
    args = build_parser().parse_args(["train", "--preset", "smoke", "--set", "learning_rate=3e-4",
                                      "--run-name", "once", "--checkpoint-interval", "5", "--test"])
    cfg = config_from_args(args)
    assert (cfg.learning_rate, cfg.run_name, cfg.checkpoint_interval) == (3e-4, "once", 5)
    assert len(validations) == 1


def test_a_config_file_from_the_command_line_is_validated_once(validations, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"run_name": "filed", "n_layer": 2, "compile": True}))
    cfg = config_from_args(build_parser().parse_args(["train", "--config", str(path), "--set", "n_head=2", "--set", "n_kv_head=1"]))
    assert (cfg.run_name, cfg.n_layer, cfg.n_head, cfg.compile) == ("filed", 2, 2, "on")
    assert len(validations) == 1


@pytest.mark.parametrize("argv, field", [
    (["--set", "learning_rate=2"], "learning_rate"),
    (["--set", "lr=1e-3"], "learning_rate"),  # an alias: named as the field it means
    (["--checkpoint-interval", "0"], "checkpoint_interval"),
    (["--run-name", "../up"], "run_name"),
])
def test_bad_input_exits_2_naming_the_field(tmp_path, capsys, argv, field):
    code = main(["train", "--preset", "smoke", "--workspace", str(tmp_path / "ws"), *argv])
    assert code == EXIT_USAGE
    assert field in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()  # refused before anything was written


def test_a_config_file_that_is_not_an_object_exits_2_naming_it(tmp_path, capsys):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    assert main(["train", "--config", str(path), "--workspace", str(tmp_path / "ws")]) == EXIT_USAGE
    assert "must be a mapping" in capsys.readouterr().err

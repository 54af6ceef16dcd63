"""utils/training/hpo/space.py: a search space parsed once from a JSON file, a dict or
the notebook form, refused with every bad parameter named."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from utils.training.config import TrainingConfig
from utils.training.hpo.space import SearchSpace, SearchSpaceError

ROOT = Path(__file__).resolve().parents[1]

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.2},
    "schedule": {"type": "categorical", "choices": ["cosine", "linear"]},
}


def test_search_space_from_json_dict_and_form_agree(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE))
    a = SearchSpace.from_json(path)
    b = SearchSpace.from_dict(SPACE)
    c = SearchSpace.from_form(learning_rate="1e-3:0.3:log", weight_decay="0:0.2", schedule="cosine,linear",
                              dropout="", n_layer=None)
    assert a == b == c
    assert SearchSpace.from_json(a.to_json(tmp_path / "again.json")) == a
    int_space = SearchSpace.from_form(n_layer="1:4", d_model=[64, 128])
    assert int_space.to_dict() == {"n_layer": {"type": "int", "low": 1, "high": 4},
                                   "d_model": {"type": "categorical", "choices": [64, 128]}}


def test_the_optimizer_and_its_learning_rate_can_be_searched():
    space = SearchSpace.from_form(optimizer="adamw,muon", muon_lr="0.005:0.05:log")
    assert space.to_dict() == {"optimizer": {"type": "categorical", "choices": ["adamw", "muon"]},
                               "muon_lr": {"type": "float", "low": 0.005, "high": 0.05, "log": True}}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(10):
        trial = study.ask()
        cfg = TrainingConfig.preset("smoke").replace(**space.suggest(trial))
        seen.add(cfg.optimizer)
        study.tell(trial, 0.0)
    assert seen == {"adamw", "muon"}
    with pytest.raises(SearchSpaceError, match="optimizer: value 'sgd' is not allowed"):
        SearchSpace.from_form(optimizer="adamw,sgd")


def test_the_example_search_space_file_is_valid():
    space = SearchSpace.from_json(ROOT / "examples" / "search_space.json")
    TrainingConfig.preset("smoke").replace(**{p.name: (p.low if p.choices == () else p.choices[0]) for p in space})


def test_suggest_returns_config_overrides_within_bounds():
    space = SearchSpace.from_dict({**SPACE, "n_layer": {"type": "int", "low": 1, "high": 3}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        o = space.suggest(trial)
        assert set(o) == {"learning_rate", "weight_decay", "schedule", "n_layer"}
        assert 1e-3 <= o["learning_rate"] <= 0.3 and 0 <= o["weight_decay"] <= 0.2
        assert o["schedule"] in ("cosine", "linear") and o["n_layer"] in (1, 2, 3) and isinstance(o["n_layer"], int)
        TrainingConfig.preset("smoke").replace(**o)  # every suggestion is a valid config
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    "space, names",
    [
        ({"learnin_rate": {"type": "float", "low": 1e-4, "high": 1e-3}}, ["learnin_rate", "did you mean 'learning_rate'"]),
        ({"n_layer": {"type": "int", "low": 4, "high": 1}}, ["n_layer", "low (4) > high (1)"]),
        ({"n_layer": {"type": "uniform", "low": 1, "high": 2}}, ["n_layer", "unknown type 'uniform'", "categorical"]),
        ({"n_layer": {"type": "float", "low": 1, "high": 2}}, ["n_layer", "use 'int'"]),
        ({"learning_rate": {"type": "float", "low": 0, "high": 1e-3, "log": True}}, ["learning_rate", "log scale"]),
        ({"learning_rate": {"type": "float", "low": 1e-4, "hi": 1e-3}}, ["learning_rate", "'high'", "unknown key"]),
        ({"schedule": {"type": "categorical", "choices": []}}, ["schedule", "non-empty"]),
        ({"schedule": {"type": "categorical", "choices": ["cosine", "zigzag"]}}, ["schedule", "zigzag", "cosine"]),
        ({"dropout": {"type": "float", "low": 0.0, "high": 1.5}}, ["dropout", "1.5"]),
        ({"run_name": {"type": "categorical", "choices": ["a", "b"]}}, ["run_name", "cannot be searched"]),
        ({"n_layer": [1, 2]}, ["n_layer", "must be an object"]),
        ({}, ["empty"]),
    ],
)
def test_bad_search_spaces_are_rejected_naming_the_parameter(space, names):
    with pytest.raises(SearchSpaceError) as e:
        SearchSpace.from_dict(space)
    for text in names:
        assert text in str(e.value)


def test_bad_form_values_and_files_are_rejected(tmp_path):
    with pytest.raises(SearchSpaceError, match="schedule: a range needs a numeric field"):
        SearchSpace.from_form(schedule="a:b")
    with pytest.raises(SearchSpaceError, match="learning_rate: a range is"):
        SearchSpace.from_form(learning_rate="1:2:3:4")
    with pytest.raises(SearchSpaceError, match="does not exist"):
        SearchSpace.from_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SearchSpaceError, match="not valid JSON"):
        SearchSpace.from_json(tmp_path / "bad.json")


def test_spaces_join_and_a_checked_space_is_restored_without_a_second_parse(monkeypatch):
    file_space = SearchSpace.from_dict(SPACE)
    form = SearchSpace.from_form(schedule="linear", n_layer="1:3")
    joined = file_space | form  # as `--space FILE --param ...`: the --param wins a field both name
    assert list(joined.to_dict()) == ["learning_rate", "weight_decay", "schedule", "n_layer"]
    assert joined.params["schedule"].choices == ("linear",)
    assert joined == SearchSpace.from_dict({**SPACE, **form.to_dict()})

    wire = json.loads(json.dumps(joined.to_dict()))  # what a worker process receives

    def parsed_again(*a, **kw):
        raise AssertionError("parsed again")

    monkeypatch.setattr(SearchSpace, "from_dict", classmethod(parsed_again))
    restored = SearchSpace.restore(wire)
    assert restored == joined
    assert [type(p.low) for p in restored] == [type(p.low) for p in joined]  # an int range stays int

"""The registries: config validation, the notebook's dropdowns and the builders all read
them, so a new optimizer or data source is one registry entry plus its builder."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_fixtures import ArrayBatches, make_tokens, tiny_config

import build_notebooks
from utils.training.config import TrainingConfig
from utils.training.config_rules import CHOICES, ConfigError
from utils.training.contracts import RunStatus
from utils.training.data.readers import DataError
from utils.training.data.sources import SOURCES, TextCorpus, load_source, source_options
from utils.training.engine.models import build_model
from utils.training.engine.optimizers import build_optimizer
from utils.training.engine.trainer import Trainer
from utils.training.registries import (
    DATA_SOURCES,
    MODEL_FAMILIES,
    OPTIMIZERS,
    PRECISIONS,
    REGISTRIES,
    SCHEDULES,
    Entry,
    Registry,
)

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZER_FORM = ('# @title Configuration\n'
                  'optimizer = "preset\'s optimizer"  #@param ["preset\'s optimizer", "adamw", "muon"]\n')


def build_sgd(model, config, device_type):
    return torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=0.9)


def load_tiny(seed: int = 0, path: str | None = None) -> TextCorpus:
    return TextCorpus([f"document {seed} {path} {i}" for i in range(5)], name="tiny", source="tiny")


@pytest.fixture
def sgd():
    """'sgd' registered for one test, in one place: the optimizer registry."""
    entry = OPTIMIZERS.register("sgd", "SGD with momentum 0.9", build_sgd)
    try:
        yield entry
    finally:
        OPTIMIZERS.remove("sgd")


@pytest.fixture
def tiny_source():
    entry = DATA_SOURCES.register("tiny", "five short documents", load_tiny, reads="memory",
                                  requires="data_path", options={"seed": "random_seed", "path": "data_path"})
    try:
        yield entry
    finally:
        DATA_SOURCES.remove("tiny")


def _dropdowns(source: str) -> dict[str, list]:
    """{field: choices} of the registry fields' dropdowns in a form's source."""
    found = {}
    for line in source.splitlines():
        m = build_notebooks.REGISTRY_DROPDOWN.match(line)
        if m and m.group("field") in REGISTRIES:
            found[m.group("field")] = ast.literal_eval(m.group("choices"))
    return found


def _without_preset_choice(choices: list) -> list:
    return [c for c in choices if not c.startswith("preset's ")]


# -- the registries are the allowed values -----------------------------------------------


def test_config_choices_are_the_registries():
    for field_name, registry in REGISTRIES.items():
        assert CHOICES[field_name] is registry and registry.field == field_name
    assert list(OPTIMIZERS) == ["adamw", "muon"] and list(SCHEDULES) == ["cosine", "linear", "constant"]
    assert set(MODEL_FAMILIES) == {"gpt2", "llama", "qwen2", "nanogpt"} and set(PRECISIONS) == {"auto", "fp32", "bf16", "fp16"}
    assert set(DATA_SOURCES) == {"builtin", "hf", "local", "drive", "upload", "synthetic"}


def test_an_unknown_name_is_refused_naming_the_field_and_what_is_allowed():
    with pytest.raises(ConfigError) as err:
        TrainingConfig(optimizer="sgd", schedule="step")
    text = str(err.value)
    assert "optimizer = 'sgd': must be one of ['adamw', 'muon']" in text
    assert "schedule = 'step': must be one of ['cosine', 'linear', 'constant']" in text
    with pytest.raises(ValueError, match=r"optimizer: 'sgd' is not one of adamw, muon"):
        OPTIMIZERS.get("sgd")
    with pytest.raises(DataError, match="data_source must be one of"):
        load_source("nowhere")
    assert ["a list"] not in OPTIMIZERS  # an unhashable value from a JSON file is no choice, not a TypeError


def test_a_name_is_registered_once():
    registry = Registry("thing", [Entry("a", "the first")])
    with pytest.raises(ValueError, match="'a' is already registered"):
        registry.register("a", "again")
    with pytest.raises(ValueError, match="non-empty string"):
        registry.register(" ", "blank")
    with pytest.raises(TypeError, match="has no builder"):
        registry.builder("a")


def test_builders_are_imported_on_first_use_and_config_imports_no_torch():
    code = ("import sys; import utils.training.config, utils.training.registries as r; "
            "assert 'torch' not in sys.modules; r.OPTIMIZERS.builder('adamw'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


# -- one entry is enough for validation, the form and the builder ----------------------


def test_a_new_optimizer_is_one_registry_entry(sgd, tmp_path):
    cfg = tiny_config(optimizer="sgd", max_steps=4, eval_interval=10**6, checkpoint_interval=10**6)
    assert TrainingConfig.from_form(optimizer="sgd").optimizer == "sgd"  # validation
    form = build_notebooks.registry_dropdowns(OPTIMIZER_FORM)  # the notebook's dropdown
    assert _dropdowns(form)["optimizer"] == ["preset's optimizer", "adamw", "muon", "sgd"]
    assert "#   sgd:   SGD with momentum 0.9" in form
    assert isinstance(build_optimizer(build_model(cfg), cfg, "cpu"), torch.optim.SGD)  # the builder
    trainer = Trainer(cfg, build_model(cfg), ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1),
                      run_dir=tmp_path, progress_bar=False)
    assert trainer.train().status == RunStatus.COMPLETED and isinstance(trainer.optimizer, torch.optim.SGD)
    OPTIMIZERS.remove("sgd")
    with pytest.raises(ConfigError, match="optimizer"):
        TrainingConfig(optimizer="sgd")
    OPTIMIZERS.add(sgd)  # the fixture removes it again


def test_a_new_data_source_is_one_registry_entry(tiny_source):
    with pytest.raises(ConfigError) as err:  # its `requires` fact is a cross-field rule
        TrainingConfig(data_source="tiny")
    assert err.value.fields == ["data_path"] and "is required when data_source is 'tiny'" in str(err.value)
    cfg = TrainingConfig(data_source="tiny", data_path="here", random_seed=7)
    options = source_options(cfg, {})
    assert options == {"seed": 7, "path": "here"}
    corpus = load_source(cfg.data_source, **options)
    assert corpus.documents[0] == "document 7 here 0" and SOURCES["tiny"] is load_tiny
    form = build_notebooks.registry_dropdowns('# @title Data\ndata_source = "builtin"  #@param ["builtin"]\n')
    assert _dropdowns(form)["data_source"] == list(DATA_SOURCES) and list(DATA_SOURCES)[-1] == "tiny"


def test_model_family_rules_come_from_its_facts():
    MODEL_FAMILIES.register("gpt2-like", "a family without grouped-query attention", None, gqa=False,
                            rotary=False, mlp="gelu")
    try:
        with pytest.raises(ConfigError, match="must equal n_head .* for gpt2-like"):
            TrainingConfig(model_family="gpt2-like", n_head=4, n_kv_head=2)
        assert TrainingConfig.from_form(model_family="gpt2-like", n_head=4).n_kv_head == 4
    finally:
        MODEL_FAMILIES.remove("gpt2-like")


# -- the notebook's dropdowns are the registries ---------------------------------------


def _form_sources(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and "@param" in "".join(c["source"])]


@pytest.mark.parametrize("where", ["notebooks/training.ipynb", "notebooks_src/training.py"])
def test_notebook_dropdowns_equal_the_registries(where):
    path = ROOT / where
    sources = _form_sources(path) if path.suffix == ".ipynb" else [path.read_text(encoding="utf-8")]
    found = {}
    for source in sources:
        found.update(_dropdowns(source))
    assert set(found) == set(REGISTRIES), f"{where}: a registry field has no dropdown"
    for field_name, choices in found.items():
        assert _without_preset_choice(choices) == list(REGISTRIES[field_name]), f"{where}: {field_name}"


def test_a_hand_edited_dropdown_is_regenerated_and_a_default_outside_it_is_a_problem():
    stale = '# @title Configuration\nprecision = "auto"  #@param ["auto", "fp32"]\n'
    assert _dropdowns(build_notebooks.registry_dropdowns(stale))["precision"] == list(PRECISIONS)
    twice = build_notebooks.registry_dropdowns(build_notebooks.registry_dropdowns(stale))
    assert twice == build_notebooks.registry_dropdowns(stale)  # the label comment is replaced, not repeated
    bad = '# @title Configuration\nprecision = "fp8"  #@param ["auto", "fp32", "bf16", "fp16"]\n'
    problems = build_notebooks.check_form("mini", 1, bad)
    assert [p.rule for p in problems] == ["form-registry"] and "'fp8'" in problems[0].message

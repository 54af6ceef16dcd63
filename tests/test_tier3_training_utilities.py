"""utils/tier3_training_utilities.py: the seed notebook's section-8 imports fail with advice
naming what replaces each name here, not with ModuleNotFoundError."""

from __future__ import annotations

import importlib

import pytest

import utils.tier3_training_utilities as tier3


@pytest.mark.parametrize("name, advice", [("test_hyperparameter_search", "python -m utils.training hpo"),
                                          ("get_cosine_schedule_with_warmup",
                                           "transformers.get_cosine_schedule_with_warmup"),
                                          ("test_fine_tuning", "python -m utils.training train"),
                                          ("test_benchmark_comparison", "runs compare"),
                                          ("test_amp_speedup_benchmark", "precision"),
                                          ("a_name_the_seed_may_have_had", "python -m utils.training hpo")])
def test_each_name_raises_an_import_error_with_its_replacement(name, advice):
    with pytest.raises(ImportError, match=advice) as err:
        exec(f"from utils.tier3_training_utilities import {name}", {})
    assert isinstance(err.value, tier3.SeedUtilityRemoved) and "docs/seed_api.md" in str(err.value)


def test_the_seeds_section_8_cell_fails_with_advice():
    cell = ("from utils.tier3_training_utilities import (test_fine_tuning, test_hyperparameter_search, "
            "test_benchmark_comparison)")
    with pytest.raises(ImportError, match="not part of this project"):
        exec(cell, {})


def test_module_protocol_probes_stay_attribute_errors():
    assert importlib.import_module("utils.tier3_training_utilities") is tier3
    assert not hasattr(tier3, "__wrapped__") and not hasattr(tier3, "__path__")
    # the replacement named for the schedule exists under that name
    transformers = pytest.importorskip("transformers")
    assert callable(transformers.get_cosine_schedule_with_warmup)

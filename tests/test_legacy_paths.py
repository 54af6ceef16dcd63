"""utils/training/legacy_paths.py: the flat module paths of before the subpackages keep
importing, as the very module the library runs (one class object, one patch target)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from utils.training.legacy_paths import OLD_MODULE_PATHS


@pytest.mark.parametrize("old", sorted(OLD_MODULE_PATHS))
def test_old_path_is_the_new_module(old):
    was = importlib.import_module(f"utils.training.{old}")
    now = importlib.import_module(f"utils.training.{OLD_MODULE_PATHS[old]}")
    assert was is now


def test_a_class_from_the_old_path_is_the_class_the_library_uses():
    from utils.training.experiment_db import ExperimentDB as seed_path_db  # the seed notebook's path
    from utils.training.hf import ExperimentCallback  # the documented Hugging Face callback path

    from utils.training import ExperimentDB
    from utils.training.tracking.hf import ExperimentCallback as new_path_callback

    assert seed_path_db is ExperimentDB and ExperimentCallback is new_path_callback


def test_former_modules_now_packages_forward_their_names():
    from utils.training.data import prepare_data
    from utils.training.data.pipeline import prepare_data as new_prepare
    from utils.training.hpo import SearchSpace
    from utils.training.hpo.space import SearchSpace as new_space

    assert prepare_data is new_prepare and SearchSpace is new_space
    with pytest.raises(ImportError, match="no_such_name"):
        from utils.training.data import no_such_name  # noqa: F401


def test_patching_an_old_path_patches_what_runs(monkeypatch):
    import utils.training.style as old_style

    import utils.training.viz.style as style

    monkeypatch.setattr(old_style, "PALETTE", ("#000000",))
    assert style.PALETTE == ("#000000",)


def test_an_unknown_module_under_the_package_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("utils.training.no_such_module")


def test_importing_the_database_by_its_old_path_imports_no_torch():
    code = "import sys, utils.training.experiment_db; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

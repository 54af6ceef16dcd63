"""utils/training/compat/paths.py: every old module path, old name and old keyword in the
one map still works, as the very object the library runs (one class object, one patch
target)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from utils.training.compat import paths
from utils.training.compat.paths import KEYWORDS, MODULES, NAMES, OLD, resolve


@pytest.mark.parametrize("old", sorted(MODULES))
def test_old_path_is_the_new_module(old):
    was = importlib.import_module(f"utils.training.{old}")
    now = importlib.import_module(f"utils.training.{MODULES[old]}")
    assert was is now


@pytest.mark.parametrize("owner,name", sorted((o, n) for o, names in NAMES.items() for n in names if n != "*"))
def test_old_name_is_the_object_at_its_home(owner, name):
    """Also when the module imports the name for its own use (the entry keeps the old name
    working when it no longer does)."""
    module = importlib.import_module(f"utils.training.{owner}")
    assert getattr(module, name) is resolve(NAMES[owner][name])


@pytest.mark.parametrize("owner", sorted(o for o, names in NAMES.items() if "*" in names))
def test_a_package_answers_every_public_name_of_its_modules(owner):
    package = importlib.import_module(f"utils.training.{owner}")
    for home in NAMES[owner]["*"].split():
        module = importlib.import_module(f"utils.training.{home}")
        for name in (n for n in vars(module) if not n.startswith("_")):
            assert hasattr(package, name), f"utils.training.{owner}.{name}"


def test_every_entry_is_one_of_the_three_kinds():
    assert len(MODULES) + sum(map(len, NAMES.values())) + sum(map(len, KEYWORDS.values())) == len(OLD)
    for cls_entries in KEYWORDS.values():
        for wrapper in cls_entries.values():
            assert callable(resolve(wrapper))


def test_an_old_path_and_its_old_names_together():
    from utils.training.trainer import CheckpointCallback, resolve_device

    from utils.training.compat.callbacks import CheckpointCallback as compat_checkpoint
    from utils.training.engine.device import resolve_device as device_resolve

    assert resolve_device is device_resolve and CheckpointCallback is compat_checkpoint


def test_a_class_from_the_old_path_is_the_class_the_library_uses():
    from utils.training.experiment_db import ExperimentDB as seed_path_db  # the seed notebook's path
    from utils.training.tracking.hf import ExperimentCallback as new_path_callback

    import utils.training.compat.experiment_db as seed
    from utils.training import ExperimentDB
    from utils.training.hf import ExperimentCallback  # the documented Hugging Face callback path

    # the seed's path serves the seed's shapes, as a subclass of the class the library uses
    assert seed_path_db is seed.ExperimentDB and issubclass(seed_path_db, ExperimentDB)
    assert ExperimentCallback is new_path_callback


def test_former_modules_now_packages_answer_their_names():
    from utils.training.data import prepare_data
    from utils.training.data.pipeline import prepare_data as new_prepare
    from utils.training.hpo import SearchSpace
    from utils.training.hpo.space import SearchSpace as new_space

    assert prepare_data is new_prepare and SearchSpace is new_space
    with pytest.raises(ImportError, match="no_such_name"):
        from utils.training.data import no_such_name  # noqa: F401
    with pytest.raises(AttributeError, match="no_such_name"):
        importlib.import_module("utils.training.engine.trainer").no_such_name  # noqa: B018


def test_old_aliases():
    from utils.training.experiment_db import STATUSES
    from utils.training.style import caveat

    from utils.training.contracts import RunStatus
    from utils.training.session import ReportingOptions, TrackingOptions
    from utils.training.text import caveat as text_caveat

    assert TrackingOptions is ReportingOptions and STATUSES == RunStatus.ALL and caveat is text_caveat


def test_patching_an_old_path_patches_what_runs(monkeypatch):
    import utils.training.style as old_style

    import utils.training.viz.style as style

    monkeypatch.setattr(old_style, "PALETTE", ("#000000",))
    assert style.PALETTE == ("#000000",)


def test_session_log_keyword_is_accepted_and_ignored(tmp_path):
    from utils.training.config import TrainingConfig
    from utils.training.session import TrainingSession

    with pytest.warns(DeprecationWarning, match="log"):
        session = TrainingSession(TrainingConfig.preset("smoke"), tmp_path, log=print)
    session.close()


def test_wandb_init_timeout_becomes_the_configs_wandb_timeout(tmp_path):
    from utils.training.config import TrainingConfig
    from utils.training.session import ReportingOptions, TrainingSession

    with pytest.warns(DeprecationWarning, match="wandb_timeout_s"):
        options = ReportingOptions(progress_bar=False, wandb_init_timeout_s=4.0)
    assert options.wandb_init_timeout_s == 4.0
    session = TrainingSession(TrainingConfig.preset("smoke"), tmp_path, tracking=options)
    assert session.config.wandb_timeout_s == 4.0 and session.tracking is options
    session.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns nothing
        plain = TrainingSession(TrainingConfig.preset("smoke"), tmp_path, tracking=ReportingOptions())
    assert plain.config.wandb_timeout_s == TrainingConfig.preset("smoke").wandb_timeout_s
    plain.close()


def test_an_unknown_module_under_the_package_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("utils.training.no_such_module")


def test_install_twice_adds_one_finder():
    paths.install()
    assert sum(isinstance(f, paths.OldPathFinder) for f in sys.meta_path) == 1


def test_importing_the_database_by_its_old_path_imports_no_torch():
    code = "import sys, utils.training.experiment_db; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_module_with_old_names_keeps_its_source_and_reloads():
    import inspect

    import utils.training.engine.trainer as trainer

    assert "class Trainer" in inspect.getsource(trainer)
    importlib.reload(trainer)
    assert trainer.resolve_precision is resolve("engine.device:resolve_precision")

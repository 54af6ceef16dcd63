"""The flat module paths of the library before it was split into subpackages, kept
importing: `from utils.training.experiment_db import ExperimentDB` (the seed notebook's
path), `utils.training.tracking.hf.ExperimentCallback` and every other old path still
work, and name the very same module object as the new path, so
`mock.patch("utils.training.trainer.X")` patches what the library runs.

The map is also the record of what moved where (docs/ARCHITECTURE.md has the new map).
`data` and `hpo` are not here: those names are now packages, which re-export the old
modules' public names themselves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

# old module under utils.training -> its home now (both relative to utils.training)
OLD_MODULE_PATHS = {
    "callbacks": "engine.callbacks",
    "checkpoint": "engine.checkpoint",
    "distributed": "engine.distributed",
    "models": "engine.models",
    "optimizers": "engine.optimizers",
    "trainer": "engine.trainer",
    "timing": "engine.timing",
    "streaming": "data.stream",
    "sampler": "data.sampler",
    "token_file": "data.token_file",
    "tokenizer": "data.tokenizer",
    "experiment_db": "tracking.experiment_db",
    "db_file": "tracking.db_file",
    "run_log": "tracking.run_log",
    "metrics": "tracking.metrics",
    "loop_metrics": "compat.metrics_tracker",
    "tracking.loop_metrics": "compat.metrics_tracker",
    "metrics_tracker": "compat.metrics_tracker",
    "wandb_logger": "tracking.wandb_logger",
    "tracking.hf": "hf",
    "seed_db": "tracking.seed_db",
    "style": "viz.style",
    "live_plotting": "compat.live_plotting",
    "dashboard": "compat.dashboard",
    "report": "viz.report",
    "analysis": "viz.analysis",
    "seed_dashboard": "compat.dashboard",
    "viz.seed_dashboard": "compat.dashboard",
    "training_config": "compat.training_config",
    "seed_manager": "compat.seed_manager",
    "hpo_storage": "hpo.storage",
    "hpo_cli": "hpo.cli",
    "hpo_figures": "hpo.figures",
}

PACKAGE = "utils.training"


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module already at its new path (imported if needed)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when its new path was imported; running it again would make a
        second copy of every class (isinstance checks would then fail)."""


class OldPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        name = fullname[len(PACKAGE) + 1:] if fullname.startswith(PACKAGE + ".") else ""
        if name not in OLD_MODULE_PATHS:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(f"{PACKAGE}.{OLD_MODULE_PATHS[name]}"))


def install() -> None:
    """Called once by utils/training/__init__.py; a second call adds nothing."""
    if not any(isinstance(finder, OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, OldPathFinder())


def forward_attributes(package: str, module: str):
    """A package's module-level __getattr__ that answers with `module`'s names, for a
    package that took over the path of a flat module (`utils.training.data` was data.py,
    now data/pipeline.py): `from utils.training.data import prepare_data` keeps working,
    and the module is imported only when such a name is first asked for."""

    def __getattr__(name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        target = importlib.import_module(f"{package}.{module}")
        try:
            return getattr(target, name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__

"""The library every notebook and command calls.

Names are exported lazily: `from utils.training import ExperimentDB` imports only
tracking.experiment_db (no torch), `from utils.training import Trainer` imports the engine.
See docs/ARCHITECTURE.md for what each module holds.

Old module paths, names and keywords are served by compat/ (compat/paths.py holds the
one map), installed here, before any module of the library is imported.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from utils.training.compat import paths as compat_paths

# tqdm.auto warns once, when first imported in a notebook without ipywidgets, and then
# uses text progress bars anyway; import it quietly so that fallback leaves no stderr.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:  # tqdm is a requirement; without it the trainer says so when it needs it
        pass

compat_paths.install()

# public name -> the module (under utils.training) that defines it
_EXPORTS = {
    "TrainingConfig": "config",
    "ConfigError": "config_rules",
    "PRESETS": "presets",
    "TrainerState": "engine.callbacks",
    "TrainerControl": "engine.callbacks",
    "TrainerCallback": "engine.callbacks",
    "CallbackHandler": "engine.callbacks",
    "FlowCallback": "engine.callbacks",
    "RunStatus": "contracts",
    "MetricsSink": "contracts",
    "BatchSource": "contracts",
    "build_model": "engine.models",
    "count_parameters": "engine.models",
    "flops_per_token": "engine.models",
    "Trainer": "engine.trainer",
    "TrainResult": "engine.trainer",
    "CheckpointManager": "engine.checkpoint",
    "prepare_data": "data.pipeline",
    "PreparedData": "data.pipeline",
    "builtin_corpus": "data.sources",
    "load_source": "data.sources",
    "load_tokenizer": "data.tokenizer",
    "load_gpt2_tokenizer": "data.tokenizer",
    "train_bpe_tokenizer": "data.tokenizer",
    "ExperimentDB": "tracking.experiment_db",
    "MetricsTracker": "compat.metrics_tracker",
    "WandbSink": "tracking.wandb_logger",
    "RunLogWriter": "tracking.run_log",
    "RunRecord": "tracking.run_record",
    "load_run": "tracking.readers",
    "LivePlotter": "viz.live_plotting",
    "TrainingDashboard": "viz.dashboard",
    "TrainingReport": "viz.report",
    "plot_run": "viz.analysis",
    "compare_runs": "viz.analysis",
    "SearchSpace": "hpo.space",
    "run_study": "hpo.study",
    "TrainingSession": "session",
    "ReportingOptions": "tracking.sinks",
    "RunFacts": "engine.run_facts",
    "Workspace": "workspace",
    "detect_runtime": "runtime",
    "in_colab": "runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'utils.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__

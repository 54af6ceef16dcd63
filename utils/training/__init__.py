"""The library every notebook and command calls.

Names are exported lazily: `from utils.training import ExperimentDB` imports only
experiment_db (no torch), `from utils.training import Trainer` imports the engine.
See docs/ARCHITECTURE.md for what each module holds.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

# tqdm.auto warns once, when first imported in a notebook without ipywidgets, and then
# uses text progress bars anyway; import it quietly so that fallback leaves no stderr.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:  # tqdm is a requirement; without it the trainer says so when it needs it
        pass

_EXPORTS = {
    "TrainingConfig": "config",
    "ConfigError": "config",
    "PRESETS": "config",
    "TrainerState": "callbacks",
    "TrainerControl": "callbacks",
    "TrainerCallback": "callbacks",
    "CallbackHandler": "callbacks",
    "RunStatus": "callbacks",
    "build_model": "models",
    "count_parameters": "models",
    "flops_per_token": "models",
    "Trainer": "trainer",
    "TrainResult": "trainer",
    "CheckpointManager": "checkpoint",
    "prepare_data": "data",
    "PreparedData": "data",
    "builtin_corpus": "data",
    "load_source": "data",
    "load_tokenizer": "tokenizer",
    "load_gpt2_tokenizer": "tokenizer",
    "train_bpe_tokenizer": "tokenizer",
    "ExperimentDB": "experiment_db",
    "MetricsTracker": "metrics",
    "WandbSink": "wandb_logger",
    "RunLogWriter": "run_log",
    "RunRecord": "run_log",
    "load_run": "run_log",
    "LivePlotter": "live_plotting",
    "TrainingDashboard": "dashboard",
    "TrainingReport": "report",
    "plot_run": "analysis",
    "compare_runs": "analysis",
    "SearchSpace": "hpo",
    "run_study": "hpo",
    "TrainingSession": "session",
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

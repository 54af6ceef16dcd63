"""The seed notebook's `utils.tier3_training_utilities` (its section 8: fine-tuning loop,
Optuna search, baseline benchmark, AMP benchmark, cosine schedule) is not served here: each
of its names is replaced by a tool of this project, and asking for one raises
`SeedUtilityRemoved` (an ImportError) saying which, so a seed cell fails with advice instead
of ModuleNotFoundError. docs/seed_api.md has the table and the reasons."""

from __future__ import annotations

HPO = ("`python -m utils.training hpo --help` (an Optuna study of real training runs, pruned on "
       "the validation loss, resumable), or section 8 of notebooks/training.ipynb")
TRAIN = "`python -m utils.training train --help`, or TrainingSession(config, workspace).train()"
# seed name -> what replaces it here
REPLACEMENTS = {
    "test_fine_tuning": TRAIN,
    "test_hyperparameter_search": HPO,
    "test_benchmark_comparison": "`python -m utils.training runs compare RUN RUN` (one figure and table for "
                                 "several runs, baselines included)",
    "test_amp_speedup_benchmark": "TrainingConfig(precision=...) ('auto' picks bf16 > fp16 > fp32 by device); "
                                  "compare the runs with `python -m utils.training runs compare`",
    "get_cosine_schedule_with_warmup": "transformers.get_cosine_schedule_with_warmup (the same schedule: "
                                       "`from transformers import get_cosine_schedule_with_warmup`), or "
                                       "TrainingConfig(schedule='cosine', warmup_ratio=...) in our trainer",
}
GENERAL = f"training: {TRAIN}; hyperparameter search: {HPO}"

__all__ = list(REPLACEMENTS)


class SeedUtilityRemoved(ImportError):
    """A name of the seed's tier3_training_utilities, which this project replaces."""


def __getattr__(name: str):
    if name.startswith("__"):  # module protocol probes (__path__, __wrapped__, ...)
        raise AttributeError(name)
    instead = REPLACEMENTS.get(name, GENERAL)
    raise SeedUtilityRemoved(
        f"utils.tier3_training_utilities.{name} (the seed notebook's section 8) is not part of this project; "
        f"use {instead}. See docs/seed_api.md.", name=name, path=__file__)

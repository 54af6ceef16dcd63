"""What a study leaves behind in WORKSPACE/results/hpo/STUDY/.

    best.json                    best params, value, trial number and run; trial counts by state
    trials.csv                   one row per trial (optuna's trials_dataframe: number, state,
                                 value, params_*, user_attrs_* incl. run_name and db_run_id)
    optimization_history.png     the metric per trial (pruned: last report) and the best so far
    intermediate_values.png      the metric reported at each evaluation, per trial (pruning view)
    param_importances.png        fANOVA importances (needs scikit-learn)
    parallel_coordinate.png      every completed trial across the searched parameters

The figures (hpo/plots.py) are in the project's style: the metric and its unit named, a
value axis that does not magnify noise, the smoke/synthetic caveat in the title, each
PNG with its smallest text in px (style.png_metadata) for `make look`.

A figure that cannot be drawn (too few completed trials, scikit-learn missing) is
skipped with one line saying why; the reasons are in the returned dict and best.json.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from utils.training.hpo.storage import quiet_experimental
from utils.training.io import atomic_open, atomic_write_text

FIGURES = ("optimization_history", "intermediate_values", "param_importances", "parallel_coordinate")


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def study_summary(study: optuna.Study) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "direction": study.direction.name.lower(),
        "metric": study.user_attrs.get("metric", "value"),
        "n_trials": len(trials),
        "trial_counts": counts,
        "search_space": study.user_attrs.get("search_space"),
        "best_value": None,
        "best_params": None,
        "best_trial": None,
    }
    if counts["complete"]:
        best = study.best_trial
        summary.update(
            best_value=best.value,
            best_params=best.params,
            best_trial=best.number,
            best_run_name=best.user_attrs.get("run_name"),
            best_db_run_id=best.user_attrs.get("db_run_id"),
        )
    return summary


def _importance_evaluator() -> Any:
    """fANOVA (a random forest from scikit-learn); None when scikit-learn is missing."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return None
    return optuna.importance.FanovaImportanceEvaluator(seed=0)


# Completed trials a figure needs before it shows more than noise: an importance from a
# random forest over 2 trials, or a history of one point, would be drawn but mean nothing.
MIN_COMPLETE = {"optimization_history": 2, "param_importances": 4, "parallel_coordinate": 3}


def study_figures(study: optuna.Study) -> tuple[dict[str, Any], dict[str, str]]:
    """({figure name: matplotlib Figure}, {figure name: why it was skipped}), drawn in the
    project's style by hpo/plots.py."""
    from utils.training.hpo import plots

    summary = study_summary(study)
    complete = summary["trial_counts"]["complete"]
    evaluator = _importance_evaluator()
    draw = {
        "optimization_history": lambda: plots.optimization_history(study),
        "intermediate_values": lambda: plots.intermediate_values(study),
        "param_importances": lambda: plots.param_importances(study, evaluator),
        "parallel_coordinate": lambda: plots.parallel_coordinate(study),
    }
    trials = study.get_trials(deepcopy=False)
    has_intermediate = any(t.intermediate_values for t in trials)
    n_params = len({p for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) for p in t.params})
    figs: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in FIGURES:
        reason = None
        need = MIN_COMPLETE.get(name, 0)
        if complete == 0 and name != "intermediate_values":
            reason = "no completed trial yet"
        elif name == "intermediate_values" and not has_intermediate:
            reason = "no trial reported an intermediate value"
        elif name == "param_importances" and evaluator is None:
            reason = "scikit-learn is not installed (pip install scikit-learn) - parameter importances skipped"
        elif complete < need:
            reason = f"needs at least {need} completed trials to mean anything (have {complete})"
        elif name in ("param_importances", "parallel_coordinate") and n_params < 1:
            reason = "no searched parameter"
        if reason is None:
            try:
                with optuna_quiet():
                    figs[name] = draw[name]()
                continue
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                reason = f"could not be drawn: {e}"
        skipped[name] = reason
    return figs, skipped


def write_study_results(study: optuna.Study, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write best.json, trials.csv and the PNG figures to `out_dir`; return the summary
    with `files` (name -> path) and `skipped` (figure -> reason). Each file is written
    atomically (a reader never sees half of one) but not fsynced: `--results-only`
    redraws them all from the study."""
    from utils.training.viz.style import figure_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = study_summary(study)
    files: dict[str, str] = {}

    csv_path = out / "trials.csv"
    with atomic_open(csv_path, "w", durable=False) as f:
        study.trials_dataframe().to_csv(f, index=False)
    files["trials.csv"] = str(csv_path)

    figs, skipped = study_figures(study)
    for name in FIGURES:
        if name in figs:
            path = out / f"{name}.png"
            with atomic_open(path, "wb", durable=False) as f:  # the PNG carries its smallest text (make look)
                f.write(figure_png(figs[name]))
            files[f"{name}.png"] = str(path)
        else:
            print(f"[hpo] {name}.png skipped: {skipped[name]}")

    summary["files"] = files
    summary["skipped"] = skipped
    best_path = out / "best.json"
    atomic_write_text(best_path, json.dumps(_json_safe(summary), indent=2, sort_keys=True) + "\n", durable=False)
    files["best.json"] = str(best_path)
    return summary


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Silence warnings that are noise for our users: Optuna's ExperimentalWarning (fANOVA
    importances), and matplotlib's note on a zero-height axis."""
    with quiet_experimental(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Attempting to set identical", category=UserWarning)
        yield

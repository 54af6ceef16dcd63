"""What a study leaves behind in WORKSPACE/results/hpo/STUDY/.

    best.json                    best params, value, trial number and run; trial counts by state
    trials.csv                   one row per trial (optuna's trials_dataframe: number, state,
                                 value, params_*, user_attrs_* incl. run_name and db_run_id)
    optimization_history.png     objective value per trial and the best so far
    intermediate_values.png      val_loss reported at each evaluation, per trial (pruning view)
    param_importances.png        fANOVA importances (needs scikit-learn)
    parallel_coordinate.png      every completed trial across the searched parameters

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
    """({figure name: matplotlib Figure}, {figure name: why it was skipped})."""
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    summary = study_summary(study)
    complete = summary["trial_counts"]["complete"]
    evaluator = _importance_evaluator()
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(study),
        "intermediate_values": lambda: ovm.plot_intermediate_values(study),
        "param_importances": lambda: ovm.plot_param_importances(study, evaluator=evaluator),
        "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study),
    }
    trials = study.get_trials(deepcopy=False)
    has_intermediate = any(t.intermediate_values for t in trials)
    n_params = len({p for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) for p in t.params})
    figs: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, draw in plots.items():
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
        elif name == "param_importances" and n_params < 1:
            reason = "no searched parameter"
        if reason is None:
            try:
                # optuna's plots switch the global style to ggplot: keep that inside.
                with optuna_quiet(), mpl.rc_context():
                    fig = _figure_of(draw())
                    _tidy(name, fig, len(trials), complete, study.user_attrs.get("caveat", ""))
                figs[name] = fig
                continue
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                reason = f"could not be drawn: {e}"
                plt.close("all")
        skipped[name] = reason
    return figs, skipped


def _tidy(name: str, fig: Any, n_trials: int, complete: int, note: str = "") -> None:
    """Whole trial numbers on trial axes, visible lines, and the trial count in the title."""
    import matplotlib
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.ticker import MaxNLocator

    # optuna's Blues fades the best (or worst) trials to near white: a map without a pale end.
    unfaded = ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, 256)))
    for ax in fig.axes:
        if ax.get_xlabel().lower() in ("trial", "#trials", "step"):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for coll in ax.collections:
            if name == "parallel_coordinate" and coll.get_array() is not None:
                coll.set_cmap(unfaded)
                coll.set_linewidth(2.0)
    if name == "intermediate_values":  # optuna fades later trials to near white: one clear colour each
        from utils.training.viz.style import series_colors

        ax = fig.axes[0]
        lines = ax.get_lines()
        for line, color in zip(lines, series_colors(min(len(lines), 20))):
            line.set_color(color)
        if ax.get_legend() is not None and len(lines) <= 20:
            ax.legend(handles=lines, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax = fig.axes[0]
    loc = next((k for k in ("center", "left", "right") if ax.get_title(loc=k)), "center")  # optuna uses either
    ax.set_title(f"{ax.get_title(loc=loc)} ({n_trials} trial{'s' if n_trials != 1 else ''}, {complete} completed)"
                 + (f"\n{note}" if note else ""), loc=loc)


def write_study_results(study: optuna.Study, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write best.json, trials.csv and the PNG figures to `out_dir`; return the summary
    with `files` (name -> path) and `skipped` (figure -> reason). Each file is written
    atomically (a reader never sees half of one) but not fsynced: `--results-only`
    redraws them all from the study."""
    import matplotlib.pyplot as plt

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
            with atomic_open(path, "wb", durable=False) as f:
                figs[name].savefig(f, format="png", dpi=110, bbox_inches="tight")
            plt.close(figs[name])
            files[f"{name}.png"] = str(path)
        else:
            print(f"[hpo] {name}.png skipped: {skipped[name]}")

    summary["files"] = files
    summary["skipped"] = skipped
    best_path = out / "best.json"
    atomic_write_text(best_path, json.dumps(_json_safe(summary), indent=2, sort_keys=True) + "\n", durable=False)
    files["best.json"] = str(best_path)
    return summary


def _figure_of(ax: Any) -> Any:
    # The plot functions return an Axes, or an array of Axes for several subplots.
    import numpy as np

    if isinstance(ax, np.ndarray):
        ax = ax.flat[0]
    return ax.get_figure()


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Silence warnings that are noise for our users: Optuna's ExperimentalWarning on its
    matplotlib backend, and matplotlib's note on a zero-height axis (one completed trial
    gives a parameter axis of zero height; matplotlib widens it)."""
    with quiet_experimental(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Attempting to set identical", category=UserWarning)
        yield

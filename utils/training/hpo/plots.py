"""A study's figures, drawn in the project's style (viz/style.py, the panels' legend and
line styles), not Optuna's: the metric and its unit on the value axis, whole trial
numbers, a value axis that does not magnify noise, the smoke/synthetic caveat in the title.

Each function takes the study (and what study_figures worked out) and returns a
matplotlib Figure about 6.5 inches wide: 715 px at 110 dpi, shown at its own size in a
750-px notebook output (every text >= 8 px there, see style.text_heights).

The value axis (the objective, or a trial's reported values) spans at least
MIN_SPAN_FRACTION of the best value, centred on the data: two trials 0.005 apart at a
val_loss of 5.5 are a hair apart, not the axis' full height (Optuna's autoscale drew them
top and bottom). Wider spreads are drawn as they are. The axis label says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from utils.training.text import human, with_caveat

FIGSIZE = (6.5, 3.8)  # inches: 715 x 418 px at 110 dpi
MIN_SPAN_FRACTION = 0.05  # the value axis spans at least 5% of the best value
UNITS = {"val_loss": "nats/token", "val_bpb": "bits/byte", "val_perplexity": "tokens",
         "val_accuracy": "fraction of tokens", "train_loss": "nats/token"}
MAX_NAMED_TRIALS = 10  # trial curves named one by one in a legend up to this many


def metric_label(study: optuna.Study) -> str:
    """'val_loss (nats/token, lower is better)': the study's metric (user attribute `metric`,
    set by run_study), its unit, and its direction."""
    metric = study.user_attrs.get("metric") or "objective value"
    better = "lower" if study.direction == optuna.study.StudyDirection.MINIMIZE else "higher"
    unit = UNITS.get(metric)
    return f"{metric} ({unit + ', ' if unit else ''}{better} is better)"


def _title(study: optuna.Study, title: str) -> str:
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    return with_caveat(f"{title} ({len(trials)} trial{'s' if len(trials) != 1 else ''}, {done} completed)",
                       study.user_attrs.get("caveat", ""))


def value_limits(values: list[float], best: float, fraction: float = MIN_SPAN_FRACTION) -> tuple[float, float]:
    """(low, high) of a value axis: the data with 8% padding, widened (about its centre) to
    at least `fraction` of |best| so that a gap smaller than that stays small."""
    lo, hi = min(values), max(values)
    pad = 0.08 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    span = max(hi - lo, fraction * abs(best), 1e-12)
    mid = (lo + hi) / 2
    return mid - span / 2, mid + span / 2


def _value_axis(ax, values: list[float], best: float, study: optuna.Study) -> None:
    ax.set_ylim(*value_limits(values, best))
    ax.set_ylabel(f"{metric_label(study)}\naxis spans >= {MIN_SPAN_FRACTION:.0%} of best")


def _whole_numbers(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _last_report(t: FrozenTrial) -> tuple[int, float] | None:
    if not t.intermediate_values:
        return None
    step = max(t.intermediate_values)
    return step, t.intermediate_values[step]


def optimization_history(study: optuna.Study) -> Any:
    """The objective of each completed trial, the best so far, and where pruned trials
    stopped (their last reported value)."""
    from utils.training.viz.panels import legend
    from utils.training.viz.style import PALETTE, new_figure, place_legends

    fig = new_figure(FIGSIZE)
    ax = fig.subplots()
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [(t.number, r[1]) for t in trials if t.state == TrialState.PRUNED and (r := _last_report(t))]
    ax.plot([t.number for t in done], [t.value for t in done], "o", color=PALETTE["train"], ms=7,
            label="completed trial")
    if pruned:
        ax.plot(*zip(*pruned), "x", color=PALETTE["grad"], ms=8, mew=2, label="pruned (last report)")
    best_of = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
    xs, ys, best = [], [], None
    for t in done:
        best = t.value if best is None else best_of(best, t.value)
        xs.append(t.number)
        ys.append(best)
    ax.step(xs, ys, where="post", color=PALETTE["best"], lw=2, label=f"best so far ({best:.4g})")
    _whole_numbers(ax.xaxis)
    ax.set_xlabel("trial")
    _value_axis(ax, [t.value for t in done] + [v for _, v in pruned], best, study)
    ax.set_title(_title(study, "Objective per trial"))
    legend(ax, loc="upper right")
    place_legends(fig)
    return fig


def intermediate_values(study: optuna.Study) -> Any:
    """Each trial's reported metric at its evaluation steps: what the pruner compared.
    Up to MAX_NAMED_TRIALS trials are named in the legend (colour and line style); more are
    drawn by state (completed / pruned). A pruned trial's curve ends in an x."""
    from utils.training.viz.panels import LINESTYLES, legend
    from utils.training.viz.style import PALETTE, new_figure, place_legends, series_colors

    fig = new_figure(FIGSIZE)
    ax = fig.subplots()
    reported = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    named = len(reported) <= MAX_NAMED_TRIALS
    colors = series_colors(len(reported)) if named else []
    values = []
    for i, t in enumerate(reported):
        steps = sorted(t.intermediate_values)
        ys = [t.intermediate_values[s] for s in steps]
        values += ys
        was_pruned = t.state == TrialState.PRUNED
        if named:
            color, ls = colors[i], LINESTYLES[i % len(LINESTYLES)]
            label = f"trial {t.number}" + (" (pruned)" if was_pruned else "")
        else:
            color, ls = (PALETTE["grad"], "--") if was_pruned else (PALETTE["train"], "-")
            label = None
        ax.plot(steps, ys, ls=ls, marker="o", ms=4, color=color, label=label)
        if was_pruned:
            ax.plot([steps[-1]], [ys[-1]], "x", color=color, ms=9, mew=2)
    if not named:
        from matplotlib.lines import Line2D

        ax.legend(handles=[Line2D([], [], color=PALETTE["train"], marker="o", label="completed"),
                           Line2D([], [], color=PALETTE["grad"], ls="--", marker="o", label="pruned (x: stopped)")],
                  loc="upper right")
    best = min(values) if study.direction == optuna.study.StudyDirection.MINIMIZE else max(values)
    evaluated = sorted({s for t in reported for s in t.intermediate_values})
    if len(evaluated) <= 8:  # few evaluations: tick exactly where they were (10, 20, 30; not 9, 12, 15)
        ax.set_xticks(evaluated)
    else:
        _whole_numbers(ax.xaxis)
    ax.set_xlabel("step")
    _value_axis(ax, values, best, study)
    ax.set_title(_title(study, "Reported at each evaluation"))
    if named:
        legend(ax, loc="upper right", ncols=2 if len(reported) > 5 else 1)
    place_legends(fig)
    return fig


def param_importances(study: optuna.Study, evaluator: Any) -> Any:
    """Each searched parameter's share of the metric's variance (fANOVA), as bars."""
    from utils.training.viz.style import PALETTE, new_figure

    importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    names = list(importances)[::-1]  # the largest on top
    fig = new_figure((FIGSIZE[0], max(2.4, 1.2 + 0.45 * len(names))))
    ax = fig.subplots()
    shares = [importances[n] for n in names]
    ax.barh(names, shares, color=PALETTE["train"])
    for y, v in enumerate(shares):
        ax.annotate(f"{v:.2f}", (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"share of {study.user_attrs.get('metric') or 'objective'} variance (fANOVA)")
    ax.grid(axis="y", visible=False)
    ax.set_title(_title(study, "Parameter importance"))
    return fig


def _scaled(dist: Any, values: list) -> tuple[list[float], list[tuple[float, str]]]:
    """Values mapped to 0..1 along a parameter's axis, and (position, label) ticks:
    log-uniform parameters on a log scale, categories evenly spaced."""
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices)
        n = max(1, len(choices) - 1)
        return [choices.index(v) / n for v in values], [(i / n, str(c)) for i, c in enumerate(choices)]
    lo, hi = float(dist.low), float(dist.high)
    f = math.log10 if getattr(dist, "log", False) and lo > 0 else float
    a, b = f(lo), f(hi)
    span = (b - a) or 1.0
    if isinstance(dist, IntDistribution) and not dist.log and (hi - lo) / dist.step <= 6:
        ticks = [((v - a) / span, str(int(v))) for v in np.arange(lo, hi + dist.step / 2, dist.step)]
    else:
        mid = 10 ** ((a + b) / 2) if f is math.log10 else (lo + hi) / 2
        ticks = [(0.0, human(lo)), (0.5, human(mid)), (1.0, human(hi))]
    return [(f(float(v)) - a) / span for v in values], ticks


def parallel_coordinate(study: optuna.Study) -> Any:
    """Every completed trial as a line across the searched parameters (each axis spans the
    parameter's search range, its ends and middle labelled), coloured by the metric; the
    best trial drawn thick, in front."""
    import matplotlib
    from matplotlib.colors import ListedColormap, Normalize

    from utils.training.viz.style import new_figure

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    names = sorted({p for t in done for p in t.params})
    dists = {n: next(t.distributions[n] for t in done if n in t.distributions) for n in names}
    fig = new_figure(FIGSIZE)
    ax = fig.subplots()
    # viridis without its pale yellow end (optuna's Blues faded the best trials to white)
    cmap = ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, 256)))
    values = [t.value for t in done]
    lo, hi = value_limits(values, study.best_value)
    norm = Normalize(lo, hi)
    columns = {}
    for i, n in enumerate(names):
        ys, ticks = _scaled(dists[n], [t.params.get(n) for t in done if n in t.params])
        columns[n] = dict(zip([t.number for t in done if n in t.params], ys))
        ax.axvline(i, color="#888888", lw=1)
        for y, label in ticks:
            ax.annotate(label, (i, y), xytext=(-4, 0), textcoords="offset points", ha="right", va="center",
                        fontsize=9, color="#333333", zorder=5,
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})
    best = study.best_trial.number
    for t in sorted(done, key=lambda t: t.number == best):  # the best last: in front
        xs = [i for i, n in enumerate(names) if t.number in columns[n]]
        ys = [columns[names[i]][t.number] for i in xs]
        ax.plot(xs, ys, "-o", ms=4, color=cmap(norm(t.value)), lw=3.5 if t.number == best else 1.6)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.45, len(names) - 0.7 if len(names) > 1 else 0.45)  # room for the labels left of each axis
    ax.set_ylim(-0.08, 1.08)
    ax.set_yticks([])
    ax.grid(False)
    ax.set_xlabel("searched parameter (each axis: its search range)")
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    bar.set_label(metric_label(study))
    ax.set_title(_title(study, f"Searched parameters (thick line: best, trial {best})"))
    return fig

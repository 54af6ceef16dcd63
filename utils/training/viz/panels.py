"""The panel vocabulary: one function per kind of training chart, drawn one way in every
figure. The dashboard, the run analysis, the report and the live plot are layouts that
place these panels; a change to how loss, lr, throughput or memory is drawn is made here.

Every panel reads one `RunRecord` (tracking/run_log.py: our run logs, ExperimentDB runs,
llm-foundry logs, and the in-memory histories of the report and live plot all become one)
and draws into one axes: its title, data, axis labels with units, legend. A metric the
run did not measure keeps its panel, marked (style.no_data), so layouts stay aligned.
Nothing here imports matplotlib at module level (callbacks import it in on_train_begin).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from utils.training.text import CHINCHILLA_TOKENS_PER_PARAM, chinchilla_share, human, time_unit
from utils.training.tracking.run_record import RunRecord
from utils.training.viz.series import (
    PERPLEXITY_MAX_LOSS,
    derived_note,
    ma_window,
    moving_average,
    perplexity_points,
    points,
    run_seconds,
)
from utils.training.viz.style import PALETTE, log_axis, no_data

LINESTYLES = ("-", "--", "-.", ":")  # runs told apart by line style as well as colour
WIDE_RANGE = 20.0  # max/min loss ratio above which the loss axis goes log
# The one lr axis rule: log when the lr falls by LR_LOG_RATIO or more after its peak (peak /
# lowest value after it, all positive), linear otherwise. The decay decides, not the warmup:
# a linear warmup from ~0 spans decades in every run and would put every lr axis on log, where
# the ramp reads as a saturating curve. Not exactly a decade: the most common decay (cosine
# to 10%) reaches 10x only at its very last step, so a "> 10x" rule would flip the axis with
# where the log steps happen to fall (a 60-step smoke run logs 9.9x). A fall of 5x or more
# squeezes the tail against the floor of a linear axis; a constant lr, a warmup-only run and
# a schedule ending at 0 (log would drop that point) stay linear.
LR_LOG_RATIO = 5.0


def _curve(ax, steps, values, color: str, label: str, smooth: bool) -> None:
    """A metric's line; with `smooth`, faint under its moving average (when the run has a window)."""
    window = ma_window(steps) if smooth else 0
    ax.plot(steps, values, color=color, alpha=0.45 if window else 1.0, lw=1 if window else None, label=label)
    if window:
        ax.plot(steps, moving_average(steps, values, window), color=color, lw=2, label=f"{window}-step moving average")


def _train_and_val(ax, rec: RunRecord, metric: str, smooth: bool, missing: str):
    """train_<metric> as a curve and val_<metric> as points: returns (train, val) points
    (either may be None), or None (and the axes say `missing`) when the run logged neither."""
    train, val = points(rec, f"train_{metric}"), points(rec, f"val_{metric}", "eval")
    if train is None and val is None:
        no_data(ax, missing)
        return None
    if train is not None:
        _curve(ax, *train, PALETTE["train"], "train", smooth)
    if val is not None:
        ax.plot(*val, "o-", color=PALETTE["val"], ms=4, label="val")
    return train, val


def legend(ax, handles=None, **kwargs) -> None:
    """A legend where it names more than one series; a lone line is named by the title and
    axis label (a legend would only repeat them, and costs ~10% of a live frame to render)."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    if len(handles) > 1:
        ax.legend(handles=handles, **kwargs)


def epoch_axes(axes) -> None:
    """Relabel the step axes of a figure whose points are epochs (a loop that logs once per epoch)."""
    for ax in axes:
        if ax.get_xlabel() == "step":
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)


# -- the panels ---------------------------------------------------------------------

def loss_panel(ax, rec: RunRecord, *, smooth: bool = False, perplexity_axis: bool = False, title: str = "Loss") -> None:
    """Train loss (smoothed where the run has a window), val points, the best val marked.
    perplexity_axis: perplexity as a second scale of the same line (exp of the axis)."""
    ax.set_title(title)
    drawn = _train_and_val(ax, rec, "loss", smooth, "no loss logged")
    if drawn is None:
        return
    train, val = drawn
    best, best_step = rec.best_val()
    if best_step is not None:
        ax.plot([best_step], [best], "*", color=PALETTE["best"], ms=14, label=f"best {best:.3f} @ {best_step}")
    values = pd.concat([pts[1] for pts in (train, val) if pts is not None])
    lo, hi = float(values.min()), float(values.max())
    if not perplexity_axis and lo > 0 and hi / lo > WIDE_RANGE:
        log_axis(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)" + (", log" if ax.get_yscale() == "log" else ""))
    if perplexity_axis:  # an axis scale (perplexity = exp(loss) by definition), not a plotted series
        sec = ax.secondary_yaxis("right", functions=(lambda x: np.exp(np.clip(x, -50, PERPLEXITY_MAX_LOSS)),
                                                     lambda p: np.log(np.clip(p, 1e-12, None))))
        sec.set_ylabel("perplexity")
        perplexity_ticks(ax, sec)
    legend(ax, loc="upper right")


def perplexity_ticks(ax, sec) -> None:
    """Perplexity ticks at 1-2-5 values inside the loss range; powers of ten only when crowded."""
    from matplotlib.ticker import FixedLocator

    lo, hi = ax.get_ylim()
    lo_p, hi_p = math.exp(max(lo, -50)), math.exp(min(hi, PERPLEXITY_MAX_LOSS))
    cands = [m * 10**k for k in range(-2, 22) for m in (1, 2, 3, 5)]
    ticks = [t for t in cands if lo_p <= t <= hi_p]
    if len(ticks) > 7:
        ticks = [t for t in ticks if str(int(t)).startswith("1") or t < 1]
    sec.yaxis.set_major_locator(FixedLocator(ticks))
    sec.yaxis.set_major_formatter(lambda v, _pos: human(v))


def perplexity_panel(ax, rec: RunRecord, title: str = "Perplexity") -> None:
    """Stored train and val perplexity (exp(loss) where the run stored none), log axis."""
    ax.set_title(title)
    train, val = perplexity_points(rec), perplexity_points(rec, "eval")
    if train is None and val is None:
        no_data(ax, "no loss logged")
        return
    if train is not None:
        ax.plot(*train, color=PALETTE["train"], label="train")
    if val is not None:
        ax.plot(*val, "o-", color=PALETTE["val"], ms=4, label="val")
    log_axis(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("perplexity (log)")
    legend(ax, loc="upper right")


def lr_scale(values) -> str:
    """'log' or 'linear' for these lr values (in step order) by the one lr axis rule (LR_LOG_RATIO)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "linear"
    after_peak = v[int(np.argmax(v)):]
    if after_peak.min() <= 0:
        return "linear"
    return "log" if after_peak.max() / after_peak.min() >= LR_LOG_RATIO else "linear"


def lr_label(config: dict) -> str:
    """The logged `lr` is the first param group's: in a Muon run that is AdamW's part (the
    embeddings, head and norms, at embedding_lr), not Muon's muon_lr: the legend says so."""
    return "lr (AdamW part)" if (config or {}).get("optimizer") == "muon" else "lr"


def lr_panel(ax, rec: RunRecord, title: str = "Learning rate") -> None:
    """The lr schedule, its warmup shaded; log or linear by `lr_scale`."""
    ax.set_title(title + (" (derived from config)" if rec.lr_derived else ""))
    pts = points(rec, "lr")
    if pts is None:
        no_data(ax, "lr not logged")
        return
    ax.plot(*pts, color=PALETTE["lr"], label=lr_label(rec.config) + derived_note(rec, "lr"))
    if rec.warmup_steps:
        ax.axvspan(0, rec.warmup_steps, color=PALETTE["lr"], alpha=0.12, label=f"warmup ({rec.warmup_steps} steps)")
    scale = lr_scale(pts[1])
    if scale == "log":
        log_axis(ax)
    else:
        ax.set_yscale(scale)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate" + (" (log)" if scale == "log" else ""))
    legend(ax, loc="upper right")


def grad_norm_panel(ax, rec: RunRecord, title: str = "Gradient norm (pre-clip)") -> None:
    """Global gradient norm before clipping, with the clipping threshold kept inside the frame."""
    ax.set_title(title)
    pts = points(rec, "grad_norm")
    if pts is None:
        no_data(ax, "grad_norm not logged")
        return
    ax.plot(*pts, color=PALETTE["grad"], label="grad norm")
    clip = rec.max_grad_norm or None  # the readers give it under our name; 0: no clipping
    if clip:
        ax.axhline(clip, color=PALETTE["best"], ls="--", lw=1.2, label=f"clip at {clip:g}")
        lo, hi = ax.get_ylim()  # keep the threshold inside the frame, not on its edge
        ax.set_ylim(min(lo, 0.9 * clip), max(hi, 1.1 * clip))
    ax.set_xlabel("step")
    ax.set_ylabel("global L2 norm")
    legend(ax, loc="upper right")


def mean_panel(ax, rec: RunRecord, column: str, color: str, ylabel: str, unit: str, missing: str,
               title: str) -> None:
    """A metric from 0 with its run average as a dashed line; the average also in the title.
    The line is named by its axis label (`ylabel`), not the raw column name."""
    pts = points(rec, column)
    if pts is None:
        ax.set_title(title)
        no_data(ax, missing)
        return
    mean = float(pts[1].mean())
    ax.plot(*pts, color=color, label=ylabel.split(" (")[0] + derived_note(rec, column))
    ax.axhline(mean, color=PALETTE["best"], ls="--", lw=1.2, label=f"average {human(mean)} {unit}")
    ax.set_title(f"{title} (avg {human(mean)} {unit})")
    ax.set_ylim(0, float(pts[1].max()) * 1.1)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    legend(ax, loc="best")


def throughput_panel(ax, rec: RunRecord, *, step_time: bool = False, mean: bool = False,
                     title: str = "Throughput") -> None:
    """Tokens/s of each log interval (its steps only) from 0, labelled with the device it was
    measured on (throughput.py); `mean`: with the run's one throughput (tokens seen / wall
    time, evaluation included) as a dashed line and in the title; `step_time`: the step
    time on a second axis (title then "... and step time")."""
    from utils.training.throughput import DEFINITION, short, throughput_label
    from utils.training.viz.series import record_throughput

    ax.set_title(title)
    pts = points(rec, "tokens_per_sec")
    if pts is None:
        no_data(ax, "throughput not logged")
        return
    ax.plot(*pts, color=PALETTE["throughput"], label="per log interval" + derived_note(rec, "tokens_per_sec"))
    ax.set_ylim(0, float(pts[1].max()) * 1.3)  # headroom: a corner for the legend
    ax.set_xlabel("step")
    ax.set_ylabel(throughput_label(rec.hardware))
    run = record_throughput(rec) if mean else math.nan
    if run == run:
        ax.axhline(run, color=PALETTE["best"], ls="--", lw=1.2, label=f"run: {short(run)}")
        ax.set_title(f"{title} (run {short(run)},\n{DEFINITION})")
    handles = ax.get_lines()
    ms = points(rec, "step_time_ms") if step_time else None
    if ms is not None:
        ax.set_title(f"{ax.get_title()} and step time")
        ax2 = ax.twinx()
        ax2.plot(*ms, color=PALETTE["step_time"], lw=1, ls="--", label="step time")
        ax2.set_ylabel("step time (ms)")
        ax2.set_ylim(0, float(ms[1].max()) * 1.1)
        ax2.grid(False)
        handles = handles + ax2.get_lines()
    legend(ax, handles=handles, loc="best")


def mfu_or_step_time_panel(ax, rec: RunRecord) -> None:
    """MFU with its average; where there is none (a CPU, or a GPU of unknown peak) the
    measured step time, and the title says once why MFU is absent."""
    if rec.col("mfu_pct") is not None:
        mean_panel(ax, rec, "mfu_pct", PALETTE["train"], "MFU (% of peak bf16)", "%", "", "MFU")
        if rec.hardware.get("peak_estimated"):
            ax.set_title(ax.get_title() + "\npeak ESTIMATED: GPU not in the peak table")
        return
    ms = rec.col("step_time_ms")
    if ms is not None and float(ms.mean()) >= 1000:  # seconds read better than "1.32K ms"
        import dataclasses

        in_s = dataclasses.replace(rec, train=rec.train.assign(step_time_s=rec.train["step_time_ms"] / 1000))
        mean_panel(ax, in_s, "step_time_s", PALETTE["step_time"], "step time (s)", "s", "", "Step time")
    else:
        mean_panel(ax, rec, "step_time_ms", PALETTE["step_time"], "step time (ms)", "ms",
                   "MFU and step time not logged", "Step time")
    ax.set_title(ax.get_title() + "\n(no MFU: CPU run or unknown GPU peak)")


def memory_panel(ax, rec: RunRecord, title: str = "Memory") -> None:
    """GPU memory per GPU (allocated, peak, the card's capacity), else the process RSS; GiB."""
    ax.set_title(title)
    gpu = [(c, color, name) for c, color, name in (("memory_allocated_gb", PALETTE["memory"], "allocated"),
                                                   ("memory_peak_gb", PALETTE["peak"], "peak allocated"))
           if rec.col(c) is not None]
    if gpu:
        for c, color, name in gpu:
            ax.plot(*points(rec, c), color=color, label=name)
        cap = rec.hardware.get("gpu_memory_gib")
        if cap:
            ax.axhline(cap, color=PALETTE["capacity"], ls=":", lw=1.5, label=f"capacity {cap:.1f} GiB")
            ax.set_ylim(0, cap * 1.08)
        ax.set_ylabel("GPU memory per GPU (GiB)")
    elif rec.col("cpu_rss_gb") is not None:
        steps, rss = points(rec, "cpu_rss_gb")
        ax.plot(steps, rss, color=PALETTE["memory"], label="process RSS")
        ax.set_ylim(0, float(rss.max()) * 1.15)
        ax.set_ylabel("CPU memory (GiB)")
    else:
        no_data(ax, "memory not logged")
        return
    ax.set_xlabel("step")
    legend(ax, loc="lower right")


def system_panel(ax, rec: RunRecord, title: str = "System") -> None:
    """What the system sampler read (tracking/system_monitor.py) on one percent axis: GPU
    utilisation, and device memory used and reserved (torch) as shares of the card, with
    the last temperature and power in the title; on CPU the process's CPU use (100% = one
    core), with its resident memory in the title. The last readings are in the legend."""
    cap = rec.hardware.get("gpu_memory_gib")
    gpu = [c for c in ("gpu_util_pct", "gpu_memory_used_gb", "memory_reserved_gb") if rec.col(c) is not None]
    series = ([("gpu_util_pct", PALETTE["throughput"], "utilisation"),
               ("gpu_memory_used_gb", PALETTE["memory"], "memory used"),
               ("memory_reserved_gb", PALETTE["peak"], "reserved (torch)")] if gpu
              else [("cpu_pct", PALETTE["throughput"], "process CPU")])
    notes = []
    for column, color, name in series:
        pts = points(rec, column)
        if pts is None:
            continue
        steps, values = pts
        if column.endswith("_gb"):
            if not cap:  # no capacity known: the reading goes in the title, not on the % axis
                notes.append(f"{name} {float(values.iloc[-1]):.1f} GiB")
                continue
            name, values = f"{name} {float(values.iloc[-1]):.1f} of {cap:.0f} GiB", 100.0 * values / cap
        else:
            name = f"{name} {float(values.iloc[-1]):.0f}%"
        ax.plot(steps, values, color=color, label=name)
    for column, unit in (("gpu_temp_c", "°C"), ("gpu_power_w", "W")) if gpu else (("cpu_rss_gb", "GiB RSS"),):
        pts = points(rec, column)
        if pts is not None:
            notes.append(f"{float(pts[1].iloc[-1]):.{1 if column == 'cpu_rss_gb' else 0}f} {unit}")
    if len(ax.lines) == 1:  # a lone line gets no legend: its last reading goes in the title
        notes.insert(0, ax.lines[0].get_label())
    if not ax.lines:
        no_data(ax, "system not sampled" + (f"\n({', '.join(notes)})" if notes else ""))
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("%")
        return
    ax.set_title(title + (f" ({', '.join(notes)})" if notes else ""))
    ax.set_ylim(0, max(105.0, float(max(line.get_ydata().max() for line in ax.lines)) * 1.05))
    ax.set_xlabel("step")
    ax.set_ylabel("% (memory: of the card)" if gpu else "% of one core")
    legend(ax, loc="lower right")


def tokens_panel(ax, rec: RunRecord, title: str = "Tokens vs Chinchilla-optimal") -> None:
    """Tokens seen (log) against 20 tokens per parameter; the share in the title, written as
    the summary card writes it."""
    ax.set_title(title)
    pts = points(rec, "tokens_seen")
    if pts is None:
        no_data(ax, "tokens_seen not logged")
        return
    ax.plot(*pts, color=PALETTE["train"], label="tokens seen" + derived_note(rec, "tokens_seen"))
    ax.set_xlabel("step")
    ax.set_ylabel("tokens (log)")
    log_axis(ax)
    if not math.isnan(rec.n_params):
        target = CHINCHILLA_TOKENS_PER_PARAM * rec.n_params
        seen = float(pts[1].iloc[-1])
        ax.axhline(target, color=PALETTE["target"], ls="--", lw=1.2, label=f"20 tokens/param = {human(target)}")
        ax.set_title(f"{title} ({chinchilla_share(seen, rec.n_params)}: {human(seen)} of {human(target)})")
    legend(ax, loc="lower right")


def accuracy_panel(ax, rec: RunRecord, *, smooth: bool = False, title: str = "Accuracy") -> None:
    """Next-token accuracy, train (smoothed where the run has a window) and val points."""
    ax.set_title(title)
    if _train_and_val(ax, rec, "accuracy", smooth, "accuracy not logged") is None:
        return
    ax.set_xlabel("step")
    ax.set_ylabel("next-token accuracy (fraction)")
    legend(ax, loc="lower right")


# -- panels of several runs (one colour per run, style.series_colors) ----------------

def runs_loss_panel(ax, records, labels, colors, x: str = "tokens_seen", title: str = "Loss") -> None:
    """Train loss of each run against tokens seen (log axis) or wall time (`x="elapsed_s"`,
    in s/min/h; log where a minutes-long run sits next to a day-long one)."""
    div, unit, derived = 1.0, "", False
    if x == "elapsed_s":
        ends = [float(r.train["elapsed_s"].max()) for r in records if r.col("elapsed_s") is not None]
        div, unit = time_unit(max(ends, default=0.0))
        if ends and max(ends) > 100 * min(ends) > 0:
            log_axis(ax, "x")
            unit += ", log"
    for i, (rec, label, color) in enumerate(zip(records, labels, colors)):
        tr = rec.train.dropna(subset=["train_loss"]) if "train_loss" in rec.train else rec.train.iloc[0:0]
        if x in tr:
            ax.plot(tr[x] / div if div != 1.0 else tr[x], tr["train_loss"], color=color, label=label,
                    ls=LINESTYLES[i % len(LINESTYLES)])  # as in the figure's legend
            derived |= x in rec.derived
            end = run_seconds(rec) if x == "elapsed_s" else None
            if end is not None and len(tr):  # the run's wall time: evaluation and saving after the last log
                ax.plot([end / div], [float(tr["train_loss"].iloc[-1])], "|", ms=14, mew=2, color=color)
    if x == "elapsed_s":
        ax.set_title(title + (" (derived for llm-foundry logs)" if derived else ""))
        ax.set_xlabel(f"wall time ({unit}; | = end of run)")
    else:
        ax.set_title(title)
        log_axis(ax, "x")
        ax.set_xlabel("tokens seen (log)")
    ax.set_ylabel("train loss (nats/token)")


def bars_panel(ax, values, colors, title: str, ylabel: str) -> None:
    """One bar per run, numbered as in the figure's legend, its value written above it (n/a: not measured)."""
    values = np.asarray(values, dtype=float)
    x = np.arange(len(values))
    ax.bar(x, np.nan_to_num(values), color=colors)
    for xi, v in zip(x, values):
        ax.annotate("n/a" if np.isnan(v) else human(v), (xi, 0 if np.isnan(v) else v), ha="center",
                    va="bottom", fontsize=9, xytext=(0, 2), textcoords="offset points")
    ax.margins(y=0.12)  # room for the value above the tallest bar
    ax.set_xticks(x, [str(i + 1) for i in x])
    ax.set_xlabel("run (numbered as in the legend below)")
    ax.set_title(title)
    ax.set_ylabel(ylabel)

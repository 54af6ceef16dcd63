"""Per-run analysis (six panels) and comparison across runs (figure + summary table).

Reads only `RunRecord` (run_log.py), so our run logs, ExperimentDB runs and the
llm-foundry logs plot the same way. Model names and sizes come from the record.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from utils.training.tracking.run_record import RunRecord
from utils.training.viz.style import (
    CHINCHILLA_TOKENS_PER_PARAM,
    PALETTE,
    chinchilla_share,
    human,
    new_figure,
    no_data,
    place_legends,
    save_figure,
    series_colors,
    time_unit,
    with_caveat,
)

PLOT_RUN_TITLES = ("Loss", "Learning rate", "Tokens vs Chinchilla-optimal", "MFU", "Throughput", "Memory")


def _derived(rec: RunRecord, column: str) -> str:
    return " (derived)" if column in rec.derived else ""


def run_seconds(rec: RunRecord) -> float | None:
    """The run's wall time: the trainer's total (database/run log summary), else the last
    logged elapsed_s. The printed summary line, the progress bar, the dashboard and the
    comparison all show this one number."""
    total = rec.summary.get("total_time")
    if total is not None and total == total:
        return float(total)
    elapsed = rec.col("elapsed_s")
    return float(elapsed.dropna().iloc[-1]) if elapsed is not None else None


def run_title(rec: RunRecord) -> str:
    """'llama-1.36b · llama · 1.29B params · 2x NVIDIA RTX A6000 · run_2025...'"""
    parts = [rec.label]
    if rec.model.get("family") and rec.model["family"] != rec.label:
        parts.append(str(rec.model["family"]))
    if not math.isnan(rec.n_params):
        parts.append(f"{human(rec.n_params)} params")
    hw = rec.hardware
    if hw.get("gpu_name"):
        parts.append(f"{hw.get('n_gpus') or 1}x {hw['gpu_name']}")
    elif hw.get("device"):
        parts.append(str(hw["device"]))
    if rec.name != rec.label:
        parts.append(rec.name)
    return " · ".join(parts)


def plot_run(record: RunRecord, out_path=None, dpi: int | None = None):
    """Six panels of one run: loss (+perplexity), lr, tokens vs Chinchilla, MFU, throughput, memory."""
    fig = new_figure((13, 7.5))
    axes = fig.subplots(2, 3).ravel()
    fig.suptitle(with_caveat(run_title(record), record.caveat), fontsize=12)
    tr, ev = record.train, record.eval

    ax = axes[0]
    ax.set_title(PLOT_RUN_TITLES[0])
    if record.col("train_loss") is not None:
        ax.plot(tr["step"], tr["train_loss"], color=PALETTE["train"], label="train")
    if record.col("val_loss", "eval") is not None:
        ax.plot(ev["step"], ev["val_loss"], "o", color=PALETTE["val"], ms=6, label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    # Perplexity = exp(loss): a second scale on the same line, not a second series.
    sec = ax.secondary_yaxis("right", functions=(lambda x: np.exp(np.clip(x, -50, 50)), lambda p: np.log(np.clip(p, 1e-12, None))))
    sec.set_ylabel("perplexity")
    perplexity_ticks(ax, sec)
    ax.legend(loc="upper right")

    ax = axes[1]
    ax.set_title(PLOT_RUN_TITLES[1] + (" (derived from config)" if record.lr_derived else ""))
    if record.col("lr") is not None:
        ax.plot(tr["step"], tr["lr"], color=PALETTE["lr"], label="lr" + _derived(record, "lr"))
        ax.set_yscale("log")
        if record.warmup_steps:
            ax.axvline(record.warmup_steps, color=PALETTE["capacity"], ls="--", lw=1,
                       label=f"warmup end (step {record.warmup_steps})")
        ax.legend(loc="lower right")
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate (log)")
    else:
        no_data(ax, "lr not logged")

    ax = axes[2]
    ax.set_title(PLOT_RUN_TITLES[2])
    if record.col("tokens_seen") is not None:
        ax.plot(tr["step"], tr["tokens_seen"], color=PALETTE["train"], label="tokens seen" + _derived(record, "tokens_seen"))
        ax.set_xlabel("step")
        ax.set_ylabel("tokens (log)")
        ax.set_yscale("log")
        if not math.isnan(record.n_params):
            target = CHINCHILLA_TOKENS_PER_PARAM * record.n_params
            seen = float(tr["tokens_seen"].dropna().iloc[-1])
            ax.axhline(target, color=PALETTE["target"], ls="--", lw=1.2, label=f"20 tokens/param = {human(target)}")
            # The share goes in the title (the summary card writes it the same way);
            # place_legends keeps the legend off the curve and the target line.
            ax.set_title(f"{PLOT_RUN_TITLES[2]} ({chinchilla_share(seen, record.n_params)}: "
                         f"{human(seen)} of {human(target)})")
        ax.legend(loc="lower right")
    else:
        no_data(ax, "tokens_seen not logged")

    ax = axes[3]
    if record.col("mfu_pct") is not None:
        _series_with_mean(ax, record, "mfu_pct", PALETTE["train"], "MFU (% of peak bf16)", "%", "")
        ax.set_title(PLOT_RUN_TITLES[3] + ax.get_title())
        if record.hardware.get("peak_estimated"):
            ax.set_title(ax.get_title() + "\npeak ESTIMATED: GPU not in the peak table")
    else:
        # No MFU on a CPU (or a GPU of unknown peak): the space shows the step time, measured,
        # and the title says once why MFU is absent.
        ms = record.col("step_time_ms")
        if ms is not None and float(ms.mean()) >= 1000:  # seconds read better than "1.32K ms"
            import dataclasses

            in_s = dataclasses.replace(record, train=record.train.assign(step_time_s=record.train["step_time_ms"] / 1000))
            _series_with_mean(ax, in_s, "step_time_s", PALETTE["step_time"], "step time (s)", "s", "")
        else:
            _series_with_mean(ax, record, "step_time_ms", PALETTE["step_time"], "step time (ms)", "ms",
                              "MFU and step time not logged")
        ax.set_title("Step time" + ax.get_title() + "\n(no MFU: CPU run or unknown GPU peak)")

    ax = axes[4]
    _series_with_mean(ax, record, "tokens_per_sec", PALETTE["throughput"], "tokens/s (all GPUs)", "tokens/s",
                      "throughput not logged")
    ax.set_title(PLOT_RUN_TITLES[4] + ax.get_title())

    ax = axes[5]
    ax.set_title(PLOT_RUN_TITLES[5])
    memory_panel(ax, record)
    place_legends(fig)

    if out_path is not None:
        save_figure(fig, out_path, dpi=dpi)
    return fig


def perplexity_ticks(ax, sec) -> None:
    """Perplexity ticks at 1-2-5 values inside the loss range; powers of ten only when crowded."""
    from matplotlib.ticker import FixedLocator

    lo, hi = ax.get_ylim()
    lo_p, hi_p = math.exp(max(lo, -50)), math.exp(min(hi, 50))
    cands = [m * 10**k for k in range(-2, 22) for m in (1, 2, 3, 5)]
    ticks = [t for t in cands if lo_p <= t <= hi_p]
    if len(ticks) > 7:
        ticks = [t for t in ticks if str(int(t)).startswith("1") or t < 1]
    sec.yaxis.set_major_locator(FixedLocator(ticks))
    sec.yaxis.set_major_formatter(lambda v, _pos: human(v))


def _series_with_mean(ax, rec: RunRecord, col: str, color: str, ylabel: str, unit: str, missing: str) -> None:
    s = rec.col(col)
    if s is None:
        no_data(ax, missing)
        return
    tr = rec.train.dropna(subset=[col])
    mean = float(tr[col].mean())
    ax.plot(tr["step"], tr[col], color=color, label=col + _derived(rec, col))
    ax.axhline(mean, color=PALETTE["best"], ls="--", lw=1.2, label=f"average {human(mean)} {unit}")
    ax.set_title(f" (avg {human(mean)} {unit})")
    ax.set_ylim(0, float(tr[col].max()) * 1.1)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")


def memory_panel(ax, rec: RunRecord) -> None:
    tr = rec.train
    gpu_cols = [c for c in ("memory_allocated_gb", "memory_peak_gb") if rec.col(c) is not None]
    if gpu_cols:
        for c, color, name in (("memory_allocated_gb", PALETTE["memory"], "allocated"),
                               ("memory_peak_gb", PALETTE["peak"], "peak allocated")):
            if c in gpu_cols:
                d = tr.dropna(subset=[c])
                ax.plot(d["step"], d[c], color=color, label=name)
        cap = rec.hardware.get("gpu_memory_gib")
        if cap:
            ax.axhline(cap, color=PALETTE["capacity"], ls=":", lw=1.5, label=f"capacity {cap:.1f} GiB")
            ax.set_ylim(0, cap * 1.08)
        ax.set_ylabel("GPU memory per GPU (GiB)")
    elif rec.col("cpu_rss_gb") is not None:
        d = tr.dropna(subset=["cpu_rss_gb"])
        ax.plot(d["step"], d["cpu_rss_gb"], color=PALETTE["memory"], label="process RSS")
        ax.set_ylim(0, float(d["cpu_rss_gb"].max()) * 1.15)
        ax.set_ylabel("CPU memory (GiB)")
    else:
        no_data(ax, "memory not logged")
        return
    ax.set_xlabel("step")
    ax.legend(loc="lower right")


# -- comparison --------------------------------------------------------------

COMPARE_TITLES = ("Loss vs tokens", "Loss vs wall time", "Best val loss", "Mean MFU", "Mean throughput", "Wall time")


def _labels(records) -> list[str]:
    """Legend names: the run's model name, with the run name added where two share one."""
    base = [r.label for r in records]
    return [f"{b} ({r.name})" if base.count(b) > 1 else b for b, r in zip(base, records)]


def summary_table(records) -> pd.DataFrame:
    rows = []
    for rec, label in zip(records, _labels(records)):
        tr = rec.train
        best, best_step = rec.best_val()
        def last(c, rec=rec):
            return float(rec.train[c].dropna().iloc[-1]) if rec.col(c) is not None else math.nan

        def mean(c, rec=rec):
            return float(rec.train[c].mean()) if rec.col(c) is not None else math.nan

        tokens = last("tokens_seen")
        rows.append({
            "run": label,
            "source": rec.source,
            "family": rec.model.get("family"),
            "n_params": rec.n_params,
            "hardware": (f"{rec.hardware.get('n_gpus') or 1}x {rec.hardware['gpu_name']}" if rec.hardware.get("gpu_name")
                         else rec.hardware.get("device") or "unknown"),
            "steps": int(tr["step"].max()) if len(tr) else 0,
            "tokens_seen": tokens,
            "chinchilla_pct": 100 * tokens / (CHINCHILLA_TOKENS_PER_PARAM * rec.n_params),
            "note": rec.caveat,
            "final_train_loss": last("train_loss"),
            "best_val_loss": best,
            "best_step": best_step if best_step is not None else pd.NA,
            "mean_mfu_pct": mean("mfu_pct"),
            "mean_tokens_per_sec": mean("tokens_per_sec"),
            "wall_time_h": (run_seconds(rec) or math.nan) / 3600,
            "status": rec.status,
            "lr_derived": rec.lr_derived,
        })
    return pd.DataFrame(rows)


def compare_runs(records, out_path=None, dpi: int | None = None):
    """(Figure, DataFrame): loss vs tokens and vs wall time, best val loss, MFU and throughput per run."""
    records = list(records)
    df = summary_table(records)
    labels = list(df["run"])
    colors = series_colors(len(records))  # one colour per run
    fig = new_figure((13, 8))
    gs = fig.add_gridspec(2, 6)
    ax_tok, ax_time = fig.add_subplot(gs[0, :3]), fig.add_subplot(gs[0, 3:])
    bars = [fig.add_subplot(gs[1, 2 * i:2 * i + 2]) for i in range(3)]
    title = f"Comparison of {len(records)} run{'s' if len(records) != 1 else ''}"
    notes = {r.caveat for r in records}
    if len(notes) == 1 and "" not in notes:
        title += f"\n{'all runs' if len(records) > 1 else 'the run'}: {notes.pop()}"
    elif notes - {""}:
        title += "\n" + "; ".join(f"run {i + 1}: {r.caveat}" for i, r in enumerate(records) if r.caveat)
    fig.suptitle(title, fontsize=12)

    longest = max((float(r.train["elapsed_s"].max()) for r in records if r.col("elapsed_s") is not None), default=0.0)
    div, unit = time_unit(longest)
    any_derived_time = False
    for rec, label, color in zip(records, labels, colors):
        tr = rec.train.dropna(subset=["train_loss"]) if "train_loss" in rec.train else rec.train.iloc[0:0]
        if "tokens_seen" in tr:
            ax_tok.plot(tr["tokens_seen"], tr["train_loss"], color=color, label=label)
        if "elapsed_s" in tr:
            ax_time.plot(tr["elapsed_s"] / div, tr["train_loss"], color=color, label=label)
            any_derived_time |= "elapsed_s" in rec.derived
    ax_tok.set_title(COMPARE_TITLES[0])
    ax_tok.set_xscale("log")
    ax_tok.set_xlabel("tokens seen (log)")
    ax_tok.set_ylabel("train loss (nats/token)")
    ax_time.set_title(COMPARE_TITLES[1] + (" (derived for llm-foundry logs)" if any_derived_time else ""))
    ends = [float(r.train["elapsed_s"].max()) / div for r in records if r.col("elapsed_s") is not None]
    if ends and max(ends) > 100 * min(ends) > 0:  # a minutes-long run next to a day-long one
        ax_time.set_xscale("log")
        unit += ", log"
    ax_time.set_xlabel(f"wall time ({unit})")
    ax_time.set_ylabel("train loss (nats/token)")

    bar_cols = ["best_val_loss", "mean_mfu_pct", "mean_tokens_per_sec"]
    bar_titles = list(COMPARE_TITLES[2:5])
    bar_labels = ["val loss (nats/token)", "MFU (% of peak)", "tokens/s (all GPUs)"]
    if df["mean_mfu_pct"].isna().all():  # no MFU anywhere (CPU runs): show the wall time instead
        df["wall_time_s"] = df["wall_time_h"] * 3600
        bar_cols[1], bar_titles[1] = "wall_time_s", COMPARE_TITLES[5] + " of each run (no run measured MFU)"
        bar_labels[1] = "wall time (s)"
    for ax, col, title, ylabel in zip(bars, bar_cols, bar_titles, bar_labels):
        values = df[col].to_numpy(dtype=float)
        x = np.arange(len(values))
        ax.bar(x, np.nan_to_num(values), color=colors)
        for xi, v in zip(x, values):
            ax.annotate("n/a" if np.isnan(v) else human(v), (xi, 0 if np.isnan(v) else v), ha="center",
                        va="bottom", fontsize=9, xytext=(0, 2), textcoords="offset points")
        ax.margins(y=0.12)  # room for the value above the tallest bar
        ax.set_xticks(x, [str(i + 1) for i in x])
        ax.set_xlabel("run (numbered as in the legend above)")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    # Bars are numbered; the legend maps numbers to runs once instead of rotated tick labels.
    # Runs without tokens_seen (imported from the seed's database) have lines on the time axis only.
    legend_ax = ax_tok if ax_tok.get_lines() else ax_time
    if legend_ax.get_lines():
        legend_ax.legend(handles=legend_ax.get_lines(), labels=[f"{i + 1}. {lb}" for i, lb in enumerate(labels)])
    place_legends(fig)
    if "wall_time_s" in df:
        df = df.drop(columns="wall_time_s")
    if out_path is not None:
        save_figure(fig, out_path, dpi=dpi)
    return fig, df


def _md_cell(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:,.4g}" if abs(v) < 1e6 else human(v)
    return str(v).replace("|", "\\|")


def write_summary_table(df: pd.DataFrame, csv_path, md_path) -> tuple[Path, Path]:
    """The comparison table as CSV (full precision) and Markdown (4 significant digits)."""
    csv_path, md_path = Path(csv_path), Path(md_path)
    for p in (csv_path, md_path):
        p.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv_path, index=False)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path

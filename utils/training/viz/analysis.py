"""Per-run analysis (six panels) and comparison across runs (figure + summary table).

Reads only `RunRecord` (run_log.py), so our run logs, ExperimentDB runs and the
llm-foundry logs plot the same way. Model names and sizes come from the record.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from utils.training.text import CHINCHILLA_TOKENS_PER_PARAM, human, with_caveat
from utils.training.throughput import DEFINITION, throughput_label
from utils.training.tracking.run_record import RunRecord
from utils.training.viz.panels import (  # noqa: F401 - memory_panel, perplexity_ticks: re-exported
    LINESTYLES,
    bars_panel,
    loss_panel,
    lr_panel,
    memory_panel,
    mfu_or_step_time_panel,
    perplexity_ticks,
    runs_loss_panel,
    throughput_panel,
    tokens_panel,
)
from utils.training.viz.series import record_throughput, run_seconds
from utils.training.viz.style import new_figure, place_legends, save_figure, series_colors

PLOT_RUN_TITLES = ("Loss", "Learning rate", "Tokens vs Chinchilla-optimal", "MFU", "Throughput", "Memory")


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
    """Six panels of one run: loss (+perplexity scale), lr, tokens vs Chinchilla, MFU (or the
    step time where there is none), throughput, memory."""
    fig = new_figure((9.5, 10))  # two panels a row: readable 750 px wide (style.DISPLAY_WIDTH_PX)
    axes = fig.subplots(3, 2).ravel()
    fig.suptitle(with_caveat(run_title(record), record.caveat), fontsize=12)
    loss_panel(axes[0], record, perplexity_axis=True, title=PLOT_RUN_TITLES[0])
    lr_panel(axes[1], record, title=PLOT_RUN_TITLES[1])
    tokens_panel(axes[2], record, title=PLOT_RUN_TITLES[2])
    mfu_or_step_time_panel(axes[3], record)
    throughput_panel(axes[4], record, mean=True, title=PLOT_RUN_TITLES[4])
    memory_panel(axes[5], record, title=PLOT_RUN_TITLES[5])
    place_legends(fig)
    if out_path is not None:
        save_figure(fig, out_path, dpi=dpi)
    return fig


# -- comparison --------------------------------------------------------------

COMPARE_TITLES = ("Loss vs tokens", "Loss vs wall time", "Best val loss", "Mean MFU", "Throughput", "Wall time")


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
            "tokens_per_sec": record_throughput(rec),  # tokens seen / wall time (throughput.py)
            "wall_time_s": run_seconds(rec) or math.nan,
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
    one = len(records) == 1  # nothing to compare: a short text row instead of three single bars
    fig = new_figure((9.5, 6.5 if one else 8.5))  # readable 750 px wide (style.DISPLAY_WIDTH_PX)
    gs = fig.add_gridspec(2, 6, height_ratios=[1, 0.45 if one else 1])
    ax_tok, ax_time = fig.add_subplot(gs[0, :3]), fig.add_subplot(gs[0, 3:])
    # One run has nothing to compare: its numbers as text, not three single full-width bars.
    bars = ([fig.add_subplot(gs[1, 2 * i:2 * i + 2]) for i in range(3)] if len(records) > 1
            else [fig.add_subplot(gs[1, :])])
    title = f"Comparison of {len(records)} run{'s' if len(records) != 1 else ''}"
    notes = {r.caveat for r in records}
    if len(notes) == 1 and "" not in notes:
        title += f"\n{'all runs' if len(records) > 1 else 'the run'}: {notes.pop()}"
    elif notes - {""}:
        title += "\n" + "; ".join(f"run {i + 1}: {r.caveat}" for i, r in enumerate(records) if r.caveat)
    fig.suptitle(title, fontsize=12)

    runs_loss_panel(ax_tok, records, labels, colors, "tokens_seen", COMPARE_TITLES[0])
    runs_loss_panel(ax_time, records, labels, colors, "elapsed_s", COMPARE_TITLES[1])
    bar_cols = ["best_val_loss", "mean_mfu_pct", "tokens_per_sec"]
    bar_titles = list(COMPARE_TITLES[2:5])
    bar_titles[2] += f"\n({DEFINITION})"
    devices = {throughput_label(r.hardware) for r in records}
    bar_labels = ["val loss (nats/token)", "MFU (% of peak)", devices.pop() if len(devices) == 1
                  else "tokens/s (devices differ: see table)"]
    if df["mean_mfu_pct"].isna().all():  # no MFU anywhere (CPU runs): show the wall time instead
        bar_cols[1], bar_titles[1] = "wall_time_s", COMPARE_TITLES[5] + "\n(no run measured MFU)"
        bar_labels[1] = "wall time (s)"
    if len(records) == 1:
        one_run_panel(bars[0], df.iloc[0], bar_labels[2])
    else:
        for ax, col, title, ylabel in zip(bars, bar_cols, bar_titles, bar_labels):
            bars_panel(ax, df[col], colors, title, ylabel)
    # Bars are numbered; one legend for the figure maps numbers to runs (instead of rotated
    # tick labels), under the figure: inside an axes, 7 long run names had nowhere to go.
    # Its handles are per run, not the lines of one axes: a run without tokens_seen (the
    # seed's database) has a line on the time axis only, and numbering must not shift.
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], color=c, ls=LINESTYLES[i % len(LINESTYLES)]) for i, c in enumerate(colors)],
               labels=[f"{i + 1}. {lb}" for i, lb in enumerate(labels)],
               loc="outside lower center", ncols=min(len(labels), 3))
    place_legends(fig)
    if out_path is not None:
        save_figure(fig, out_path, dpi=dpi)
    return fig, df


def one_run_panel(ax, row, throughput_unit: str) -> None:
    """The comparison of a lone run: nothing to compare yet; the numbers the bars would show."""
    def num(v, fmt):
        return "n/a" if v != v else fmt.format(v)

    ax.axis("off")
    ax.set_title("Nothing to compare yet: one run in this workspace")
    lines = [f"best val loss: {num(row['best_val_loss'], '{:.4g}')} nats/token",
             f"throughput: {num(row['tokens_per_sec'], '{:,.0f}')} {throughput_unit} ({DEFINITION})",
             f"wall time: {num(row['wall_time_s'], '{:.1f}')} s"]
    if row["mean_mfu_pct"] == row["mean_mfu_pct"]:
        lines.append(f"mean MFU: {row['mean_mfu_pct']:.3g}% of peak")
    ax.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", transform=ax.transAxes, fontsize=11,
            linespacing=1.6)


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

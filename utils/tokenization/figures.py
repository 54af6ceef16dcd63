"""Figures of the tokenizer tutorial: the comparison dashboard (nine views in three
figures of three panels, readable at notebook width), the training comparison and the
pipeline timeline. Every function draws measured data it is given, saves a PNG at 300 dpi
and returns a plain-text version of the same numbers (the text fallback). The style,
colours and saving are the training figures' own (utils/training/viz/style.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from utils.training.viz import style
from utils.training.viz.style import (
    EXPORT_DPI,
    log_axis,
    new_figure,
    place_legends,
    series_colors,
)

DPI = EXPORT_DPI
# Inches: 9-point ticks stay ~9.2 px tall when the PNG is shown 750 px wide (JupyterLab with
# its file browser open, style.DISPLAY_WIDTH_PX); 14 inches gave 6.6 px. Two panels a row.
WIDTH = 10.0
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "d", "H", "8", "1", "2", "3", "4", "+")


def save_figure(fig, path: str | Path, text: str | None = None) -> Path:
    """PNG at 300 dpi; the text fallback next to it as .txt."""
    path = style.save_figure(fig, path, dpi=DPI)  # the shared writer; this wrapper adds the .txt
    if text is not None:
        path.with_suffix(".txt").write_text(text + "\n")
    return path


def _barh(ax, labels, values, title, xlabel, fmt="{:,.0f}", colors=None, log=False):
    """Bars from 0 on a linear axis; on a log axis (no zero to start from) dots, each with a
    faint guide line, so no length starts at an arbitrary axis limit."""
    y = np.arange(len(labels))
    if log:
        ax.hlines(y, 0, 1, transform=ax.get_yaxis_transform(), colors="#dddddd", lw=0.8)
        ax.scatter(values, y, c=colors, s=45, zorder=3)
        log_axis(ax, "x")
    else:
        ax.barh(y, values, color=colors)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    for yi, v in zip(y, values):
        if np.isfinite(v):
            ax.text(v, yi, " " + fmt.format(v), va="center", fontsize=9)
    ax.margins(x=0.3)


def tokenizer_colors(names: list[str]) -> dict[str, str]:
    """One colour per tokenizer (not per family), the same in every figure of the tutorial."""
    return dict(zip(names, series_colors(len(names))))


def tokenizer_markers(names: list[str]) -> dict[str, str]:
    """One marker per tokenizer as well: 12 lines are told apart without colour alone."""
    return dict(zip(names, MARKERS))


def _tokenizer_legend(fig, color_of: dict[str, str]) -> None:
    """One legend for the figure, under it: a colour and marker per tokenizer, none inside a panel."""
    from matplotlib.lines import Line2D

    marker_of = tokenizer_markers(list(color_of))
    handles = [Line2D([], [], color=c, marker=marker_of[n], label=n) for n, c in color_of.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), frameon=False)


def _contrast(rgba) -> str:
    """Black or white, whichever reads on a cell of colour `rgba` (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def dashboard(df, measurements, buckets, impact, path, medical="medical test", control="control",
              reference="gpt2", memory_label="batch of records at p95 length", price_model="GPT-3.5 Turbo",
              note: str = ""):
    """The nine views in three figures (token counts; what the tokens are; what they cost),
    saved as PATH_1.png, PATH_2.png, PATH_3.png with the text version at PATH.txt.
    df: measure_zoo rows; buckets: bucket_table; impact: impact_table. Returns (figures, text)."""
    from matplotlib.colors import Normalize

    from utils.tokenization.impact import PRICE_SOURCE, PRICES

    med = df[df.text == medical].set_index("tokenizer")
    ctl = df[df.text == control].set_index("tokenizer")
    names = list(med.index)
    color_of = tokenizer_colors(names)
    colors = [color_of[n] for n in names]
    marker_of = tokenizer_markers(names)
    row = max(3.2, 0.3 * len(names) + 1.0)  # one row of panels
    where = (f"measured in this run on {med['docs'].iloc[0]:,} held-out medical records and "
             f"{ctl['docs'].iloc[0]:,} control paragraphs")
    figs = []

    # -- figure 1: how many tokens ------------------------------------------------------
    fig = new_figure((WIDTH, 2 * row + 1.6))
    gs = fig.add_gridspec(2, 2)
    axes = [fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, :])]
    fig.suptitle(f"Tokenizers 1/3: how many tokens\n({where})" + (f"\n{note}" if note else ""))
    ax = axes[0]
    y = np.arange(len(names))
    # Dots on the log axis (no zero for a bar to start from), as _barh draws log panels.
    ax.hlines(y, 0, 1, transform=ax.get_yaxis_transform(), colors="#dddddd", lw=0.8)
    ax.scatter(ctl.loc[names, "tokens"], y, s=40, color="#999999", marker="s", zorder=3, label=control)
    ax.scatter(med.tokens, y, s=45, c=colors, zorder=4, label=medical)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    log_axis(ax, "x")
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("tokens (log)")
    ax.set_title(f"1. Total tokens\n(dot: {medical}; grey square: {control})")

    ax = axes[1]
    for n in names:
        ax.plot(range(buckets.shape[1]), buckets.loc[n], marker=marker_of[n], color=color_of[n], label=n, lw=1.4)
    ax.set_xticks(range(buckets.shape[1]), [str(c).replace(" (", "\n(") for c in buckets.columns])
    log_axis(ax)
    ax.set_ylabel("mean tokens per record (log)")
    ax.set_title("2. Tokens per record\nby record length")

    ax = axes[2]
    cols = list(buckets.columns)
    mat = buckets[cols].div(buckets.loc[reference, cols], axis=1)
    mat.columns = [str(c).split(" (")[0] for c in cols]
    mat["all medical"] = med.tokens / med.loc[reference, "tokens"]
    mat["control"] = ctl.loc[names, "tokens"] / ctl.loc[reference, "tokens"]
    pct = (mat.loc[names] - 1) * 100
    lo, hi = float(np.nanmin(pct.values)), float(np.nanmax(pct.values))
    # One symmetric scale: a colour means the same size of change on both sides of 0 (same
    # count as the reference), and covers every cell (a two-slope scale painted -19% as dark
    # as +402%).
    span = max(abs(lo), abs(hi), 1.0)
    norm = Normalize(vmin=-span, vmax=span)
    im = ax.imshow(pct.values, cmap="RdYlGn_r", norm=norm, aspect="auto")
    ax.set_xticks(range(pct.shape[1]), pct.columns)
    ax.set_yticks(range(len(names)), names)
    ax.grid(False)
    for i in range(pct.shape[0]):
        for j in range(pct.shape[1]):
            v = pct.values[i, j]
            ax.text(j, i, f"{v:+.0f}%", ha="center", va="center", fontsize=9, color=_contrast(im.cmap(norm(v))))
    ax.set_title(f"3. Token count vs {reference} (green = fewer)")
    fig.colorbar(im, ax=ax, fraction=0.05, label=f"% more tokens\nthan {reference}")
    _tokenizer_legend(fig, color_of)
    figs.append(fig)

    # -- figure 2: what the tokens are --------------------------------------------------
    fig = new_figure((WIDTH, 2 * row + 1.6))
    gs = fig.add_gridspec(2, 2)
    axes = [fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, :])]
    fig.suptitle(f"Tokenizers 2/3: what the tokens are ({medical} text)" + (f"\n{note}" if note else ""))
    ax = axes[0]
    for n in names:
        if med.loc[n, "family"] in ("char", "byte"):
            continue  # always one character: a spike at 1 that would flatten the rest
        hist = measurements[(n, medical)].token_lengths
        total = sum(hist.values())
        ks = sorted(k for k in hist if k <= 16)
        ax.plot(ks, [hist[k] / total for k in ks], marker=marker_of[n], ms=4, color=color_of[n], label=n, lw=1.4)
    ax.set_xlabel("characters per token")
    ax.set_ylabel("share of tokens")
    ax.set_title("4. Token lengths\n(chars, bytes: all 1, not drawn)")

    ax = axes[1]
    parts = ax.boxplot([measurements[(n, medical)].per_doc_tokens for n in names], orientation="horizontal",
                       showfliers=False, patch_artist=True,
                       medianprops={"color": "black", "lw": 2})  # a median that shows on orange and yellow
    for box, c in zip(parts["boxes"], colors):
        box.set_facecolor(c)
        box.set_alpha(0.7)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.invert_yaxis()
    log_axis(ax, "x")
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("tokens per record (log)")
    ax.set_title("5. Tokens per record")

    ax = axes[2]
    ax.axis("off")
    cells = [[n, f"{med.loc[n, 'fertility']:.2f}", f"{med.loc[n, 'bytes_per_token']:.2f}",
              f"{med.loc[n, 'split_word_share']:.0%}", f"{med.loc[n, 'unk_rate']:.1%}",
              f"{ctl.loc[n, 'bytes_per_token']:.2f}"] for n in names]
    table = ax.table(cellText=cells, colLabels=["tokenizer", "tok/word", "bytes/tok", "split", "unk",
                                                 "ctl b/tok"], loc="center", cellLoc="center",
                     colWidths=[0.3, 0.14, 0.15, 0.12, 0.13, 0.16])
    table.auto_set_font_size(False)
    table.set_fontsize(9.5)
    table.scale(1, 1.3)
    ax.set_title("6. Summary (medical text; last column: control text)")
    _tokenizer_legend(fig, color_of)
    figs.append(fig)

    # -- figure 3: what they cost --------------------------------------------------------
    imp = impact.set_index("tokenizer").loc[names]
    records = float(imp.total_tokens_m.iloc[0] * 1e6 / imp.tokens_per_record.iloc[0])
    price = PRICES[price_model]
    cl100k = [n for n in names if "cl100k" in n]
    fig = new_figure((WIDTH, row + 2.2))
    axes = fig.subplots(1, 3, sharey=True)  # the same tokenizers in the same order: names once
    fig.suptitle("Tokenizers 3/3: what the tokens cost" + (f"\n{note}" if note else ""))
    _barh(axes[0], names, imp.activation_gib.values, f"7. Activation memory\n{memory_label}", "GiB", "{:.2f}",
          colors)
    _barh(axes[1], names, med.encode_mb_s.values, "8. Encode speed\n(medical text, this\nmachine, median)",
          "MB/s (log)", "{:.1f}", colors, log=True)
    _barh(axes[2], names, imp.api_cost_usd.values,
          f"9. API input cost of\n{records:,.0f} records at {price_model}'s\n${price:.2f} per 1M tokens", "USD",
          "${:,.0f}", colors)
    real = (f"Only {cl100k[0]} is {price_model}'s real tokenizer" if cl100k
            else f"None of these is {price_model}'s tokenizer (cl100k)")
    fig.text(0.01, 0.0, f"Panel 9: {price_model} input price ${price:.2f}/1M tokens, {PRICE_SOURCE}.\n{real}; "
             "the other bars apply the same rate to their own token counts.", fontsize=9, va="top", wrap=True)
    figs.append(fig)

    text = dashboard_text(df, buckets, impact, medical, control)
    path = Path(path)
    for i, f in enumerate(figs, 1):
        save_figure(f, path.with_name(f"{path.stem}_{i}{path.suffix}"))
    path.with_suffix(".txt").parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".txt").write_text(text + "\n")
    return figs, text


def dashboard_text(df, buckets, impact, medical="medical test", control="control") -> str:
    med = df[df.text == medical].set_index("tokenizer")
    ctl = df[df.text == control].set_index("tokenizer")
    cols = ["vocab_size", "tokens", "fertility", "bytes_per_token", "split_word_share", "unk_rate",
            "vocab_use", "encode_mb_s"]
    parts = [f"== {medical} ==", med[cols].round(3).to_string(),
             f"\n== {control} ==", ctl[cols].round(3).to_string(),
             "\n== mean tokens per record by length bucket ==", buckets.round(1).to_string(),
             "\n== impact ==", impact.set_index("tokenizer").round(3).to_string()]
    return "\n".join(parts)


def size_text(mb: float) -> str:
    """A text size in the unit that reads: '9.6 KB', '3.2 MB' (1 MB = 1000 KB)."""
    return f"{mb * 1000:.3g} KB" if mb < 1 else f"{mb:.3g} MB"


def uniform_bpb(vocab_size: int, bytes_per_token: float) -> float:
    """Bits per byte of an untrained model: uniform over the vocabulary, ln(V)/ln 2 bits per
    token, spread over the bytes a token covers."""
    return math.log(vocab_size) / math.log(2) / bytes_per_token


def bpb_curves(histories: dict[str, list[tuple[float, float]]], path, title: str,
               baselines: dict[str, float] | None = None, note: str = ""):
    """histories: {label: [(training MB seen, val_bpb), ...]} measured by the engine;
    baselines: {label: uniform_bpb of its tokenizer}, drawn dashed in the label's colour so
    a reader sees how much each model learned beyond its vocabulary's prior."""
    fig = new_figure((9, 5))
    ax = fig.subplots()
    colors = dict(zip(histories, series_colors(len(histories))))
    markers = dict(zip(histories, MARKERS))
    seen = [a for pts in histories.values() for a, _ in pts]
    scale, unit = (1000.0, "KB") if seen and max(seen) < 1 else (1.0, "MB")  # 4-10 KB, not "0.004-0.0096 MB"
    lines = []
    for label, pts in histories.items():
        x, y = zip(*pts) if pts else ((), ())
        ax.plot([a * scale for a in x], y, marker=markers[label], color=colors[label], label=label)
        lines.append(f"{label}: " + ", ".join(f"{a:.3f} MB -> {b:.3f}" for a, b in pts))
    for label, bpb in (baselines or {}).items():
        ax.axhline(bpb, color=colors.get(label, "#777777"), ls="--", lw=1.2,
                   label=f"{label}: untrained (uniform) {bpb:.2f}")
        lines.append(f"{label}: untrained uniform baseline {bpb:.3f} bits/byte")
    ax.set_xlabel(f"training text seen ({unit})")
    ax.set_ylabel("validation bits per byte")
    ax.set_title(title + (f"\n{note}" if note else ""))
    ax.legend()
    place_legends(fig)
    text = "val_bpb by training MB seen\n" + "\n".join(lines) + (f"\n{note}" if note else "")
    save_figure(fig, path, text)
    return fig, text


def pipeline_figure(stages: dict[str, float], path):
    """stages: {stage name: seconds measured in this run}, in order: one row per stage,
    each bar starting where the one before ended."""
    fig = new_figure((10, 1.2 + 0.45 * len(stages)))
    ax = fig.subplots()
    start = 0.0
    colors = series_colors(len(stages))
    names = list(stages)
    for i, sec in enumerate(stages.values()):
        ax.barh(i, sec, left=start, color=colors[i])
        ax.text(start + sec, i, f" {sec:.1f} s", va="center", fontsize=9)
        start += sec
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.margins(x=0.12)
    ax.set_xlabel("seconds since the start of the tutorial (measured in this run)")
    ax.set_title(f"Tutorial pipeline: {start:.1f} s in all")
    text = "\n".join(f"{n:<28} {s:8.2f} s" for n, s in stages.items()) + f"\n{'total':<28} {start:8.2f} s"
    save_figure(fig, path, text)
    return fig, text

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
    new_figure,
    place_legends,
    series_colors,
)

DPI = EXPORT_DPI
WIDTH = 14.0  # inches: 9-point ticks stay ~8.8 px tall when the PNG is shown 1000 px wide


def save_figure(fig, path: str | Path, text: str | None = None) -> Path:
    """PNG at 300 dpi; the text fallback next to it as .txt."""
    path = style.save_figure(fig, path, dpi=DPI)  # the shared writer; this wrapper adds the .txt
    if text is not None:
        path.with_suffix(".txt").write_text(text + "\n")
    return path


def _barh(ax, labels, values, title, xlabel, fmt="{:,.0f}", colors=None, log=False):
    y = np.arange(len(labels))
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    if log:
        ax.set_xscale("log")
    for yi, v in zip(y, values):
        if np.isfinite(v):
            ax.text(v, yi, " " + fmt.format(v), va="center", fontsize=9)
    ax.margins(x=0.3)


def tokenizer_colors(names: list[str]) -> dict[str, str]:
    """One colour per tokenizer (not per family), the same in every figure of the tutorial."""
    return dict(zip(names, series_colors(len(names))))


def _tokenizer_legend(fig, color_of: dict[str, str]) -> None:
    """One legend for the figure, under it: a colour per tokenizer, none inside a panel."""
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=n) for n, c in color_of.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), frameon=False)


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
    from matplotlib.colors import TwoSlopeNorm

    from utils.tokenization.impact import PRICE_SOURCE, PRICES

    med = df[df.text == medical].set_index("tokenizer")
    ctl = df[df.text == control].set_index("tokenizer")
    names = list(med.index)
    color_of = tokenizer_colors(names)
    colors = [color_of[n] for n in names]
    height = max(4.5, 0.32 * len(names) + 2.2)
    where = (f"measured in this run on {med['docs'].iloc[0]:,} held-out medical records and "
             f"{ctl['docs'].iloc[0]:,} control paragraphs")
    figs = []

    # -- figure 1: how many tokens ------------------------------------------------------
    fig = new_figure((WIDTH, height))
    axes = fig.subplots(1, 3, width_ratios=[1, 1, 1.25])
    fig.suptitle(f"Tokenizers 1/3: how many tokens ({where})" + (f"\n{note}" if note else ""))
    ax = axes[0]
    y = np.arange(len(names))
    ax.barh(y - 0.2, med.tokens, 0.4, label=medical, color=colors)
    ax.barh(y + 0.2, ctl.loc[names, "tokens"], 0.4, label=control, color="#bbbbbb")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("tokens (log)")
    ax.set_title(f"1. Total tokens\n(colour: {medical}; grey: {control})")

    ax = axes[1]
    for n in names:
        ax.plot(range(buckets.shape[1]), buckets.loc[n], marker="o", color=color_of[n], label=n, lw=1.4)
    ax.set_xticks(range(buckets.shape[1]), [str(c).replace(" (", "\n(") for c in buckets.columns])
    ax.set_yscale("log")
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
    # The scale covers every cell; 0 (same count as the reference) stays the neutral middle.
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(lo, -1.0), vmax=max(hi, 1.0))
    im = ax.imshow(pct.values, cmap="RdYlGn_r", norm=norm, aspect="auto")
    ax.set_xticks(range(pct.shape[1]), pct.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.grid(False)
    for i in range(pct.shape[0]):
        for j in range(pct.shape[1]):
            v = pct.values[i, j]
            ax.text(j, i, f"{v:+.0f}%", ha="center", va="center", fontsize=9, color=_contrast(im.cmap(norm(v))))
    ax.set_title(f"3. Token count vs {reference} (green = fewer)")
    fig.colorbar(im, ax=ax, fraction=0.05, label=f"% more tokens than {reference}")
    _tokenizer_legend(fig, color_of)
    figs.append(fig)

    # -- figure 2: what the tokens are --------------------------------------------------
    fig = new_figure((WIDTH, height))
    axes = fig.subplots(1, 3, width_ratios=[1, 0.9, 1.6])
    fig.suptitle(f"Tokenizers 2/3: what the tokens are ({medical} text)" + (f"\n{note}" if note else ""))
    ax = axes[0]
    for n in names:
        if med.loc[n, "family"] in ("char", "byte"):
            continue  # always one character: a spike at 1 that would flatten the rest
        hist = measurements[(n, medical)].token_lengths
        total = sum(hist.values())
        ks = sorted(k for k in hist if k <= 16)
        ax.plot(ks, [hist[k] / total for k in ks], marker=".", color=color_of[n], label=n, lw=1.4)
    ax.set_xlabel("characters per token")
    ax.set_ylabel("share of tokens")
    ax.set_title("4. Token lengths\n(chars, bytes: all 1, not drawn)")

    ax = axes[1]
    parts = ax.boxplot([measurements[(n, medical)].per_doc_tokens for n in names], orientation="horizontal",
                       showfliers=False, patch_artist=True)
    for box, c in zip(parts["boxes"], colors):
        box.set_facecolor(c)
        box.set_alpha(0.7)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("tokens per record (log)")
    ax.set_title("7. Tokens per record")

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
    ax.set_title("9. Summary (medical text;\nlast column: control text)")
    _tokenizer_legend(fig, color_of)
    figs.append(fig)

    # -- figure 3: what they cost --------------------------------------------------------
    imp = impact.set_index("tokenizer").loc[names]
    records = float(imp.total_tokens_m.iloc[0] * 1e6 / imp.tokens_per_record.iloc[0])
    price = PRICES[price_model]
    cl100k = [n for n in names if "cl100k" in n]
    fig = new_figure((WIDTH, height + 0.8))
    axes = fig.subplots(1, 3)
    fig.suptitle("Tokenizers 3/3: what the tokens cost" + (f"\n{note}" if note else ""))
    _barh(axes[0], names, imp.activation_gib.values, f"5. Activation memory\n{memory_label}", "GiB", "{:.2f}",
          colors)
    _barh(axes[1], names, med.encode_mb_s.values, "6. Encode speed (medical text,\nthis machine, median)",
          "MB/s (log)", "{:.1f}", colors, log=True)
    _barh(axes[2], names, imp.api_cost_usd.values,
          f"8. API input cost of {records:,.0f} records\nat {price_model}'s ${price:.2f} per 1M tokens", "USD",
          "${:,.0f}", colors)
    real = (f"Only {cl100k[0]} is {price_model}'s real tokenizer" if cl100k
            else f"None of these is {price_model}'s tokenizer (cl100k)")
    fig.text(0.01, 0.0, f"Panel 8: {price_model} input price ${price:.2f}/1M tokens, {PRICE_SOURCE}.\n{real}; "
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
    lines = []
    for label, pts in histories.items():
        x, y = zip(*pts) if pts else ((), ())
        ax.plot(x, y, marker="o", color=colors[label], label=label)
        lines.append(f"{label}: " + ", ".join(f"{a:.3f} MB -> {b:.3f}" for a, b in pts))
    for label, bpb in (baselines or {}).items():
        ax.axhline(bpb, color=colors.get(label, "#777777"), ls="--", lw=1.2,
                   label=f"{label}: untrained (uniform) {bpb:.2f}")
        lines.append(f"{label}: untrained uniform baseline {bpb:.3f} bits/byte")
    ax.set_xlabel("training text seen (MB)")
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

"""Figures of the tokenizer tutorial: the 9-panel dashboard, the training comparison and
the pipeline timeline. Every function draws measured data it is given, saves a PNG at
300 dpi and returns a plain-text version of the same numbers (the text fallback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 300


def _style():
    try:
        from utils.training.style import apply_style
    except ImportError:  # the shared style module is optional here
        return
    apply_style()


def save_figure(fig, path: str | Path, text: str | None = None) -> Path:
    """PNG at 300 dpi; the text fallback next to it as .txt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    if text is not None:
        path.with_suffix(".txt").write_text(text + "\n")
    return path


def _barh(ax, labels, values, title, xlabel, fmt="{:,.0f}", colors=None, log=False):
    y = np.arange(len(labels))
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    if log:
        ax.set_xscale("log")
    for yi, v in zip(y, values):
        if np.isfinite(v):
            ax.text(v, yi, " " + fmt.format(v), va="center", fontsize=6)
    ax.margins(x=0.25)


def _family_colors(families: list[str]) -> list:
    import matplotlib.pyplot as plt

    uniq = sorted(set(families))
    cmap = plt.get_cmap("tab10")
    return [cmap(uniq.index(f) % 10) for f in families]


def dashboard(df, measurements, buckets, impact, path, medical="medical test", control="control",
              reference="gpt2", memory_label="batch of records at p95 length"):
    """The 9-panel comparison. df: measure_zoo rows; buckets: bucket_table; impact: impact_table."""
    import matplotlib.pyplot as plt

    _style()
    med = df[df.text == medical].set_index("tokenizer")
    ctl = df[df.text == control].set_index("tokenizer")
    names = list(med.index)
    colors = _family_colors([med.loc[n, "family"] for n in names])
    fig, axes = plt.subplots(3, 3, figsize=(18, 15))
    fig.suptitle(f"Tokenizer comparison, measured in this run ({med['docs'].iloc[0]:,} held-out medical "
                 f"records, {ctl['docs'].iloc[0]:,} control paragraphs)", fontsize=13)

    # 1 totals on both texts
    ax = axes[0, 0]
    y = np.arange(len(names))
    ax.barh(y - 0.2, med.tokens, 0.4, label=medical, color=colors)
    ax.barh(y + 0.2, ctl.loc[names, "tokens"], 0.4, label=control, color="lightgray")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_title("1. Total tokens (log scale)", fontsize=9)
    ax.legend(fontsize=7)

    # 2 mean tokens per record by complexity bucket
    ax = axes[0, 1]
    for n, c in zip(names, colors):
        ax.plot(range(buckets.shape[1]), buckets.loc[n], marker="o", color=c, label=n, lw=1)
    ax.set_xticks(range(buckets.shape[1]), buckets.columns, fontsize=7)
    ax.set_yscale("log")
    ax.set_title("2. Mean tokens per record by record length", fontsize=9)
    ax.legend(fontsize=5, ncol=2)

    # 3 change vs the reference tokenizer, per bucket and per text
    ax = axes[0, 2]
    cols = list(buckets.columns)
    mat = buckets[cols].div(buckets.loc[reference, cols], axis=1)
    mat["all medical"] = med.tokens / med.loc[reference, "tokens"]
    mat["control"] = ctl.loc[names, "tokens"] / ctl.loc[reference, "tokens"]
    pct = (mat.loc[names] - 1) * 100
    im = ax.imshow(pct.values, cmap="RdYlGn_r", vmin=-100, vmax=100, aspect="auto")
    ax.set_xticks(range(pct.shape[1]), pct.columns, fontsize=6, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(pct.shape[0]):
        for j in range(pct.shape[1]):
            v = pct.values[i, j]
            ax.text(j, i, f"{v:+.0f}%", ha="center", va="center", fontsize=5,
                    color="white" if abs(v) > 60 else "black")
    ax.set_title(f"3. Token count vs {reference} (green = fewer)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)

    # 4 token-length distribution on the medical text
    ax = axes[1, 0]
    for n, c in zip(names, colors):
        if med.loc[n, "family"] in ("char", "byte"):
            continue  # always one character: a spike at 1 that would flatten the rest
        hist = measurements[(n, medical)].token_lengths
        total = sum(hist.values())
        ks = sorted(k for k in hist if k <= 16)
        ax.plot(ks, [hist[k] / total for k in ks], marker=".", color=c, label=n, lw=1)
    ax.set_xlabel("characters per token", fontsize=8)
    ax.set_ylabel("share of tokens", fontsize=8)
    ax.set_title("4. Token-length distribution (medical; chars/bytes: all 1)", fontsize=9)
    ax.legend(fontsize=5, ncol=2)

    imp = impact.set_index("tokenizer").loc[names]
    _barh(axes[1, 1], names, imp.activation_gib.values,
          f"5. Activation memory, {memory_label}", "GiB", "{:.2f}", colors)
    _barh(axes[1, 2], names, med.encode_mb_s.values, "6. Encode throughput (medical, this machine)",
          "MB/s", "{:.1f}", colors, log=True)

    # 7 per-record token counts
    ax = axes[2, 0]
    ax.boxplot([measurements[(n, medical)].per_doc_tokens for n in names], orientation="horizontal", showfliers=False)
    ax.set_yticks(range(1, len(names) + 1), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_title("7. Tokens per record (medical)", fontsize=9)

    _barh(axes[2, 1], names, imp.api_cost_usd.values, "8. API input cost, 1M records", "USD", "${:,.0f}", colors)

    # 9 metrics summary as a table
    ax = axes[2, 2]
    ax.axis("off")
    cells = [[n, f"{med.loc[n, 'fertility']:.2f}", f"{med.loc[n, 'bytes_per_token']:.2f}",
              f"{med.loc[n, 'split_word_share']:.0%}", f"{med.loc[n, 'unk_rate']:.1%}",
              f"{ctl.loc[n, 'bytes_per_token']:.2f}"] for n in names]
    table = ax.table(cellText=cells, colLabels=["tokenizer", "fertility", "bytes/tok", "split words",
                                                 "unk", "ctl bytes/tok"], loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    table.scale(1, 1.2)
    ax.set_title("9. Metrics summary (medical test; last column: control)", fontsize=9)

    fig.tight_layout(rect=(0, 0, 1, 0.97))
    text = dashboard_text(df, buckets, impact, medical, control)
    save_figure(fig, path, text)
    return fig, text


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


def bpb_curves(histories: dict[str, list[tuple[float, float]]], path, title: str):
    """histories: {label: [(training MB seen, val_bpb), ...]} measured by the engine."""
    import matplotlib.pyplot as plt

    _style()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines = []
    for label, pts in histories.items():
        x, y = zip(*pts) if pts else ((), ())
        ax.plot(x, y, marker="o", label=label)
        lines.append(f"{label}: " + ", ".join(f"{a:.3f} MB -> {b:.3f}" for a, b in pts))
    ax.set_xlabel("training text seen (MB)")
    ax.set_ylabel("validation bits per byte")
    ax.set_title(title, fontsize=10)
    ax.legend()
    text = "val_bpb by training MB seen\n" + "\n".join(lines)
    save_figure(fig, path, text)
    return fig, text


def pipeline_figure(stages: dict[str, float], path):
    """stages: {stage name: seconds measured in this run}, in order."""
    import matplotlib.pyplot as plt

    _style()
    fig, ax = plt.subplots(figsize=(10, 2.2 + 0.1 * len(stages)))
    start = 0.0
    cmap = plt.get_cmap("tab10")
    for i, (name, sec) in enumerate(stages.items()):
        ax.barh(0, sec, left=start, color=cmap(i % 10), edgecolor="white")
        ax.text(start + sec / 2, 0.45 + 0.25 * (i % 2), f"{name}\n{sec:.1f} s", ha="center", fontsize=7)
        start += sec
    ax.set_ylim(-0.6, 1.2)
    ax.set_yticks([])
    ax.set_xlabel("seconds since the start of the tutorial (measured in this run)")
    ax.set_title(f"Tutorial pipeline: {start:.1f} s in all", fontsize=10)
    text = "\n".join(f"{n:<28} {s:8.2f} s" for n, s in stages.items()) + f"\n{'total':<28} {start:8.2f} s"
    save_figure(fig, path, text)
    return fig, text

"""The one figure style: every chart of the project goes through here.

Figures are built as `matplotlib.figure.Figure` objects, never through pyplot's
global state, so a notebook's inline backend does not embed them a second time
and long runs do not leak figures.
"""

from __future__ import annotations

from pathlib import Path

# Colour-blind safe (seaborn "colorblind"), fixed so a metric keeps its colour in
# every figure: train is blue, val orange, lr green, throughput purple.
PALETTE = {
    "train": "#0173b2",
    "val": "#de8f05",
    "best": "#d55e00",
    "lr": "#029e73",
    "throughput": "#cc78bc",
    "step_time": "#ca9161",
    "memory": "#56b4e9",
    "peak": "#d55e00",
    "capacity": "#555555",
    "accuracy": "#029e73",
    "grad": "#949494",
    "target": "#d55e00",
    "cycle": ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494"],
}

DPI = 110  # screen dpi: a 12-inch-wide figure fits a notebook cell at about 1300 px
EXPORT_DPI = 300  # dpi for files meant for papers and slides
FONT_SIZE = 10



def apply_style() -> None:
    """Set the shared theme (seaborn when installed, else plain rcParams). Applied on every
    figure, not once: other libraries (optuna's plots) change the global style."""
    import matplotlib as mpl

    rc = {
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "savefig.bbox": "tight",
        "font.size": FONT_SIZE,
        "axes.titlesize": FONT_SIZE + 1,
        "axes.titleweight": "bold",
        "axes.labelsize": FONT_SIZE,
        "legend.fontsize": FONT_SIZE - 1,
        "xtick.labelsize": FONT_SIZE - 1,
        "ytick.labelsize": FONT_SIZE - 1,
        "axes.prop_cycle": mpl.cycler(color=PALETTE["cycle"]),
        "lines.linewidth": 1.6,
    }
    try:
        import seaborn as sns

        sns.set_theme(style="whitegrid", context="notebook", rc=rc)
    except ImportError:
        mpl.rcParams.update(rc)
        mpl.rcParams.update({"axes.grid": True, "grid.alpha": 0.3})
    # seaborn's context scales fonts; pin ours back after it.
    mpl.rcParams.update({k: v for k, v in rc.items() if k.endswith("size")})


def preload() -> None:
    """Import what drawing a figure needs, now. Plotting callbacks call it in
    on_train_begin: a first import in the middle of training (the first log step) is
    seconds long, and a Ctrl-C landing inside it leaves matplotlib half-imported, so
    that teardown then fails too (KeyError: 'Figure:kwdoc')."""
    apply_style()
    import matplotlib.backends.backend_agg  # noqa: F401 - savefig's PNG renderer
    import matplotlib.figure  # noqa: F401


def new_figure(figsize: tuple[float, float]):
    """A pyplot-free Figure with the shared style applied."""
    apply_style()
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=DPI, layout="constrained")


def save_figure(fig, path, dpi: int | None = None) -> Path:
    """Save as PNG, PDF or SVG (chosen by the suffix), creating the folder."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".pdf", ".svg"):
        raise ValueError(f"save_figure writes .png, .pdf or .svg, not {suffix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi or DPI, bbox_inches="tight", facecolor="white")
    return path


def figure_png(fig, dpi: int | None = None, tight: bool = True) -> bytes:
    """PNG bytes of a figure, for IPython display handles. tight=False skips the tight
    bounding box, which renders the figure twice."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or DPI, facecolor="white", bbox_inches="tight" if tight else None)
    return buf.getvalue()


def human(n: float) -> str:
    """1.29e9 -> '1.29B', 163840 -> '164K'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


def no_data(ax, text: str) -> None:
    """Mark a panel whose metric the run did not measure (the panel stays, so layouts match)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def time_unit(seconds: float) -> tuple[float, str]:
    """(divisor, unit) to show a duration axis in s, min or h."""
    if seconds >= 2 * 3600:
        return 3600.0, "h"
    if seconds >= 120:
        return 60.0, "min"
    return 1.0, "s"

"""The one figure style: every chart of the project goes through here.

Figures are built as `matplotlib.figure.Figure` objects, never through pyplot's
global state, so a notebook's inline backend does not embed them a second time
and long runs do not leak figures.
"""

from __future__ import annotations

from pathlib import Path

from utils.training.text import DISPLAY_WIDTH_PX, human

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
# One colour per run or tokenizer (a legend names each): the colour-blind ten (its light
# yellow darkened: #ece133 barely showed on white), then ten more distinct hues for larger comparisons (the tokenizer zoo has ~12 members).
SERIES_COLORS = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494",
                 "#b8a300", "#56b4e9", "#000000", "#8c564b", "#17becf", "#9467bd", "#bcbd22", "#7f0000",
                 "#1b9e77", "#e7298a", "#666666", "#a6761d")

DPI = 110  # screen dpi: a 12-inch-wide figure fits a notebook cell at about 1300 px
EXPORT_DPI = 300  # dpi for files meant for papers and slides
FONT_SIZE = 10
# Notebook outputs are shown about 750 px wide (JupyterLab in a 1280-px window with its file
# browser open; nbconvert pages give 890, Colab about 1000): a wider image is scaled down to
# it, so a figure's text must stay >= MIN_TEXT_PX tall at that width. Text px = points x dpi
# / 72 x min(1, 750 / image width px); for a figure wider than 750 px that is points x 750 /
# (72 x width in inches): 9 pt text allows figures up to 11.7 inches, a 9-pt tick label's
# superscript (mathtext shrinks it to 70%: 6.3 pt) only 8.2 inches, so log axes use plain
# numbers where the range allows (log_axis). DISPLAY_WIDTH_PX lives in text.py: tables fit it too.
MIN_TEXT_PX = 8.0


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
    fig.savefig(path, dpi=dpi or DPI, bbox_inches="tight", facecolor="white",
                **({"metadata": png_metadata(fig, dpi)} if suffix == ".png" else {}))
    return path


def notebook_dpi(fig, times: float = 2.0) -> int:
    """The dpi at which `fig`'s PNG is `times` the notebook display width (DISPLAY_WIDTH_PX):
    sharp on a 2x screen, a fraction of a 300-dpi export's bytes in the notebook file."""
    return max(DPI, round(times * DISPLAY_WIDTH_PX / fig.get_figwidth()))


def figure_png(fig, dpi: int | None = None, tight: bool = True) -> bytes:
    """PNG bytes of a figure, for IPython display handles. tight=False skips the tight
    bounding box, which renders the figure twice."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or DPI, facecolor="white", bbox_inches="tight" if tight else None,
                metadata=png_metadata(fig, dpi) if tight else None)  # live frames: no extra measuring draw
    return buf.getvalue()


SMALLEST_TEXT_KEY = "Smallest text px"  # a PNG text chunk: `make look` scales it to the displayed width


def png_metadata(fig, dpi: float | None = None) -> dict:
    """PNG text chunks: the smallest text of `fig` in px of the PNG itself (superscripts
    included), so a viewer (utils/look_lab.py) can say how tall it is where it is shown."""
    heights = text_heights(fig, dpi or DPI, display_width=10**9)
    return {SMALLEST_TEXT_KEY: f"{min(heights)[0]:.2f}"} if heights else {}


def show_figure(fig, dpi: int | None = None) -> None:
    """Show a pyplot-free figure in a notebook as the PNG a reader sees (the inline
    backend's figure formatter is only set up once pyplot is imported)."""
    from IPython.display import Image, display

    display(Image(data=figure_png(fig, dpi)))


def no_data(ax, text: str) -> None:
    """Mark a panel whose metric the run did not measure (the panel stays, so layouts match)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def log_axis(ax, which: str = "y") -> None:
    """Put an axis on a log scale with plain tick numbers (0.01, 300, 20K; human()), not
    mathtext powers (10^4, 4x10^2): their superscripts are drawn at 70% of the tick size,
    under 8 px at notebook width. Minor ticks are labelled as matplotlib would (ranges
    under about a decade), in the same plain numbers. The one way figures make a log axis."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return human(x)

    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def series_colors(n: int) -> list[str]:
    """n distinct colours, one per run or tokenizer (not per family)."""
    if n > len(SERIES_COLORS):
        raise ValueError(f"{n} series: at most {len(SERIES_COLORS)} distinct colours; split the figure")
    return list(SERIES_COLORS[:n])


# -- readability: what a figure looks like where it is shown ---------------------------

def _texts(artist, out: list) -> None:
    from matplotlib.axes import Axes
    from matplotlib.text import Text

    if not artist.get_visible():
        return
    if isinstance(artist, Text):
        if artist.get_text().strip():
            out.append(artist)
        return
    children = artist.get_children()
    if isinstance(artist, Axes):
        if not artist.axison:  # ax.axis("off"): axes, ticks and spines are not drawn
            children = [c for c in children if c not in (artist.xaxis, artist.yaxis, *artist.spines.values())]
        for table in artist.tables:
            out.extend(c.get_text() for c in table.get_celld().values()
                       if c.get_visible() and c.get_text().get_text().strip())
    for child in children:
        _texts(child, out)


def shown_scale(fig, dpi: float | None = None, display_width: int = DISPLAY_WIDTH_PX) -> float:
    """Shown px per rendered px: the PNG (tight bounding box, `dpi`) is scaled down to
    `display_width` when wider, shown as it is when narrower."""
    fig.draw_without_rendering()
    bbox = fig.get_tightbbox(fig._get_renderer())
    width_px = (bbox.width + 0.2) * (dpi or fig.dpi)  # savefig's pad_inches 0.1 on each side
    return min(1.0, display_width / width_px)


def smallest_points(text) -> float:
    """The font size (points) of the smallest part of a Text: its size, or for mathtext
    ("$10^{4}$", a log axis's tick label) its smallest glyph, superscripts and subscripts
    included (mathtext draws them at 70% per level)."""
    s, ismath = text._preprocess_math(text.get_text())
    if ismath is not True:
        return text.get_fontsize()
    from matplotlib.mathtext import MathTextParser

    try:
        parsed = MathTextParser("path").parse(s, dpi=72, prop=text.get_fontproperties())
    except ValueError:  # not valid mathtext: matplotlib would fail to draw it too
        return text.get_fontsize()
    sizes = [glyph[1] for glyph in parsed.glyphs]  # (font, fontsize in points at 72 dpi, ...)
    return min(sizes, default=text.get_fontsize())


def text_heights(fig, dpi: float | None = None, display_width: int = DISPLAY_WIDTH_PX) -> list[tuple[float, str]]:
    """(px tall when shown, text) for every visible text of `fig` (ticks, labels, titles,
    legends, annotations, table cells): the smallest part's points (smallest_points:
    superscripts measured) x dpi / 72, scaled as shown."""
    scale = shown_scale(fig, dpi, display_width)
    dpi = dpi or fig.dpi
    found: list = []
    _texts(fig, found)
    return [(smallest_points(t) * dpi / 72 * scale, t.get_text()) for t in found]


def unreadable(fig, dpi: float | None = None, min_px: float = MIN_TEXT_PX) -> list[tuple[float, str]]:
    """The texts of `fig` shown smaller than min_px (empty: the figure reads at notebook width)."""
    return sorted(h for h in text_heights(fig, dpi) if h[0] < min_px - 1e-9)


# -- legends that never cover data ------------------------------------------------------

def _data_points(fig):
    """Display coordinates of what the axes plot: line vertices (densified so a segment
    crossing a box counts) and scatter offsets."""
    import numpy as np

    pts = []
    for ax in fig.axes:
        for line in ax.lines:
            xy = np.asarray(line.get_xydata(), float)
            if xy.size == 0:
                continue
            xy = xy[np.isfinite(xy).all(axis=1)]
            if len(xy) == 0:
                continue
            d = line.get_transform().transform(xy)
            if len(d) > 1:  # 8 points along each segment
                t = np.linspace(0, 1, 8)[:, None, None]
                d = (d[:-1][None] * (1 - t) + d[1:][None] * t).reshape(-1, 2)
            pts.append(d)
        for coll in ax.collections:
            offs = np.asarray(coll.get_offsets(), float)
            if offs.ndim == 2 and len(offs) and coll.get_offset_transform() is not None:
                pts.append(coll.get_offset_transform().transform(offs))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def _covered(bbox, pts) -> int:
    import numpy as np

    if len(pts) == 0:
        return 0
    inside = (pts[:, 0] > bbox.x0) & (pts[:, 0] < bbox.x1) & (pts[:, 1] > bbox.y0) & (pts[:, 1] < bbox.y1)
    return int(np.count_nonzero(inside))


def covering_legends(fig) -> list[str]:
    """Titles of the axes whose legend lies over plotted data (empty: none does)."""
    fig.draw_without_rendering()
    pts = _data_points(fig)
    renderer = fig._get_renderer()
    return [ax.get_title() or "untitled" for ax in fig.axes
            if ax.get_legend() is not None and _covered(ax.get_legend().get_window_extent(renderer), pts)]


LEGEND_LOCS = ("upper right", "upper left", "lower left", "lower right", "center right", "center left",
               "upper center", "lower center", "center")


def place_legends(fig, passes: int = 3) -> None:
    """Move every axes legend to the first corner where it covers no data; where every
    corner would, put it outside, right of its axes. Call when the figure is complete.
    Moving one legend outside re-lays the figure out (the data moves), so it checks again,
    up to `passes` times."""
    for _ in range(passes):
        fig.draw_without_rendering()
        pts = _data_points(fig)
        renderer = fig._get_renderer()
        moved = False
        for ax in fig.axes:
            leg = ax.get_legend()
            if leg is None or not _covered(leg.get_window_extent(renderer), pts):
                continue
            moved = True
            for loc in LEGEND_LOCS:
                leg.set_loc(loc)
                if not _covered(leg.get_window_extent(renderer), pts):
                    break
            else:
                leg.set_loc("upper left")
                leg.set_bbox_to_anchor((1.02, 1.0), transform=ax.transAxes)
        if not moved:
            return

"""Text and numbers written one way everywhere: counts, durations, the caveat a run that
is not a result carries, the Chinchilla share, and tables shown in notebooks and
terminals. Base floor: imports nothing of the library (pandas only inside the table
helpers), so every layer may use it.
"""

from __future__ import annotations

import math

# -- counts and durations ----------------------------------------------------------------


def human(n: float) -> str:
    """1.29e9 -> '1.29B', 163840 -> '164K'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


def duration(seconds: float) -> str:
    """A run's wall time, written one way everywhere: '14.2 s', '3.4 min', '2.1 h'."""
    div, unit = time_unit(seconds)
    return f"{seconds / div:.1f} {unit}"


def time_unit(seconds: float) -> tuple[float, str]:
    """(divisor, unit) to show a duration axis in s, min or h."""
    if seconds >= 2 * 3600:
        return 3600.0, "h"
    if seconds >= 120:
        return 60.0, "min"
    return 1.0, "s"


# -- what a run is (not) ---------------------------------------------------------------

def caveat(preset: str = "", synthetic: bool = False) -> str:
    """The label a figure, a summary line or the CLI's last line carries when its run is not
    a result: the smoke or cpu preset (sized for seconds/minutes on a CPU) or synthetic
    tokens. "" for a real run."""
    parts = []
    if preset in ("smoke", "cpu"):
        parts.append(f"{preset} preset")
    if synthetic:
        parts.append("synthetic tokens")
    return ", ".join(parts) + ": not a result" if parts else ""


CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022, compute-optimal tokens per parameter


def chinchilla_share(tokens: float, params: float) -> str:
    """Tokens as a share of the compute-optimal 20 per parameter, written one way
    everywhere (card, CLI line, figures): '0.62%', '3.1%', '45%'."""
    if not params or params != params:
        return "n/a"
    pct = 100.0 * tokens / (CHINCHILLA_TOKENS_PER_PARAM * params)
    return f"{pct:.0f}%" if pct >= 10 else f"{pct:.2g}%"


def with_caveat(title: str, note: str) -> str:
    """`title` with the caveat on a line of its own (empty note: the title as it is)."""
    return f"{title}\n{note}" if note else title


# -- tables in notebooks ---------------------------------------------------------------

def _number(v: float, digits: int) -> str:
    """`digits` significant digits (807.9583 -> '808', 0.0010615 -> '0.00106'); whole
    numbers and values from 10,000 up with thousands separators, never an exponent there."""
    if v != v:
        return "n/a"
    if float(v).is_integer() or abs(v) >= 1e4:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def tidy_table(df, digits: int = 3):
    """A copy of `df` for showing: floats at `digits` significant digits (text._number),
    durations in seconds, NaN as n/a; every column as text."""
    import pandas as pd

    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_timedelta64_dtype(s):
            out[col] = s.map(lambda v: "n/a" if pd.isna(v) else f"{v.total_seconds():.1f} s")
        elif pd.api.types.is_float_dtype(s):
            out[col] = s.map(lambda v: "n/a" if pd.isna(v) else _number(float(v), digits))
        elif pd.api.types.is_integer_dtype(s) and not pd.api.types.is_bool_dtype(s):
            out[col] = s.map(lambda v: f"{v:,}")
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[col] = s.map(lambda v: "n/a" if pd.isna(v) else v.strftime("%Y-%m-%d %H:%M:%S"))
        else:
            out[col] = s.map(lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out


# The width notebook outputs are read at: JupyterLab at a 1280-px window with its file browser
# open (nbconvert pages give 890, Colab about 1000). Figures (viz/style.py) and tables fit it.
DISPLAY_WIDTH_PX = 750
CHAR_PX, CELL_PAD_PX = 7.5, 16  # a JupyterLab table's 12-px font: px per character, per cell


def table_parts(shown, max_px: int = DISPLAY_WIDTH_PX) -> list:
    """Split a tidied table's columns into tables that each fit `max_px` (estimated from the
    longest text of each column), each part repeating the first column so rows stay named."""
    widths = [CELL_PAD_PX + CHAR_PX * max([len(str(c))] + [len(str(v)) for v in shown[c]]) for c in shown.columns]
    if sum(widths) <= max_px or len(shown.columns) < 3:
        return [shown]
    key, parts, current, used = shown.columns[0], [], [], widths[0]
    for col, w in zip(shown.columns[1:], widths[1:]):
        if current and used + w > max_px:
            parts.append(shown[[key, *current]])
            current, used = [], widths[0]
        current.append(col)
        used += w
    parts.append(shown[[key, *current]])
    return parts


def table_html(shown, max_px: int = DISPLAY_WIDTH_PX) -> str:
    """HTML of a tidied table that fits `max_px` (table_parts), cells never wrapped inside a
    name (`wordpiece-300` stayed split at its hyphen): text wraps only between tables."""
    style = "<style>.slm-table td, .slm-table th {white-space: nowrap}</style>"
    return style + "".join(part.to_html(index=False, classes="slm-table") for part in table_parts(shown, max_px))


def show_table(df, digits: int = 3, max_chars: int = 100) -> None:
    """Show a table in a notebook as HTML (significant digits, split to fit the display
    width); elsewhere as text when it fits `max_chars` columns, else as one record per block."""
    shown = tidy_table(df, digits)
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None and hasattr(get_ipython(), "kernel"):
        display(HTML(table_html(shown)))
        return
    print(table_text(shown, max_chars))


def table_text(shown, max_chars: int = 100) -> str:
    """Plain text of a tidied table, at most `max_chars` wide: as a grid when it fits,
    else one block per row ("column: value" lines)."""
    text = shown.to_string(index=False)
    if max(len(line) for line in text.splitlines()) <= max_chars:
        return text
    width = max(len(str(c)) for c in shown.columns)
    blocks = ["\n".join(f"{str(c):<{width}}  {v}"[:max_chars] for c, v in row.items())
              for _, row in shown.iterrows()]
    return "\n\n".join(blocks)

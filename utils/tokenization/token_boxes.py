"""Token boxes: how each tokenizer splits a list of terms, one coloured box per token,
with an efficiency rating per tokenizer derived from measured bytes per token."""

from __future__ import annotations

from utils.tokenization.figures import save_figure
from utils.training.viz.style import new_figure

BOX_PT = 9.0  # box text: >= 9 px shown, since the figure is never wider than 9.5 inches
LABEL_PT = 10.0
ROW_IN = 0.27  # inches per term row
CHAR_IN = 0.6 * BOX_PT / 72  # a monospace character's width
PAD_IN = 0.07  # box padding plus gap
LABEL_IN = 2.4  # the term column


def rating(bytes_per_token: float, best: float) -> str:
    """1-5 stars: the tokenizer's measured bytes/token as a share of the best one's."""
    stars = max(1, min(5, round(5 * bytes_per_token / best)))
    return "*" * stars + "." * (5 - stars)


def term_pieces(tok, term: str) -> list[str]:
    """Every token of `term` as it appears inside running text (after a space), space-only
    tokens inside it included ("diabetes mellitus" is 17 byte tokens). Only a leading token
    that is just the added context space is dropped: it belongs to the text before the term."""
    pieces = tok.pieces(" " + term) if tok.space_prefix else tok.pieces(term)
    if tok.space_prefix and pieces and pieces[0] == " ":
        pieces = pieces[1:]
    return pieces


def _shown(piece: str) -> str:
    # "" is a byte token inside a multi-byte character (its text is shown by the token before)
    return piece.replace(" ", "\u2423") if piece else "\u00b7"


def boxes_text(zoo, terms, ratings: dict[str, str]) -> str:
    lines = []
    for tok in zoo:
        lines.append(f"{tok.name} [{ratings.get(tok.name, '')}]")
        for term in terms:
            pieces = term_pieces(tok, term)
            lines.append(f"  {term:<26} {len(pieces):>3}  " + "|".join(pieces))
    return "\n".join(lines)


def token_boxes(zoo, terms, bytes_per_token: dict[str, float], path, dpi: float | None = None):
    """Draw every tokenizer's split of every term. bytes_per_token: measured on the
    medical test text, per tokenizer name; the rating compares each to the best. The figure
    is as wide as its longest row (no blank half) and drawn in inches, so box text is
    BOX_PT points whatever the number of tokens."""
    from matplotlib.patches import FancyBboxPatch

    best = max(bytes_per_token.values())
    ratings = {n: rating(v, best) for n, v in bytes_per_token.items()}
    splits = {(tok.name, term): term_pieces(tok, term) for tok in zoo for term in terms}
    widest = max((sum(CHAR_IN * max(1, len(_shown(p))) + PAD_IN for p in ps) for ps in splits.values()), default=1.0)
    header_in = max(0.085 * len(f"{t.name}  ({t.family}, vocab {t.vocab_size:,})  rating *****  "
                                f"measured 0.00 bytes/token") for t in zoo)
    # At most 9.5 inches: 9-point text then stays >= 9.6 px when the PNG is scaled to 750 px
    # (style.DISPLAY_WIDTH_PX); the three tutorial terms need about 6.
    width = min(9.5, max(LABEL_IN + widest + 0.2, header_in, 6.0))
    # title 0.68 in; per tokenizer a header row (ROW_IN + 0.05), its term rows and a 0.1 gap
    height = 0.68 + len(zoo) * (ROW_IN + 0.15 + ROW_IN * len(terms)) + 0.15
    fig = new_figure((width, height))
    fig.set_layout_engine("none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(-height, 0)
    ax.axis("off")
    y = -0.3
    ax.text(0.05, y, "Medical terms inside running text (box = one token; \u2423 = space)", fontsize=11,
            fontweight="bold", va="center")
    y -= 0.38
    for tok in zoo:
        ax.text(0.05, y, f"{tok.name}  ({tok.family}, vocab {tok.vocab_size:,})  rating {ratings.get(tok.name, '?')}"
                f"  measured {bytes_per_token.get(tok.name, float('nan')):.2f} bytes/token",
                fontsize=LABEL_PT, fontweight="bold", va="center")
        y -= ROW_IN + 0.05
        for term in terms:
            pieces = splits[(tok.name, term)]
            ax.text(0.15, y, f"{term} ({len(pieces)})", fontsize=LABEL_PT, va="center")
            x = LABEL_IN
            for i, p in enumerate(pieces):
                shown = _shown(p)
                w = CHAR_IN * max(1, len(shown)) + PAD_IN - 0.02
                ax.add_patch(FancyBboxPatch((x, y - 0.1), w, 0.2, boxstyle="round,pad=0.01",
                                            fc=_box_color(i), ec="gray", lw=0.4))
                ax.text(x + w / 2, y, shown, fontsize=BOX_PT, ha="center", va="center", family="monospace")
                x += w + 0.02
            y -= ROW_IN
        y -= 0.1
    text = boxes_text(zoo, terms, ratings)
    save_figure(fig, path, text)
    return fig, text


def _box_color(i: int) -> str:
    # Pale alternating fills: neighbouring tokens tell apart, black text reads on both.
    return ("#cfe3f3", "#fbe0bd", "#d3eedd", "#f6d2e9")[i % 4]

"""Token boxes: how each tokenizer splits a list of terms, one coloured box per token,
with an efficiency rating per tokenizer derived from measured bytes per token."""

from __future__ import annotations

from utils.tokenization.figures import _style, save_figure


def rating(bytes_per_token: float, best: float) -> str:
    """1-5 stars: the tokenizer's measured bytes/token as a share of the best one's."""
    stars = max(1, min(5, round(5 * bytes_per_token / best)))
    return "*" * stars + "." * (5 - stars)


def term_pieces(tok, term: str) -> list[str]:
    """The pieces of `term` as it appears inside running text (after a space)."""
    pieces = tok.pieces(" " + term) if tok.space_prefix else tok.pieces(term)
    return [p for p in pieces if p.strip() != ""]


def boxes_text(zoo, terms, ratings: dict[str, str]) -> str:
    lines = []
    for tok in zoo:
        lines.append(f"{tok.name} [{ratings.get(tok.name, '')}]")
        for term in terms:
            pieces = term_pieces(tok, term)
            lines.append(f"  {term:<26} {len(pieces):>3}  " + "|".join(pieces))
    return "\n".join(lines)


def token_boxes(zoo, terms, bytes_per_token: dict[str, float], path):
    """Draw every tokenizer's split of every term. bytes_per_token: measured on the
    medical test text, per tokenizer name; the rating compares each to the best."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    _style()
    best = max(bytes_per_token.values())
    ratings = {n: rating(v, best) for n, v in bytes_per_token.items()}
    cmap = plt.get_cmap("Set3")
    n_rows = len(zoo) * len(terms)
    fig, ax = plt.subplots(figsize=(15, 0.24 * n_rows + 0.45 * len(zoo) + 1))
    y, char_w = 0.0, 0.11
    for tok in zoo:
        ax.text(0, y, f"{tok.name}  ({tok.family}, vocab {tok.vocab_size:,})  rating {ratings.get(tok.name, '?')}"
                f"  measured {bytes_per_token.get(tok.name, float('nan')):.2f} bytes/token",
                fontsize=7, fontweight="bold", va="center")
        y -= 0.3
        for term in terms:
            pieces = term_pieces(tok, term)
            ax.text(0, y, f"{term} ({len(pieces)})", fontsize=6, va="center")
            x = 3.2
            for i, p in enumerate(pieces):
                shown = p.replace(" ", "\u2423")
                w = char_w * max(1, len(shown)) + 0.06
                ax.add_patch(FancyBboxPatch((x, y - 0.1), w, 0.2, boxstyle="round,pad=0.01",
                                            fc=cmap(i % 12), ec="gray", lw=0.4))
                ax.text(x + w / 2, y, shown, fontsize=5.5, ha="center", va="center", family="monospace")
                x += w + 0.03
            y -= 0.24
        y -= 0.15
    ax.set_xlim(0, 12)
    ax.set_ylim(y, 0.3)
    ax.axis("off")
    ax.set_title("How each tokenizer splits medical terms inside running text (box = one token; \u2423 = space)", fontsize=10)
    text = boxes_text(zoo, terms, ratings)
    save_figure(fig, path, text)
    return fig, text

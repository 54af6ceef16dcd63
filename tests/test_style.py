"""The shared style: one theme, fixed palette, save in three formats."""

from __future__ import annotations

import pytest

from utils.training.text import human
from utils.training.viz.style import PALETTE, apply_style, new_figure, save_figure


def test_apply_style_sets_the_theme_and_palette():
    import matplotlib as mpl
    import matplotlib.style

    matplotlib.style.use("ggplot")  # as optuna's plots do, globally
    apply_style()
    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"][:3] == PALETTE["cycle"][:3]
    assert mpl.rcParams["savefig.bbox"] == "tight"


@pytest.mark.parametrize("suffix", ["png", "pdf", "svg"])
def test_save_figure_formats(tmp_path, suffix):
    fig = new_figure((4, 3))
    ax = fig.subplots()
    ax.plot([1, 2, 3], [3, 2, 1])
    path = save_figure(fig, tmp_path / "sub" / f"f.{suffix}", dpi=72)
    assert path.exists() and path.stat().st_size > 500


def test_save_figure_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError):
        save_figure(new_figure((2, 2)), tmp_path / "f.jpg")


def test_human():
    assert human(1_294_159_104) == "1.29B" and human(163840) == "164K" and human(12) == "12"

"""utils/look.py (`make look`): figure outputs found in a notebook, shown as a 1000 px
notebook cell shows them, and screenshotted by headless Chromium when it is installed."""

from __future__ import annotations

import shutil

import nbformat
import pytest

from utils.look import WIDTH, figure_outputs, figure_page, png_size, screenshot
from utils.training.viz.style import figure_png, new_figure


def _png(width_in: float, height_in: float) -> bytes:
    fig = new_figure((width_in, height_in))
    fig.subplots().plot([1, 2, 3], [3, 1, 2])
    return figure_png(fig, dpi=100, tight=False)


def test_every_image_output_is_found_and_shown_at_notebook_width(tmp_path):
    import base64

    wide, narrow = _png(20, 10), _png(5, 4)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")] + [
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(p).decode(), "text/plain": "f"})
        for p in (wide, narrow)]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell]
    found = figure_outputs(nb)
    assert [(c, o) for c, o, _ in found] == [(1, 1), (1, 2)]
    (w, h), (nw, nh) = png_size(wide), png_size(narrow)
    assert w > WIDTH > nw  # about 2000 and 500 px (the tight bounding box trims a little)
    assert figure_page(wide, tmp_path / "w.html") == round(h * WIDTH / w)  # scaled down to 1000 px wide
    assert figure_page(narrow, tmp_path / "n.html") == nh  # narrower: shown as it is


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (make look installs it)")
def test_chromium_screenshots_a_figure_as_shown(tmp_path):
    page = tmp_path / "fig.html"
    height = figure_page(_png(20, 10), page)
    shot = screenshot(page, tmp_path / "fig.png", height)
    assert png_size(shot.read_bytes()) == (WIDTH, height)


def test_the_lab_view_reads_each_figures_smallest_text_from_its_png():
    """utils/look_lab.py scales the PNG's "Smallest text px" chunk (written by style.figure_png)
    to the width JupyterLab shows it at; the value is the figure's smallest text, measured."""
    from utils.look_lab import KEY, png_text
    from utils.training.viz.style import DPI, SMALLEST_TEXT_KEY, text_heights

    assert KEY == SMALLEST_TEXT_KEY
    fig = new_figure((4, 3))
    ax = fig.subplots()
    ax.set_title("title", fontsize=12)
    ax.text(0.5, 0.5, "small", fontsize=7)
    meta = png_text(figure_png(fig))
    assert float(meta[KEY]) == pytest.approx(min(text_heights(fig, DPI, display_width=10**9))[0], abs=0.01)
    assert float(meta[KEY]) == pytest.approx(7 * DPI / 72, abs=0.01)


def test_the_live_frame_is_the_training_bar_mid_run():
    """utils/look_lab.py screenshots the first progress bar strictly between 0 and its max
    whose row counts optimizer steps (tqdm's widget: '12/30 [00:05<00:08, 2.1step/s]')."""
    from utils.look_lab import mid_run

    bars = [("0%", "run 0/30 [00:00<?, ?step/s]"), ("100%", "run 30/30 [00:20<00:00, 1.5step/s]"),
            ("40%", "Map: 40% 400/1000 [00:01<00:01, examples/s]"), ("", "not drawn yet"),
            ("40%", "notebook-run 12/30 [00:05<00:08, 2.1step/s, loss=5.2]")]
    assert mid_run(bars) == 4
    assert mid_run(bars, unit="") == 2  # any bar
    assert mid_run(bars[:2]) is None and mid_run([]) is None  # not started, finished


def test_the_live_run_is_a_fresh_smoke_copy_of_the_training_notebook(tmp_path):
    import json

    from utils.look_lab import LIVE_NOTEBOOK, ROOT, live_copy
    from utils.notebook_exec import INJECTED_TAG

    stale = tmp_path / "lab" / "live" / "workspace" / "old.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier look")
    path = live_copy(tmp_path)
    assert path == tmp_path / "lab" / "live" / f"{LIVE_NOTEBOOK}.live.ipynb" and not stale.exists()
    nb = nbformat.read(path, as_version=4)
    injected = [c for c in nb.cells if INJECTED_TAG in c.metadata.get("tags", [])]
    smoke = json.loads((ROOT / "tests" / "notebooks" / "smoke" / f"{LIVE_NOTEBOOK}.json").read_text())
    assert injected and all(f"{k} = {v!r}" in "\n".join(c.source for c in injected) for k, v in smoke.items())
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")

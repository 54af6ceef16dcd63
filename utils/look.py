"""`make look`: see the notebooks as a reader does, as PNGs under .look/.

Both notebooks run with their smoke parameters (tests/notebooks/smoke/NAME.json), or
executed copies are taken from .test-artifacts/notebooks/ (--from-artifacts). Each is
converted to HTML with nbconvert, and headless Chromium (Debian's `chromium`) screenshots
at 1000 px width, the width notebook outputs are shown at:

    .look/NAME.html                     the notebook as nbconvert HTML
    .look/NAME/page_NN.png              the full page, in slices of at most 8000 px
    .look/NAME/fig_CCC_K.png            every figure output (cell CCC, output K), as shown
    .look/index.txt                     each figure: its PNG's size and its size on screen

Nothing is served: Chromium opens the files directly, with networking features off.
Open the PNGs (any image viewer) and look. `make look` then opens the same executed
notebooks in a real JupyterLab (utils/look_lab.py: .look/lab/).

    python -m utils.look [--out .look] [--from-artifacts | --reuse] [--only NAME]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 1000  # px: notebook outputs are shown about this wide
SLICE = 8000  # px of page per full-page screenshot (Chromium's surface has a size limit)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("look: no chromium on PATH; `make look` installs it (apt-get install -y chromium)")


def _run_chromium(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="look-chromium-")
    try:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(page: Path, png: Path, height: int, width: int = WIDTH) -> Path:
    """PNG of `page` in a width x height window."""
    png.parent.mkdir(parents=True, exist_ok=True)
    r = _run_chromium([f"--screenshot={png}", f"--window-size={width},{max(1, height)}", page.as_uri()])
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot of {page}: {r.stderr[-2000:]}")
    return png


def page_height(page: Path, width: int = WIDTH) -> int:
    """The page's full height at `width`, read back from the DOM after load (--dump-dom)."""
    probe = page.with_name(page.stem + ".probe.html")
    script = ("<script>window.addEventListener('load',()=>{document.body.setAttribute('data-look-height',"
              "String(document.documentElement.scrollHeight));});</script>")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    try:
        r = _run_chromium(["--dump-dom", f"--window-size={width},1000", probe.as_uri()])
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(r'data-look-height="(\d+)"', r.stdout)
    if not m:
        raise RuntimeError(f"could not measure {page}: {r.stderr[-2000:]}")
    return int(m.group(1))


def full_page(page: Path, out_dir: Path) -> list[Path]:
    """The whole page in slices of SLICE px (each slice is the page shifted up)."""
    height = page_height(page)
    text = page.read_text(encoding="utf-8")
    shots = []
    for i, top in enumerate(range(0, height, SLICE), 1):
        shifted = page.with_name(f"{page.stem}.slice{i}.html")
        style = f"<style>html{{overflow:hidden}} body{{margin-top:-{top}px !important}}</style>"
        shifted.write_text(text.replace("</head>", style + "</head>"), encoding="utf-8")
        try:
            shots.append(screenshot(shifted, out_dir / f"page_{i:02d}.png", min(SLICE, height - top)))
        finally:
            shifted.unlink(missing_ok=True)
    return shots


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def figure_outputs(nb) -> list[tuple[int, int, bytes]]:
    """(cell index, output index, PNG bytes) of every image output, in order."""
    found = []
    for ci, cell in enumerate(nb.cells):
        for oi, out in enumerate(cell.get("outputs", [])):
            data = out.get("data", {}) if isinstance(out, dict) else {}
            if "image/png" in data:
                found.append((ci, oi, base64.b64decode(data["image/png"])))
    return found


def figure_page(png: bytes, path: Path) -> int:
    """A page showing one figure as a notebook does (max-width 100% of a 1000 px cell);
    returns its height on screen."""
    w, h = png_size(png)
    shown_h = round(h * min(1.0, WIDTH / w))
    b64 = base64.b64encode(png).decode()
    path.write_text(f"<!doctype html><html><body style='margin:0;background:white'>"
                    f"<img style='display:block;max-width:100%' src='data:image/png;base64,{b64}'>"
                    f"</body></html>", encoding="utf-8")
    return shown_h


def to_html(nb, path: Path) -> Path:
    try:
        from nbconvert import HTMLExporter
    except ImportError as e:
        raise SystemExit("look: needs nbconvert (pip install nbconvert; it is in requirements-dev.txt)") from e
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    path.write_text(body, encoding="utf-8")
    return path


def executed_notebook(name: str, out: Path, from_artifacts: bool, reuse: bool = False):
    import nbformat

    earlier = out / f"{name}.executed.ipynb"
    if reuse and earlier.exists() and earlier.stat().st_mtime > (ROOT / "notebooks" / f"{name}.ipynb").stat().st_mtime:
        return nbformat.read(earlier, as_version=4)
    if from_artifacts:
        # The test tier writes NAME.executed.ipynb, or NAME.smoke.ipynb for the training
        # notebook (tests/notebooks/test_training_notebook.py runs it with the smoke values).
        folder = ROOT / ".test-artifacts" / "notebooks"
        copies = [folder / f"{name}.{kind}.ipynb" for kind in ("executed", "smoke")]
        for copy in copies:
            if copy.exists():
                nb = nbformat.read(copy, as_version=4)
                nbformat.write(nb, earlier)  # the JupyterLab view (utils/look_lab.py) opens it from OUT
                return nb
        raise SystemExit(f"look: no executed copy at {copies[0]} or {copies[1].name}; run without "
                         "--from-artifacts to execute it")
    from utils.notebook_exec import execute_notebook

    smoke = ROOT / "tests" / "notebooks" / "smoke" / f"{name}.json"
    params = json.loads(smoke.read_text()) if smoke.exists() else {}
    target = out / f"{name}.executed.ipynb"
    with tempfile.TemporaryDirectory(prefix=f"look-{name}-") as work:
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        print(f"look: executing notebooks/{name}.ipynb with {smoke.relative_to(ROOT)} ...", flush=True)
        return execute_notebook(ROOT / "notebooks" / f"{name}.ipynb", params, workdir=Path(work), output_path=target,
                                timeout_per_cell=1800, env={"PYTHONPATH": pythonpath})


def look(names: list[str], out: Path, from_artifacts: bool = False, reuse: bool = False) -> list[str]:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for name in names:
        nb = executed_notebook(name, out, from_artifacts, reuse)
        page = to_html(nb, out / f"{name}.html")
        shots_dir = out / name
        if shots_dir.exists():
            shutil.rmtree(shots_dir)
        shots_dir.mkdir()
        pages = full_page(page, shots_dir)
        index.append(f"{name}: {len(pages)} page slice(s) in {shots_dir}")
        for ci, oi, png in figure_outputs(nb):
            holder = shots_dir / f"fig_{ci:03d}_{oi}.html"
            shown_h = figure_page(png, holder)
            shot = screenshot(holder, shots_dir / f"fig_{ci:03d}_{oi}.png", shown_h)
            holder.unlink()
            w, h = png_size(png)
            scale = min(1.0, WIDTH / w)
            index.append(f"  {shot.relative_to(out)}: cell {ci}, PNG {w}x{h} px, shown at "
                         f"{round(w * scale)}x{shown_h} px (scale {scale:.2f})")
    (out / "index.txt").write_text("\n".join(index) + "\n", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.look", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / ".look", help="where the PNGs go (default .look/)")
    p.add_argument("--from-artifacts", action="store_true",
                   help="take executed copies from .test-artifacts/notebooks/ instead of executing")
    p.add_argument("--reuse", action="store_true",
                   help="take OUT/NAME.executed.ipynb from an earlier look when newer than the notebook")
    p.add_argument("--only", action="append", help="a notebook name (repeatable; default: every notebook)")
    args = p.parse_args(argv)
    names = args.only or sorted(x.stem for x in (ROOT / "notebooks").glob("*.ipynb"))
    for line in look(names, args.out, args.from_artifacts, args.reuse):
        print(line)
    print(f"look: open the PNGs under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make look`'s JupyterLab view: the executed notebooks as a reader sees them in a real
frontend, next to the nbconvert pages of utils/look.py.

JupyterLab starts from this venv on 127.0.0.1 (a random token, its own settings and
workspace folders, so the layout is JupyterLab's default), Debian's Chromium opens each
executed notebook through chromium-driver (selenium) in a 1280 x 900 window with the file
browser open, and every image output is screenshotted as shown there:

    .look/lab/NAME/fig_NN.png      each figure output, as displayed
    .look/lab/NAME/window.png      the window at the notebook's top
    .look/lab/index.txt            each figure: displayed width and smallest text in px
    .look/lab/live/progress.png    the widget progress bar mid-run, during a smoke Run all
    .look/lab/live/window.png      the window at that moment

The live frame: the training notebook with its smoke parameters (tests/notebooks/smoke/)
is opened in the same JupyterLab and run with Run All; the DOM is polled for the
ipywidgets progress bar (tqdm.auto's widget) and the first time one shows a value between
0 and its max, its output and the window are screenshotted; then the kernel is shut down
(the rest of the run is what the executed copies show).

The smallest text comes from the PNG's own "Smallest text px" chunk (viz.style.png_metadata,
written where the figure is saved or shown), scaled by displayed / natural width.

    python -m utils.look_lab [--out .look] [--only NAME] [--no-live]   (needs OUT/NAME.executed.ipynb)
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINDOW = (1280, 900)  # JupyterLab at 1280 px with its file browser open shows outputs ~750 px wide
KEY = "Smallest text px"  # utils/training/viz/style.py SMALLEST_TEXT_KEY (not imported: no matplotlib here)
LIVE_NOTEBOOK = "training"  # the notebook whose smoke Run all gives the live progress frame
LIVE_TIMEOUT_S = 1200  # set-up, data and model before the first step: minutes on a busy 2-core CPU


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt/zTXt chunks of a PNG (matplotlib writes savefig's metadata as tEXt)."""
    out, i = {}, 8
    while i + 8 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        if kind == b"tEXt" and b"\0" in body:
            k, v = body.split(b"\0", 1)
            out[k.decode("latin-1")] = v.decode("latin-1")
        elif kind == b"zTXt" and b"\0" in body:
            k, v = body.split(b"\0", 1)
            out[k.decode("latin-1")] = zlib.decompress(v[1:]).decode("latin-1")
        elif kind == b"IEND":
            break
        i += 12 + n
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root_dir: Path, work: Path) -> tuple[subprocess.Popen, str]:
    """JupyterLab serving `root_dir` on 127.0.0.1; -> (process, base URL with its token)."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError as e:
        raise SystemExit("look: the JupyterLab view needs jupyterlab (pip install -r requirements-dev.txt)") from e
    port, token = _free_port(), secrets.token_hex(16)
    settings, workspaces = work / "settings", work / "workspaces"
    # Every cell rendered (JupyterLab 4 otherwise renders cells only near the viewport).
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text('{"windowingMode": "none"}')
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no pop-up over the outputs
    # The view only reads: no autosave rewriting the executed copies it opens (JupyterLab marks an
    # opened notebook dirty when its kernel starts, and would save it 2 minutes later).
    docs = settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text('{"autosave": false}')
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={root_dir}", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={workspaces}", "--ServerApp.disable_check_xsrf=True",
           # No announcements fetched: nothing outside this machine is asked for.
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           # window.jupyterapp: the live frame's Run All and kernel shutdown are JupyterLab commands
           "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root
        cmd.append("--allow-root")
    # The kernels it starts import the project (`utils`) as `make look`'s notebooks do.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen(cmd, stdout=(work / "lab.log").open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        if proc.poll() is not None:
            raise SystemExit("look: JupyterLab exited:\n" + (work / "lab.log").read_text()[-2000:])
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
            return proc, f"{url}|{token}"
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit("look: JupyterLab did not answer within 120 s")


def browser():
    """Headless Chromium through chromium-driver, WINDOW px, device scale 1."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise SystemExit("look: the JupyterLab view needs selenium (pip install -r requirements-dev.txt)") from e
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if binary is None or not Path(driver_path).exists():
        raise SystemExit("look: needs Debian's chromium and chromium-driver (`make look` installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--force-device-scale-factor=1",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def _wait(driver, script: str, timeout: float = 90.0, *args):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script, *args)
        if value:
            return value
        time.sleep(0.5)
    return None


FILE_BROWSER_OPEN = "const f=document.querySelector('#filebrowser'); return !!f && f.offsetWidth > 0;"
CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab shown (earlier ones stay in the DOM)
IMAGES = (f"return Array.from(document.querySelectorAll('{CURRENT} .jp-OutputArea-output img'))"
          ".filter(i => i.complete && i.naturalWidth > 0).length;")


def view(driver, base: str, rel: str, out_dir: Path) -> list[str]:
    """Open one notebook (path relative to the server root); screenshot each image output."""
    from selenium.webdriver.common.by import By

    url, token = base.split("|")
    driver.set_window_size(*WINDOW)
    driver.get(f"{url}/lab/tree/{rel}?token={token}")
    _wait(driver, "return !!document.querySelector('.jp-Notebook .jp-Cell');", 120)
    if not driver.execute_script(FILE_BROWSER_OPEN):  # JupyterLab's default opens it; make sure
        tab = driver.find_elements(By.CSS_SELECTOR, "li[data-id='filebrowser']")
        if tab:
            tab[0].click()
            _wait(driver, FILE_BROWSER_OPEN, 10)
    # The notebook panel renders cells lazily as they scroll into view: scroll to the end in steps.
    driver.execute_script(f"""const s=document.querySelector('{CURRENT} .jp-WindowedPanel-outer');
        window.__lookScroller = s;""")
    last = -1
    for _ in range(400):
        driver.execute_script("const s=window.__lookScroller; if (s) s.scrollTop += 700;")
        time.sleep(0.15)
        pos = driver.execute_script("const s=window.__lookScroller; return s ? s.scrollTop : 0;")
        if pos == last:
            break
        last = pos
    _wait(driver, IMAGES, 20)
    out_dir.mkdir(parents=True, exist_ok=True)
    driver.execute_script("const s=window.__lookScroller; if (s) s.scrollTop = 0;")
    time.sleep(0.5)
    driver.save_screenshot(str(out_dir / "window.png"))
    inner, browser_w = driver.execute_script(
        "const f=document.querySelector('#filebrowser'); return [window.innerWidth, f ? f.offsetWidth : 0];")
    lines = [f"{rel}: window {inner} px wide, file browser "
             f"{f'open ({browser_w} px)' if driver.execute_script(FILE_BROWSER_OPEN) else 'CLOSED'}"]
    images = driver.find_elements(By.CSS_SELECTOR, f"{CURRENT} .jp-OutputArea-output img")
    for k, img in enumerate(images):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
        time.sleep(0.3)
        shown_w, natural_w = driver.execute_script(
            "const r=arguments[0].getBoundingClientRect(); return [r.width, arguments[0].naturalWidth];", img)
        if not shown_w:  # not displayed (a collapsed or hidden output): nothing a reader sees
            lines.append(f"  image {k}: not displayed (PNG {natural_w} px wide)")
            continue
        src = img.get_attribute("src") or ""
        smallest = "n/a"
        if src.startswith("data:image/png;base64,"):
            import base64

            meta = png_text(base64.b64decode(src.split(",", 1)[1]))
            if KEY in meta and natural_w:
                smallest = f"{float(meta[KEY]) * shown_w / natural_w:.1f} px"
        shot = out_dir / f"fig_{k:02d}.png"
        height = driver.execute_script("return arguments[0].getBoundingClientRect().height;", img)
        if height > WINDOW[1] - 200:  # a tall figure: a taller window, same width, so all of it is on screen
            driver.set_window_size(WINDOW[0], int(height) + 400)
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
            time.sleep(0.5)
        img.screenshot(str(shot))
        driver.set_window_size(*WINDOW)
        lines.append(f"  {shot.name}: shown {shown_w:.0f} px wide (PNG {natural_w} px), smallest text {smallest}")
    return lines


# -- the live progress bar during a smoke Run all ---------------------------------------

# [style.width ("40%"), the text of its widget row] of every ipywidgets progress bar in
# the live notebook's panel, in order (tqdm's widget: an HBox of description, bar and counts).
PROGRESS = ("const p = document.getElementById(window.__lookLive || ''); if (!p) return [];"
            "return Array.from(p.querySelectorAll('.widget-hprogress .progress-bar'))"
            ".map(b => {const row = b.closest('.widget-hbox'); "
            "return [b.style.width, row ? row.innerText : ''];});")
# The live notebook's panel (found by its path, not as "the current one": JupyterLab may
# restore other tabs), made current; its id kept in window.__lookLive. -> the id, or null.
FIND_LIVE = ("const app = window.jupyterapp; if (!app) return null;"
             "const w = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === arguments[0]);"
             "if (!w) return null; app.shell.activateById(w.id); window.__lookLive = w.id;"
             "return app.shell.currentWidget === w ? w.id : null;")
LIVE_KERNEL_IDLE = ("const app = window.jupyterapp;"
                    "const w = Array.from(app.shell.widgets('main')).find(w => w.id === window.__lookLive);"
                    "const k = w && w.sessionContext.session && w.sessionContext.session.kernel;"
                    "return !!k && k.status === 'idle';")
LIVE_SHUTDOWN = ("const app = window.jupyterapp;"
                 "const w = app && Array.from(app.shell.widgets('main')).find(w => w.id === window.__lookLive);"
                 "if (w) w.sessionContext.shutdown();")


def mid_run(bars: list, unit: str = "step") -> int | None:
    """Index of the first progress bar whose width (the widget's value) lies strictly
    between 0% and 100% of its max and whose row names `unit` (the training bar counts
    optimizer steps: '12/30 [00:05<00:08, 2.1step/s]'; '' = any bar); None when none does
    (not started, or finished)."""
    for i, (width, text) in enumerate(bars):
        try:
            pct = float(str(width).strip().rstrip("%"))
        except ValueError:
            continue
        if 0.0 < pct < 100.0 and unit in str(text):
            return i
    return None


def live_copy(out: Path, name: str = LIVE_NOTEBOOK) -> Path:
    """OUT/lab/live/NAME.live.ipynb: the notebook with its smoke parameters injected and no
    outputs, in a fresh folder (its workspace is made beside it, under the server root)."""
    import json

    import nbformat

    from utils.notebook_exec import inject_parameters

    live_dir = out / "lab" / "live"
    if live_dir.exists():
        shutil.rmtree(live_dir)
    live_dir.mkdir(parents=True)
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    smoke = ROOT / "tests" / "notebooks" / "smoke" / f"{name}.json"
    inject_parameters(nb, json.loads(smoke.read_text()) if smoke.exists() else {}, notebook_name=name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    path = live_dir / f"{name}.live.ipynb"
    nbformat.write(nb, path)
    return path


def live_frame(driver, base: str, out: Path, name: str = LIVE_NOTEBOOK, timeout: float = LIVE_TIMEOUT_S) -> list[str]:
    """Run All of the smoke copy of `name` in JupyterLab; screenshot the progress widget the
    first time it is mid-run (lab/live/progress.png, window.png); shut the kernel down."""
    path = live_copy(out, name)
    live_dir = path.parent
    rel = path.relative_to(out).as_posix()
    url, token = base.split("|")
    driver.set_window_size(*WINDOW)
    # A workspace of its own, reset: only this notebook open (the view's tabs are not restored).
    driver.get(f"{url}/lab/workspaces/look-live/tree/{rel}?reset&token={token}")
    _wait(driver, "return !!document.querySelector('.jp-Notebook .jp-Cell');", 120)
    if not _wait(driver, FIND_LIVE, 60, rel):
        return [f"{path.name}: live frame: JupyterLab did not open {rel}"]
    if not _wait(driver, LIVE_KERNEL_IDLE, 180):
        return [f"{path.name}: live frame: the kernel did not start within 180 s"]
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    t0, found = time.monotonic(), None
    try:
        while time.monotonic() - t0 < timeout:
            found = mid_run(driver.execute_script(PROGRESS) or [])
            if found is not None:
                break
            time.sleep(0.25)
        if found is None:
            return [f"{path.name}: live frame: no progress bar mid-run within {timeout:.0f} s of Run All"]
        bar = driver.execute_script("return document.getElementById(window.__lookLive)"
                                    ".querySelectorAll('.widget-hprogress .progress-bar')[arguments[0]];", found)
        output = driver.execute_script("return arguments[0].closest('.jp-OutputArea-output');", bar) or bar
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", output)
        width = driver.execute_script("return arguments[0].style.width;", bar)
        output.screenshot(str(live_dir / "progress.png"))
        driver.save_screenshot(str(live_dir / "window.png"))
        text = " ".join((driver.execute_script("return arguments[0].innerText;", output) or "").split())
        return [f"{path.name}: live frame {time.monotonic() - t0:.0f} s after Run All, bar at {width}: {text!r}",
                "  live/progress.png, live/window.png"]
    finally:
        # The rest of the run is what the executed copies show: free the CPU.
        driver.execute_script(LIVE_SHUTDOWN)
        time.sleep(2)


def look_lab(names: list[str], out: Path, live: bool = True) -> list[str]:
    out = out.resolve()
    lab_dir = out / "lab"
    lab_dir.mkdir(parents=True, exist_ok=True)
    missing = [n for n in names if not (out / f"{n}.executed.ipynb").exists()]
    if missing:
        raise SystemExit(f"look: no executed copies of {missing} under {out}; run `python -m utils.look` first")
    index = []
    with tempfile.TemporaryDirectory(prefix="look-lab-") as work:
        proc, base = start_lab(out, Path(work))
        driver = None
        try:
            driver = browser()
            for name in names:
                index += view(driver, base, f"{name}.executed.ipynb", lab_dir / name)
            if live and LIVE_NOTEBOOK in names:
                index += live_frame(driver, base, out)
        finally:
            if driver is not None:
                driver.quit()
            proc.terminate()
            proc.wait(timeout=30)
    (lab_dir / "index.txt").write_text("\n".join(index) + "\n", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.look_lab", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / ".look")
    p.add_argument("--only", action="append", help="a notebook name (repeatable; default: every notebook)")
    p.add_argument("--no-live", action="store_true",
                   help=f"skip the live progress frame (a smoke Run all of {LIVE_NOTEBOOK})")
    args = p.parse_args(argv)
    names = args.only or sorted(x.stem for x in (ROOT / "notebooks").glob("*.ipynb"))
    for line in look_lab(names, args.out, live=not args.no_live):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

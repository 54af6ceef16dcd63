"""The training notebook end to end (the slow tier), as a user would run it:

- with the smoke parameters on CPU: no error output, figures saved as files and embedded once;
- run again on the same workspace: it resumes at the saved step;
- in a fake Colab (google.colab stand-in: Drive, Secrets, downloads) with a canary W&B key:
  the Colab paths write to the fake Drive, and when the VM's local disk is lost the next
  run restores the database and resumes from the checkpoints on Drive; the key appears
  in no output, file or database.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from utils.notebook_exec import NotebookExecutionError, execute_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "training.ipynb"
SMOKE = json.loads((Path(__file__).parent / "smoke" / "training.json").read_text())
FAKE_COLAB = Path(__file__).parent / "fake_colab"
ARTIFACTS = ROOT / ".test-artifacts" / "notebooks"
CANARY = "canary0123456789abcdef0123456789abcdef0123"  # 40 chars, like a real W&B key
RESUME = {"run_search": False, "time_presets": ""}  # later runs skip the study and the timing table

pytestmark = pytest.mark.slow


def run(workdir: Path, params: dict, name: str, env: dict | None = None) -> nbformat.NotebookNode:
    pythonpath = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    if env and "PYTHONPATH" in env:
        pythonpath.insert(0, env.pop("PYTHONPATH"))
    output = ARTIFACTS / f"training.{name}.ipynb"
    try:
        return execute_notebook(NOTEBOOK, params, workdir=workdir, output_path=output, timeout_per_cell=900,
                                env={"PYTHONPATH": os.pathsep.join(p for p in pythonpath if p), **(env or {})})
    except NotebookExecutionError as err:
        pytest.fail(f"{err}\n(executed copy: {output})", pytrace=False)


def texts(nb, stream: str = "stdout") -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream" and o.name == stream)


def images_per_cell(nb) -> dict[int, int]:
    out = {}
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            n = sum("image/png" in o.get("data", {}) for o in c.outputs)
            if n:
                out[i] = n
    return out


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("training-notebook")
    return workdir, run(workdir, SMOKE, "smoke")


def test_smoke_run_has_no_error_output(local_run):
    _, nb = local_run
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert texts(nb, "stderr") == ""
    out = texts(nb)
    assert "completed at step 30" in out
    assert "Starting run notebook-run from step 0" in out


def test_figures_are_files_and_embedded_once(local_run):
    workdir, nb = local_run
    ws = workdir / "workspace"
    for path in ("runs/notebook-run/dashboard.png", "runs/notebook-run/live.png",
                 "results/notebook-run_analysis.png", "results/comparison.png",
                 "results/notebook-run_metrics.csv", "results/notebook-run_artifacts.zip"):
        assert (ws / path).is_file(), path
    per_cell = images_per_cell(nb)
    sources = {i: nb.cells[i].source for i in per_cell}
    live = [i for i, s in sources.items() if "session.train()" in s]
    assert len(live) == 1 and per_cell[live[0]] == 1  # the live figure is updated in place, not appended
    search = [i for i, s in sources.items() if "run_study" in s]
    assert len(search) == 1 and per_cell[search[0]] == len(list((ws / "results/hpo/notebook-study").glob("*.png")))
    assert all(n == 1 for i, n in per_cell.items() if i not in search)


def test_the_search_ran_its_trials_and_saved_the_best_config(local_run):
    workdir, nb = local_run
    hpo = workdir / "workspace" / "results" / "hpo" / "notebook-study"
    assert len((hpo / "trials.csv").read_text().strip().splitlines()) == 1 + SMOKE["n_trials"]
    assert (workdir / "workspace" / "configs" / "notebook-study-best.json").is_file()


def test_second_execution_resumes_at_the_saved_step(local_run):
    workdir, _ = local_run
    nb = run(workdir, {**SMOKE, **RESUME}, "resumed")
    out = texts(nb)
    assert "Resuming run notebook-run from step 30" in out
    assert "completed at step 30" in out
    assert texts(nb, "stderr") == ""


def test_bad_form_value_stops_before_training_naming_the_field(tmp_path):
    with pytest.raises(pytest.fail.Exception) as info:
        run(tmp_path, {**SMOKE, **RESUME, "learning_rate": -1.0}, "bad-form")
    message = str(info.value)
    assert "learning_rate = -1.0" in message and "must be in" in message
    assert not (tmp_path / "workspace" / "runs" / "notebook-run" / "checkpoints").exists()


def test_colab_paths_resume_from_drive_and_never_leak_the_key(tmp_path):
    drive, vm, mount = tmp_path / "my-drive", tmp_path / "vm-disk", tmp_path / "mnt"
    env = {
        "PYTHONPATH": str(FAKE_COLAB),
        "FAKE_COLAB_DRIVE": str(drive),
        "FAKE_COLAB_SECRETS": json.dumps({"WANDB_API_KEY": CANARY}),
        "FAKE_COLAB_DOWNLOADS": str(tmp_path / "downloads"),
        "WANDB_API_KEY": CANARY,
        "WANDB_MODE": "",  # let the notebook's choice (online, falling back) stand
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # nothing listens: online fails fast, then offline
    }
    params = {**SMOKE, **RESUME, "drive_mount_point": str(mount), "local_dir": str(vm), "use_wandb": True,
              "wandb_mode": "online"}
    first = run(tmp_path, params, "colab", env=dict(env))
    out = texts(first)
    assert "Colab: True" in out
    root = drive / "slm-workspace"
    for path in ("experiments.db", "runs/notebook-run/run.json", "runs/notebook-run/dashboard.png",
                 "runs/notebook-run/model/config.json", "results/notebook-run_metrics.csv"):
        assert (root / path).is_file(), path
    assert list((root / "runs/notebook-run/checkpoints").glob("step_*.pt")), "checkpoints mirrored to Drive"
    assert (vm / "experiments.db").is_file() and list((vm / "runs/notebook-run/checkpoints").glob("step_*.pt"))
    assert list((tmp_path / "downloads").glob("*.zip")), "files.download got the artifacts zip"

    shutil.rmtree(vm)  # the runtime died: the VM's disk is gone, Drive is not
    second = run(tmp_path, params, "colab-resumed", env=dict(env))
    assert "Resuming run notebook-run from step 30" in texts(second)

    for nb in (first, second):
        assert CANARY not in json.dumps(nb)
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and CANARY.encode() in p.read_bytes()]
    assert leaks == []

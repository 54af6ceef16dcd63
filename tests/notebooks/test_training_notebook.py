"""The training notebook end to end (the slow tier), as a user would run it:

- with the smoke parameters on CPU: no error output, figures saved as files and embedded once;
- run again on the same workspace: it resumes at the saved step;
- in a played bare Colab runtime (tests/notebooks/played_colab.py) with a canary W&B key:
  the set-up cell clones and installs, the runtime dies mid-training, and Run all on a
  fresh runtime restores the database and resumes from the checkpoints on Drive, ending
  at the uninterrupted run's val_loss; the key appears in no output, file or database;
- with papermill, which injects all values after the first form only.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import nbformat
import pytest

from played_colab import files_containing, installed_distributions, played_colab
from utils.notebook_exec import NotebookExecutionError, execute_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "training.ipynb"
SMOKE = json.loads((Path(__file__).parent / "smoke" / "training.json").read_text())
ARTIFACTS = ROOT / ".test-artifacts" / "notebooks"
# 40 characters like a real W&B key, random per session: no source file (the clone holds them all) can contain it.
CANARY = "canary" + secrets.token_hex(17)
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
    # What GitHub and nbviewer show of the progress bar: its final state.
    bars = [o["data"]["text/plain"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "notebook-run:" in o.get("data", {}).get("text/plain", "")]
    assert len(bars) == 1 and "30/30" in bars[0] and "100%" in bars[0]


def test_figures_are_files_and_embedded_once(local_run):
    workdir, nb = local_run
    ws = workdir / "workspace"
    for path in ("runs/notebook-run/dashboard.png", "runs/notebook-run/live.png",
                 "results/notebook-run_analysis.png", "results/comparison.png",
                 "results/notebook-run_metrics.csv", "results/notebook-run_artifacts.zip"):
        assert (ws / path).is_file(), path
    per_cell = images_per_cell(nb)
    sources = {i: nb.cells[i].source for i in per_cell}
    live = [i for i, s in sources.items() if "session.train(" in s]
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


def final_val_loss(db_path: Path, run_name: str = "notebook-run") -> tuple[int, float]:
    from utils.training import ExperimentDB

    db = ExperimentDB(db_path)
    try:
        metrics = db.get_metrics(db.get_run(run_name)["run_id"])
    finally:
        db.close()
    val = metrics[metrics.metric_name == "val_loss"].sort_values("step")
    return int(val.step.iloc[-1]), float(val.value.iloc[-1])


def test_played_colab_runtime_dies_and_run_all_resumes_from_drive(local_run, tmp_path):
    """The badge's path on a bare runtime (tests/notebooks/played_colab.py): clone, install,
    Run all; the runtime dies after the checkpoint of step 20; Run all again on a fresh VM:
    clone again, database restored from Drive, training resumed at step 20 and finished
    with the val_loss of the uninterrupted run. The W&B key in Secrets leaks nowhere."""
    colab = played_colab(tmp_path, secrets={"WANDB_API_KEY": CANARY})
    params = {**SMOKE, **RESUME, "drive_mount_point": str(colab.vm / "drive"), "local_dir": str(colab.vm / "local"),
              "use_wandb": True, "wandb_mode": "online"}
    wandb_env = {"WANDB_MODE": "",  # let the notebook's choice (online, falling back) stand
                 "WANDB_BASE_URL": "http://127.0.0.1:9"}  # nothing listens: online fails fast, then offline
    before = installed_distributions()

    died = ARTIFACTS / "training.played-colab.ipynb"
    with pytest.raises(NotebookExecutionError, match="DeadKernelError"):
        colab.run_all(NOTEBOOK, params, died, FAKE_COLAB_DIE_AT_STEP="20",
                      FAKE_COLAB_DEATH_NOTE=str(colab.base / "death.txt"), **wandb_env)
    first = nbformat.read(died, as_version=4)
    out = texts(first)
    assert "Colab: True" in out
    assert f"{colab.origin.as_uri()} at played-colab" in out and f"in {colab.clone_dir}" in out
    assert "Starting run notebook-run from step 0" in out
    assert "the runtime dies after the checkpoint of step 20" in (colab.base / "death.txt").read_text()
    assert installed_distributions() == before, "the set-up cell's pip install changed the venv"
    root = colab.drive / "slm-workspace"
    assert (root / "experiments.db").is_file()
    assert (root / "runs/notebook-run/checkpoints/step_00000020.pt").is_file()

    colab.runtime_dies()
    resumed = ARTIFACTS / "training.played-colab-resumed.ipynb"
    try:
        second = colab.run_all(NOTEBOOK, params, resumed, **wandb_env)
    except NotebookExecutionError as err:
        pytest.fail(f"{err}\n(executed copy: {resumed})", pytrace=False)
    out = texts(second)
    assert f"{colab.origin.as_uri()} at played-colab" in out, "the clone happened again"
    assert "experiments database restored from" in out
    assert "Resuming run notebook-run from step 20" in out
    assert "completed at step 30" in out
    for path in ("runs/notebook-run/run.json", "runs/notebook-run/dashboard.png", "runs/notebook-run/model/config.json",
                 "results/notebook-run_metrics.csv"):
        assert (root / path).is_file(), path
    assert list(colab.downloads.glob("*.zip")), "files.download got the artifacts zip"
    # The same final val_loss as the uninterrupted smoke run of the same config.
    workdir, _ = local_run
    assert final_val_loss(root / "experiments.db") == final_val_loss(workdir / "workspace" / "experiments.db")

    for nb in (first, second):
        assert CANARY not in json.dumps(nb)
    assert files_containing(tmp_path, CANARY) == []


def test_papermill_sets_values_that_live_in_different_forms(tmp_path):
    """papermill injects every -p value after the FIRST form (the set-up form); the set-up
    cell keeps them over the later forms' defaults (utils.notebook_forms), so -p preset
    (configuration form), -p vocab_size (data form) and -p workspace_dir (set-up form) all hold."""
    import subprocess
    import sys

    out, ws = tmp_path / "out.ipynb", tmp_path / "W"
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(out), "--cwd", str(ROOT / "notebooks"),
           "-p", "preset", "smoke", "-p", "workspace_dir", str(ws), "-p", "vocab_size", "512",
           "-p", "time_presets", "smoke", "-p", "use_drive", "False", "--no-progress-bar"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    first_form = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert "injected-parameters" in nb.cells[first_form + 1].metadata.get("tags", [])  # papermill's one cell
    printed = texts(nb)
    assert "preset = 'smoke' (given by the runner; the form says 'fast')" in printed
    assert "vocab_size = 512 (given by the runner; the form says 4096)" in printed
    assert "completed at step 30" in printed
    config = json.loads((ws / "runs" / "notebook-run" / "config.json").read_text())
    assert (config["d_model"], config["n_layer"], config["vocab_size"]) == (64, 2, 512)  # the smoke preset's model

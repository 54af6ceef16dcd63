"""The execution tier: every notebooks/*.ipynb runs top to bottom with its smoke parameters,
in a played bare Colab runtime (tests/notebooks/played_colab.py): the .ipynb alone in an
empty folder, the repository nowhere on the kernel's path, so the notebook's set-up cell
clones it (from a tagged local clone) and installs its requirements (all present already).

Parameters come from tests/notebooks/smoke/NAME.json ({} when absent) and are injected
after the forms that own them. The executed copy is kept under .test-artifacts/notebooks/.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from played_colab import installed_distributions, outputs, played_colab
from utils.notebook_exec import PARAMETERS_TAG, NotebookExecutionError

ROOT = Path(__file__).resolve().parents[2]
# Notebooks with a module of their own here run there, with more checks, not twice.
DEDICATED = {"training": "test_training_notebook.py"}
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if p.stem not in DEDICATED)
SMOKE_DIR = Path(__file__).resolve().parent / "smoke"
ARTIFACTS = ROOT / ".test-artifacts" / "notebooks"
CELL_TIMEOUT = int(os.environ.get("NOTEBOOK_CELL_TIMEOUT", "900"))


def smoke_parameters(name: str) -> dict:
    path = SMOKE_DIR / f"{name}.json"
    if not path.exists():
        return {}
    params = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(params, dict):
        raise ValueError(f"{path}: must hold a JSON object of parameter names to values")
    return params


def parameter_names(notebook: Path) -> set[str]:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    names: set[str] = set()
    for cell in nb.cells:
        if PARAMETERS_TAG in cell.metadata.get("tags", []):
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


@pytest.mark.parametrize("smoke_file", sorted(SMOKE_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_smoke_parameters_name_real_form_fields(smoke_file: Path):
    notebook = ROOT / "notebooks" / f"{smoke_file.stem}.ipynb"
    assert notebook.exists(), f"{smoke_file} has no notebook {notebook}"
    unknown = set(smoke_parameters(smoke_file.stem)) - parameter_names(notebook)
    assert not unknown, f"{smoke_file}: {sorted(unknown)} are not assigned in the notebook's parameters cell"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_all_on_a_played_bare_colab_runtime(notebook: Path, tmp_path: Path):
    colab = played_colab(tmp_path)
    output = ARTIFACTS / f"{notebook.stem}.executed.ipynb"
    before = installed_distributions()
    try:
        nb = colab.run_all(notebook, smoke_parameters(notebook.stem), output, timeout_per_cell=CELL_TIMEOUT)
    except NotebookExecutionError as err:
        pytest.fail(f"{err}\n(executed copy: {output})", pytrace=False)
    printed = outputs(nb)
    assert f"{colab.origin.as_uri()} at played-colab" in printed and f"library at {colab.clone_dir}" in printed
    assert (colab.clone_dir / "requirements-training.txt").is_file()
    assert installed_distributions() == before, "the set-up cell's pip install changed the venv"

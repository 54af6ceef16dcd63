"""The execution tier: every notebooks/*.ipynb runs top to bottom with its smoke parameters.

Parameters come from tests/notebooks/smoke/NAME.json ({} when absent) and are injected
after the notebook's parameters cell. Each notebook runs in its own temp folder with the
repository on PYTHONPATH; the executed copy is kept under .test-artifacts/notebooks/.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from utils.notebook_exec import PARAMETERS_TAG, NotebookExecutionError, execute_notebook

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
def test_notebook_executes_with_smoke_parameters(notebook: Path, tmp_path: Path):
    output = ARTIFACTS / f"{notebook.stem}.executed.ipynb"
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    try:
        execute_notebook(
            notebook,
            smoke_parameters(notebook.stem),
            workdir=tmp_path,
            output_path=output,
            timeout_per_cell=CELL_TIMEOUT,
            env={"PYTHONPATH": pythonpath},
        )
    except NotebookExecutionError as err:
        pytest.fail(f"{err}\n(executed copy: {output})", pytrace=False)

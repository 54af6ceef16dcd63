"""utils/notebook_exec.py: parameter injection, failure reports, the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from utils.notebook_exec import (
    INJECTED_TAG,
    NotebookExecutionError,
    _parse_parameter,
    execute_notebook,
    inject_parameters,
    main,
)

ROOT = Path(__file__).resolve().parents[1]


def tiny_notebook(path: Path, *code_cells: str, parameters: str | None = 'greeting = "hello"') -> Path:
    cells = [nbformat.v4.new_markdown_cell("# Tiny")]
    if parameters is not None:
        cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    cells += [nbformat.v4.new_code_cell(source) for source in code_cells]
    nb = nbformat.v4.new_notebook(cells=cells)
    for index, cell in enumerate(nb.cells):
        cell.id = f"tiny-{index}"
    nbformat.write(nb, path)
    return path


def outputs_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_injected_cell_follows_the_parameters_cell(tmp_path):
    params = 'greeting = "hello"\nsteps = 1\nflags = []'
    nb = nbformat.read(tiny_notebook(tmp_path / "t.ipynb", "print(greeting)", parameters=params), as_version=4)
    inject_parameters(nb, {"greeting": "hi", "steps": 3, "flags": [True, None]})
    injected = nb.cells[2]
    assert injected.metadata.tags == [INJECTED_TAG]
    assert "greeting = 'hi'\nsteps = 3\nflags = [True, None]" in injected.source
    assert injected.id == "tiny-1-injected"
    nbformat.validate(nb)
    # Injecting again replaces the cell rather than stacking a second one.
    inject_parameters(nb, {"greeting": "again"})
    assert sum(INJECTED_TAG in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert "greeting = 'again'" in nb.cells[2].source


def test_no_parameters_means_no_injected_cell(tmp_path):
    nb = nbformat.read(tiny_notebook(tmp_path / "t.ipynb", "print(1)", parameters=None), as_version=4)
    inject_parameters(nb, {})
    assert len(nb.cells) == 2


def test_parameters_without_a_parameters_cell_are_refused(tmp_path):
    nb = nbformat.read(tiny_notebook(tmp_path / "t.ipynb", "print(1)", parameters=None), as_version=4)
    with pytest.raises(ValueError, match="preset.*0 cells tagged 'parameters'"):
        inject_parameters(nb, {"preset": "cpu"}, notebook_name="t.ipynb")
    with_params = nbformat.read(tiny_notebook(tmp_path / "p.ipynb", "print(1)"), as_version=4)
    with pytest.raises(ValueError, match="not a Python identifier"):
        inject_parameters(with_params, {"bad-name": 1})


def test_each_form_gets_its_own_values_and_unknown_names_are_refused(tmp_path):
    nb = nbformat.read(tiny_notebook(tmp_path / "t.ipynb", "print(greeting)"), as_version=4)
    second = nbformat.v4.new_code_cell('steps = 3  #@param {type:"integer"}', metadata={"tags": ["parameters"]})
    second.id = "tiny-form-2"
    nb.cells.append(second)
    inject_parameters(nb, {"greeting": "hi", "steps": 7})
    kinds = [(c.id, c.source.splitlines()[-1]) for c in nb.cells if c.cell_type == "code"]
    assert kinds == [("tiny-1", 'greeting = "hello"'), ("tiny-1-injected", "greeting = 'hi'"),
                     ("tiny-2", "print(greeting)"), ("tiny-form-2", 'steps = 3  #@param {type:"integer"}'),
                     ("tiny-form-2-injected", "steps = 7")]
    with pytest.raises(ValueError, match="stepz not assigned in any parameters cell"):
        inject_parameters(nb, {"stepz": 1})


def test_command_line_values_are_read_as_json_else_text():
    assert _parse_parameter("steps=10") == ("steps", 10)
    assert _parse_parameter("lr=3e-4") == ("lr", 3e-4)
    assert _parse_parameter("resume=true") == ("resume", True)
    assert _parse_parameter("preset=cpu") == ("preset", "cpu")
    assert _parse_parameter("path=/a=b") == ("path", "/a=b")


def test_the_executor_does_not_import_torch():
    code = "import sys, utils.notebook_exec; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.slow
def test_execution_injects_parameters_in_workdir_with_this_python(tmp_path):
    notebook = tiny_notebook(
        tmp_path / "ok.ipynb",
        "import os, sys\nprint(greeting, os.getcwd(), sys.executable, os.environ['TINY_FLAG'])",
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    out = tmp_path / "out" / "ok.executed.ipynb"
    nb = execute_notebook(notebook, {"greeting": "bonjour"}, workdir=workdir, output_path=out,
                          timeout_per_cell=120, env={"TINY_FLAG": "set"})
    printed = outputs_text(nb.cells[-1]).split()
    assert printed == ["bonjour", str(workdir.resolve()), sys.executable, "set"]
    assert out.exists() and outputs_text(nbformat.read(out, as_version=4).cells[-1]).startswith("bonjour")
    # The source notebook is never written to.
    assert INJECTED_TAG not in notebook.read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_raising_cell_is_named_and_the_partial_notebook_kept(tmp_path):
    notebook = tiny_notebook(
        tmp_path / "bad.ipynb",
        'print("first cell ran")',
        "# compute the ratio\nvalues = []\nratio = 1 / len(values)",
        'print("never")',
    )
    out = tmp_path / "bad.executed.ipynb"
    with pytest.raises(NotebookExecutionError) as info:
        execute_notebook(notebook, {}, workdir=tmp_path, output_path=out, timeout_per_cell=120)
    err = info.value
    assert err.cell_index == 3
    message = str(err)
    assert message.startswith(f"{notebook}: cell 3 failed")
    assert "# compute the ratio" in message
    assert "ZeroDivisionError: division by zero" in message
    assert "ratio = 1 / len(values)" in message  # the traceback tail
    assert "\x1b[" not in message
    assert "(cell" not in message  # nothing injected: the executed copy has the same indices
    partial = nbformat.read(out, as_version=4)
    assert outputs_text(partial.cells[2]) == "first cell ran\n"
    assert partial.cells[4].outputs == []


@pytest.mark.slow
def test_a_cell_past_its_timeout_is_named(tmp_path):
    notebook = tiny_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)")
    with pytest.raises(NotebookExecutionError) as info:
        execute_notebook(notebook, {}, workdir=tmp_path, output_path=None, timeout_per_cell=2)
    assert info.value.cell_index == 2 and info.value.executed_index == 2
    assert "CellTimeoutError" in str(info.value) and "time.sleep(60)" in str(info.value)


@pytest.mark.slow
def test_command_line_reports_the_failing_cell(tmp_path, capsys):
    notebook = tiny_notebook(tmp_path / "cli.ipynb", "raise RuntimeError(f'bad {greeting}')")
    out = tmp_path / "cli.executed.ipynb"
    code = main([str(notebook), "--out", str(out), "--workdir", str(tmp_path / "w"), "-p", "greeting=input",
                 "--timeout", "120"])
    assert code == 1
    err = capsys.readouterr().err
    assert "cli.ipynb: cell 2 (cell 3 of the executed copy) failed" in err
    assert "RuntimeError: bad input" in err
    assert out.exists()


@pytest.mark.slow
def test_a_failing_injected_cell_is_named_as_such(tmp_path):
    notebook = tiny_notebook(tmp_path / "inj.ipynb", "print(greeting)")
    with pytest.raises(NotebookExecutionError) as info:
        # A value whose repr is not valid Python fails in the injected cell itself.
        execute_notebook(notebook, {"greeting": object()}, workdir=tmp_path, timeout_per_cell=120)
    assert info.value.cell_index is None and info.value.executed_index == 2
    assert "the injected parameters cell (cell 2 of the executed copy) failed" in str(info.value)

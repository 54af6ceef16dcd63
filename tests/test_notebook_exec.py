"""utils/notebook_exec.py: parameter injection, failure reports, the command line."""

from __future__ import annotations

import os
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
    form_types,
    inject_parameters,
    main,
    read_parameters,
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


FORM = """# @title Form
run_search = False  #@param {type:"boolean"}
steps = 3  #@param {type:"integer"}
size_mb = 0.3  #@param {type:"number"}
lr = None  #@param {type:"raw"}
name = "x"  #@param {type:"string"}
preset = "fast"  #@param ["smoke", "fast"]
legacy = 1  #@param"""


def test_command_line_values_are_read_by_the_forms_declared_type(tmp_path):
    assert _parse_parameter("path=/a=b") == ("path", "/a=b")
    nb = nbformat.read(tiny_notebook(tmp_path / "t.ipynb", "print(1)", parameters=FORM), as_version=4)
    assert form_types(nb)["preset"] == ("dropdown", ["smoke", "fast"])
    given = [("run_search", "False"), ("steps", "10"), ("size_mb", "1"), ("lr", "3e-4"), ("name", "007"),
             ("preset", "smoke"), ("legacy", "[1, 2]")]
    assert read_parameters(nb, given) == {"run_search": False, "steps": 10, "size_mb": 1, "lr": 3e-4,
                                          "name": "007", "preset": "smoke", "legacy": [1, 2]}
    for text, value in (("True", True), ("true", True), ("false", False)):
        assert read_parameters(nb, [("run_search", text)]) == {"run_search": value}
    assert read_parameters(nb, [("lr", "None"), ("size_mb", "2.5")]) == {"lr": None, "size_mb": 2.5}
    for name, text, expected in (("run_search", "yes", "True, False, true or false"), ("steps", "1.5", "an integer"),
                                 ("size_mb", "big", "a number"), ("lr", "fast", "a Python literal"),
                                 ("preset", "huge", "one of smoke, fast"), ("lr", "1e999", "a finite number"),
                                 ("size_mb", "1e999", "a finite number"), ("size_mb", "nan", "a finite number")):
        with pytest.raises(ValueError, match=f"parameter {name} .*{text!r} is not {expected}"):
            read_parameters(nb, [(name, text)])


def test_command_line_refuses_an_unparseable_value_before_starting_a_kernel(tmp_path, capsys):
    notebook = tiny_notebook(tmp_path / "t.ipynb", "print(1)", parameters=FORM)
    code = main([str(notebook), "--out", str(tmp_path / "o.ipynb"), "--workdir", str(tmp_path / "w"),
                 "-p", "run_search=maybe"])
    assert code == 2
    assert "parameter run_search (boolean): 'maybe' is not True, False, true or false" in capsys.readouterr().err
    assert not (tmp_path / "o.ipynb").exists()


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


@pytest.mark.slow
def test_cli_with_workdir_elsewhere_relative_pythonpath_and_no_tcp_warning(tmp_path):
    """The README's headless command, with --workdir outside the repository: a relative
    PYTHONPATH still means the repository, and the kernel talks over IPC (no TCP warning)."""
    notebook = tiny_notebook(tmp_path / "nb.ipynb", "import utils.notebook_exec as m, os\nprint(m.__file__, os.getcwd())",
                             parameters='# @title F\nflag = True  #@param {type:"boolean"}')
    workdir = tmp_path / "elsewhere"
    done = subprocess.run([sys.executable, "-m", "utils.notebook_exec", str(notebook), "--out", str(tmp_path / "o.ipynb"),
                           "--workdir", str(workdir), "-p", "flag=False"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": "."}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "running over TCP" not in done.stderr + done.stdout
    nb = nbformat.read(tmp_path / "o.ipynb", as_version=4)
    assert "flag = False" in nb.cells[2].source
    printed = outputs_text(nb.cells[-1]).split()
    assert printed == [str(ROOT / "utils" / "notebook_exec.py"), str(workdir.resolve())]


def test_make_runs_parameters_read_by_the_training_notebooks_forms():
    import re

    recipe = (ROOT / "Makefile").read_text(encoding="utf-8").split("\nrun:", 1)[1].split("\n\n", 1)[0]
    items = [_parse_parameter(item) for item in re.findall(r"-p (\w+=\S+)", recipe)]
    nb = nbformat.read(ROOT / "notebooks" / "training.ipynb", as_version=4)
    values = read_parameters(nb, [(k, v) for k, v in items if "$(" not in v])
    assert values["preset"] == "cpu" and values["vocab_size"] == 2048 and values["viz_interval"] == 100
    assert values["time_presets"] == "cpu"
    inject_parameters(nb, values)  # every name belongs to a form

"""Execute a notebook headless with injected parameters: the one executor of `make run` and the tests.

Parameters follow the papermill convention without depending on papermill: a code cell
tagged `injected-parameters` goes right after each cell tagged `parameters` (a notebook
may have several forms), holding the values of the names that cell assigns, so they
override the form defaults. On the command line each `-p name=value` is read by the
type its form declares (`#@param {type:"boolean"}`: True/False/true/false; integer;
number; raw: a Python literal; string and dropdown: the text, a dropdown's among its
choices); a value that does not parse is refused naming the parameter. The kernel is
this interpreter's own ipykernel (never a kernelspec found elsewhere on the machine),
started in `workdir`, over IPC sockets (local only, and ipykernel's warning about
unencrypted TCP does not apply); relative PYTHONPATH entries are made absolute first,
since the kernel runs in another folder.

    python -m utils.notebook_exec notebooks/training.ipynb --out workspace/training.executed.ipynb \\
        --workdir workspace -p preset=cpu -p workspace_dir=/abs/workspace

This module must not import torch: the kernel does that, not the process driving it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

from utils.notebook_forms import BOOLEANS, form_declarations

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRACEBACK_TAIL_LINES = 20
CELL_HEAD_LINES = 5
# Figures display as in Jupyter even when the driving process runs with MPLBACKEND=Agg (tests do).
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


class NotebookExecutionError(RuntimeError):
    """A cell failed, timed out or killed the kernel. The message says which and why."""

    def __init__(self, notebook: str, cell_index: int | None, cell_source: str, error: str,
                 executed_index: int | None = None):
        self.notebook = notebook
        self.cell_index = cell_index  # in the notebook file; None: the injected cell or kernel start-up
        self.executed_index = executed_index  # in the executed copy, which holds the injected cell
        self.cell_source = cell_source
        self.error = error
        head = "\n".join("    " + line for line in cell_source.splitlines()[:CELL_HEAD_LINES])
        if cell_index is not None:
            where = f"cell {cell_index}"
        elif executed_index is not None:
            where = "the injected parameters cell"
        else:
            where = "kernel start-up"
        if executed_index is not None and executed_index != cell_index:
            where += f" (cell {executed_index} of the executed copy)"
        super().__init__(f"{notebook}: {where} failed\n  cell starts with:\n{head}\n  error:\n{error}")




def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def parameter_names(source: str) -> list[str]:
    """Names a parameters cell assigns at top level (`x = 1`, `x: int = 1`)."""
    import ast

    names: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def inject_parameters(nb, parameters: dict, notebook_name: str = "notebook"):
    """Insert (or replace) an injected-parameters cell after each parameters cell, holding
    the given values of the names that cell assigns. A notebook may have several forms
    (parameters cells); a name no parameters cell assigns is an error, naming it."""
    import nbformat

    nb.cells = [c for c in nb.cells if INJECTED_TAG not in _tags(c)]
    if not parameters:
        return nb
    for key in parameters:
        if not key.isidentifier():
            raise ValueError(f"{notebook_name}: parameter name {key!r} is not a Python identifier")
    marked = [i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in _tags(c)]
    if not marked:
        raise ValueError(
            f"{notebook_name}: parameters given ({', '.join(sorted(parameters))}) but the notebook has "
            f"0 cells tagged {PARAMETERS_TAG!r}; it needs at least one"
        )
    owner: dict[str, int] = {}
    for i in marked:
        for name in parameter_names(nb.cells[i].source):
            owner.setdefault(name, i)
    unknown = sorted(set(parameters) - set(owner))
    if unknown:
        raise ValueError(f"{notebook_name}: {', '.join(unknown)} not assigned in any parameters cell; "
                         f"the parameters are {', '.join(sorted(owner))}")
    for i in reversed(marked):  # from the end, so earlier indices stay valid
        mine = {k: v for k, v in parameters.items() if owner[k] == i}
        if not mine:
            continue
        lines = ["# Parameters injected for this execution"] + [f"{k} = {v!r}" for k, v in mine.items()]
        cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
        # Ids derived from the parameters cell keep executed copies diffable run to run.
        cell.id = f"{nb.cells[i].get('id', 'cell')}-injected"[:64]
        nb.cells.insert(i + 1, cell)
    return nb


def _index_in_source(nb, executed_index: int | None) -> int | None:
    """The failing cell's index in the notebook file: the injected cell is not there."""
    if executed_index is None or INJECTED_TAG in _tags(nb.cells[executed_index]):
        return None
    return executed_index - sum(INJECTED_TAG in _tags(c) for c in nb.cells[:executed_index])


def _describe_error(err: BaseException, cell) -> str:
    from nbclient.exceptions import CellExecutionError

    if not isinstance(err, CellExecutionError):  # timeout, dead kernel
        return f"    {type(err).__name__}: {ANSI_ESCAPE.sub('', str(err)).strip()}"
    # The kernel's own traceback (in the cell's error output) is the informative part of
    # nbclient's message, which also repeats the cell source.
    errors = [o for o in (cell.get("outputs", []) if cell else []) if o.get("output_type") == "error"]
    traceback = "\n".join(errors[-1].get("traceback", [])) if errors else (err.traceback or "")
    lines = [line for line in ANSI_ESCAPE.sub("", traceback).rstrip().splitlines() if line.strip()]
    tail = "\n".join("    " + line for line in lines[-TRACEBACK_TAIL_LINES:])
    return f"    {err.ename}: {err.evalue}\n  traceback (last lines):\n{tail}"


def _kernel_manager_class(socket_dir: str):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisInterpreterKernelManager(AsyncKernelManager):
        """Only the native ipykernel spec, which launches sys.executable (the venv's python3),
        over IPC sockets in a private temp folder (nothing listens on a TCP port)."""

        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self):
            return KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)

        @default("transport")
        def _transport_default(self):
            return "ipc"

        @default("ip")
        def _ip_default(self):
            # Socket files are ip-1, ip-2, ...: short absolute paths (a socket path has ~100 bytes).
            return os.path.join(socket_dir, "kernel")

    return ThisInterpreterKernelManager


def execute_notebook(
    path: str | Path,
    parameters: dict,
    *,
    workdir: Path,
    output_path: Path | None = None,
    timeout_per_cell: int = 600,
    env: dict | None = None,
):
    """Execute the notebook at `path` in `workdir` and return the executed NotebookNode.

    `env` entries are added to this process's environment for the kernel (MPLBACKEND is
    the inline backend unless `env` says otherwise). The executed
    (or, on failure, partially executed) notebook is written to `output_path` when given.
    Raises NotebookExecutionError naming the notebook, the cell and the error.
    """
    import tempfile

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise NotADirectoryError(f"workdir is not a folder: {workdir}")
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, dict(parameters), notebook_name=str(path))

    socket_dir = tempfile.TemporaryDirectory(prefix="nbexec-")
    client = NotebookClient(
        nb,
        timeout=timeout_per_cell,
        startup_timeout=180,
        kernel_name="python3",
        kernel_manager_class=_kernel_manager_class(socket_dir.name),
        resources={"metadata": {"path": str(workdir)}},
        allow_errors=False,
    )
    current = {"index": None}

    def remember(cell, cell_index, **_):
        current["index"] = cell_index

    client.on_cell_start = remember
    kernel_env = {**os.environ, "MPLBACKEND": INLINE_BACKEND, **(env or {})}
    if kernel_env.get("PYTHONPATH"):
        # The kernel runs in workdir: "." or "src" must mean what they mean here.
        kernel_env["PYTHONPATH"] = os.pathsep.join(
            str(Path(p).resolve()) if p else p for p in kernel_env["PYTHONPATH"].split(os.pathsep))
    try:
        client.execute(env=kernel_env)
    except (CellControlSignal, DeadKernelError, RuntimeError) as err:
        index = current["index"]
        cell = nb.cells[index] if index is not None else None
        source = cell.source if cell is not None else ""
        source_index = _index_in_source(nb, index)
        raise NotebookExecutionError(str(path), source_index, source, _describe_error(err, cell),
                                     executed_index=index) from err
    finally:
        socket_dir.cleanup()
        if output_path is not None:
            output_path = Path(output_path)
            output_path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, output_path)
    return nb


def _parse_parameter(item: str) -> tuple[str, str]:
    """key=value, both text: the value is read later, by the type its form declares."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"parameter {item!r} must look like key=value")
    return key, text


def form_types(nb) -> dict[str, tuple[str, list | None]]:
    """{name: (type, dropdown choices or None)} of every `#@param` line in the parameters
    cells (notebook_forms.form_declarations, the first declaration of a name)."""
    types: dict[str, tuple[str, list | None]] = {}
    for cell in nb.cells:
        if PARAMETERS_TAG in _tags(cell):
            for name, declared in form_declarations(cell.source).items():
                types.setdefault(name, declared)
    return types


def read_parameter(name: str, text: str, kind: str, choices: list | None = None):
    """One command-line value read as its form's type; ValueError naming the parameter."""
    import ast

    def refuse(expected: str):
        return ValueError(f"parameter {name} ({kind}): {text!r} is not {expected}")

    if kind == "boolean":
        if text not in BOOLEANS:
            raise refuse("True, False, true or false")
        return BOOLEANS[text]
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise refuse("an integer") from None
    if kind in ("number", "slider"):
        try:
            value = int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) else float(text)
        except ValueError:
            raise refuse("a number") from None
        if not math.isfinite(value):
            raise refuse("a finite number")
        return value
    if kind == "raw":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise refuse("a Python literal (None, a number, a quoted string, a list...)") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise refuse("a finite number")
        return value
    if kind == "dropdown":
        if choices is None:
            return text
        for choice in choices:
            if str(choice) == text:
                return choice
        raise refuse(f"one of {', '.join(map(str, choices))}")
    if kind in ("string", "date"):
        return text
    try:  # no declared type: JSON (numbers, true/false, null, lists), else the text
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_parameters(nb, items: list[tuple[str, str]]) -> dict:
    """Command-line (name, text) pairs read by the types the notebook's forms declare."""
    types = form_types(nb)
    return {name: read_parameter(name, text, *types.get(name, ("", None))) for name, text in items}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.notebook_exec", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="where the executed notebook is written")
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="the kernel's working folder")
    parser.add_argument("-p", "--parameter", dest="parameters", action="append", default=[],
                        type=_parse_parameter, metavar="KEY=VALUE", help="a parameter to inject; repeatable")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell (default 3600)")
    args = parser.parse_args(argv)

    import nbformat

    if not args.notebook.is_file():
        print(f"error: notebook not found: {args.notebook}", file=sys.stderr)
        return 2
    try:
        parameters = read_parameters(nbformat.read(args.notebook, as_version=4), args.parameters)
    except ValueError as err:
        print(f"error: {args.notebook}: {err}", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        execute_notebook(args.notebook, parameters, workdir=args.workdir,
                         output_path=args.out, timeout_per_cell=args.timeout)
    except (NotebookExecutionError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        if args.out.exists():
            print(f"partially executed notebook: {args.out}", file=sys.stderr)
        return 1
    print(f"executed {args.notebook} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

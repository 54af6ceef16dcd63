"""Values a runner injects outlive the Colab forms that come after the injection point.

papermill (`papermill NB OUT -p preset smoke`) puts all its values in one cell right
after the FIRST cell tagged `parameters`, but a notebook has several forms, and a later
form would assign its default over the injected value (`preset` lives in the training
notebook's third form). The set-up cell, which follows the first form, calls
`keep_runner_values()`: the cell the kernel ran just before it is either that form (an
ordinary run: nothing to keep) or a runner's injected cell holding only assignments.
Those values are re-applied after every later form cell that assigns the same names,
and the form's output says so. utils.notebook_exec injects after each form instead,
which needs none of this but is served by it the same way.

Kernel-side and light: no torch, no IPython import at module level.
"""

from __future__ import annotations

import ast

FORM_MARK = "@param"
_registered: dict = {}  # shell -> its post_run_cell hook: one hook per kernel, replaced on each Run all


def parameter_assignments(source: str) -> tuple[list[str], list[str]]:
    """(names assigned at top level, first lines of the statements that are not simple
    assignments to names). Unparseable source counts as one such statement. The build
    (build_notebooks.py) checks forms with it; the kernel finds injected cells with it."""
    try:
        body = ast.parse(source).body
    except SyntaxError as e:
        return [], [f"syntax error: {e.msg}"]
    names: list[str] = []
    other: list[str] = []
    for node in body:
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names += [t.id for t in node.targets]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        else:
            other.append(ast.get_source_segment(source, node).splitlines()[0])
    return names, other


def assigned_names(source: str) -> list[str] | None:
    """Names a cell assigns at top level when it holds only assignments to names; None otherwise."""
    names, other = parameter_assignments(source)
    return None if other else names


def injected_names(previous_source: str) -> list[str]:
    """The names a runner injected, given the source of the cell executed just before the
    set-up cell: a cell of plain assignments that is not a form. [] for a form or anything else."""
    if FORM_MARK in previous_source:
        return []
    return assigned_names(previous_source) or []


def keep_runner_values(shell=None) -> dict:
    """Record the values injected just before the calling cell and re-apply them after
    each later form that assigns them. Returns {name: value} (empty on an ordinary run).
    Call it from the cell that follows the first form (the set-up cell)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:  # plain Python: nothing injects, nothing to keep
        return {}
    history = shell.history_manager.input_hist_raw  # [-1] is the running cell
    previous = history[-2] if len(history) >= 2 else ""
    values = {n: shell.user_ns[n] for n in injected_names(previous) if n in shell.user_ns}

    old = _registered.pop(id(shell), None)
    if old is not None:
        shell.events.unregister("post_run_cell", old)
    if not values:
        return {}

    def reapply(result) -> None:
        source = getattr(getattr(result, "info", None), "raw_cell", "") or ""
        if FORM_MARK not in source:
            return
        for name in assigned_names(source) or []:
            if name in values:
                form_value = shell.user_ns.get(name)
                shell.user_ns[name] = values[name]
                if form_value != values[name]:
                    print(f"{name} = {values[name]!r} (given by the runner; the form says {form_value!r})")

    shell.events.register("post_run_cell", reapply)
    _registered[id(shell)] = reapply
    return values

"""Values a runner injects outlive the Colab forms that come after the injection point.

papermill (`papermill NB OUT -p preset smoke`) puts all its values in one cell right
after the FIRST cell tagged `parameters`, but a notebook has several forms, and a later
form would assign its default over the injected value (`preset` lives in the training
notebook's third form). The set-up cell, which follows the first form, calls
`keep_runner_values()`: the cell the kernel ran just before it is either that form (an
ordinary run: nothing to keep) or a runner's injected cell holding only assignments.
Those values are re-applied after every later form cell that assigns the same names,
and the form's output says so. Each is first read by the type its form declares, as
utils.notebook_exec reads a `-p` value: papermill hands `-p run_search false` over as the
text "false", which is truthy, so a boolean form reads "true"/"false" as booleans; a value
the type cannot take, or a number that is not finite, stops the run naming the parameter.
utils.notebook_exec injects after each form instead, which needs none of the re-applying.

Kernel-side and light: no torch, no IPython import at module level.
"""

from __future__ import annotations

import ast
import math
import re

FORM_MARK = "@param"
# `name = value  #@param SPEC` in a form; SPEC is {type:"..."} or a dropdown's [choices].
FORM_LINE = re.compile(r"^(\w+)\s*(?::[^=]+)?=.*?#\s*@param\s*(.*)$")
FORM_TYPE = re.compile(r"""type\s*:\s*["'](\w+)["']""")
BOOLEANS = {"True": True, "true": True, "False": False, "false": False}
_registered: dict = {}  # shell -> its input transformer: one per kernel, replaced on each Run all


class FormValueError(ValueError):
    """A value given for a form's parameter that its declared type cannot take. In a kernel
    it shows as its one line (IPython's `_render_traceback_`), not as a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"error: {self}"]


def form_declarations(source: str) -> dict[str, tuple[str, list | None]]:
    """{name: (type, dropdown choices or None)} of the `#@param` lines of one form. The type
    is the declared one (boolean, integer, number, raw, string, slider, date), "dropdown"
    for a list, or "" when the line declares none."""
    found: dict[str, tuple[str, list | None]] = {}
    for line in source.splitlines():
        m = FORM_LINE.match(line.strip())
        if m is None:
            continue
        name, spec = m.group(1), m.group(2).strip()
        if spec.startswith("["):
            try:
                choices = ast.literal_eval(spec.split("#", 1)[0].strip())
            except (ValueError, SyntaxError):
                choices = None
            found.setdefault(name, ("dropdown", list(choices) if isinstance(choices, list) else None))
        else:
            kind = FORM_TYPE.search(spec)
            found.setdefault(name, (kind.group(1) if kind else "", None))
    return found


def check_value(name: str, value, kind: str, choices: list | None = None):
    """A runner's value for a form's parameter, as the form's type reads it: booleans from
    True/False or "true"/"false", finite numbers, a dropdown's choices. FormValueError
    naming the parameter otherwise. Types without a rule (string, raw, none) pass."""
    def refuse(expected: str) -> FormValueError:
        return FormValueError(f"parameter {name} ({kind}): {value!r} is not {expected}")

    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in BOOLEANS:
            return BOOLEANS[value]
        raise refuse("True, False, true or false")
    if kind in ("integer", "number", "slider"):
        if isinstance(value, str):
            try:
                value = int(value) if re.fullmatch(r"[+-]?\d+", value.strip()) else float(value)
            except ValueError:
                raise refuse("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refuse("an integer" if kind == "integer" else "a number")
        if not math.isfinite(value):
            raise refuse("a finite number")
        if kind == "integer" and not float(value).is_integer():
            raise refuse("an integer")
        return int(value) if kind == "integer" else value
    if kind == "raw" and isinstance(value, float) and not math.isfinite(value):
        raise refuse("a finite number")
    if kind == "dropdown" and choices is not None:
        for choice in choices:
            if choice == value or str(choice) == str(value):
                return choice
        raise refuse(f"one of {', '.join(map(str, choices))}")
    return value


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
    """Record the values injected just before the calling cell, read each by its form's
    type, and re-apply them after each later form that assigns them. Returns {name: value}
    (empty on an ordinary run). Call it from the cell that follows the first form (the
    set-up cell). FormValueError naming the parameter for a value its form cannot take."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:  # plain Python: nothing injects, nothing to keep
        return {}
    history = shell.history_manager.input_hist_raw  # [-1] is the running cell
    previous = history[-2] if len(history) >= 2 else ""
    values = {n: shell.user_ns[n] for n in injected_names(previous) if n in shell.user_ns}

    old = _registered.pop(id(shell), None)
    if old is not None and old in shell.input_transformers_post:
        shell.input_transformers_post.remove(old)
    if not values:
        return {}
    # The first form ran before the injected cell: its names are read here, now.
    first_form = history[-3] if len(history) >= 3 and FORM_MARK in history[-3] else ""
    for name, (kind, choices) in form_declarations(first_form).items():
        if name in values:
            values[name] = shell.user_ns[name] = check_value(name, values[name], kind, choices)

    def reapply_after_forms(lines: list[str]) -> list[str]:
        """A later form cell gets one more line, run after its assignments, which puts the
        runner's values back (read by this form's types) and says so."""
        source = "".join(lines)
        if FORM_MARK not in source:
            return lines
        names = [n for n in form_declarations(source) if n in values]
        if not names:
            return lines
        tail = "" if source.endswith("\n") else "\n"
        return [*lines, f"{tail}__import__('utils.notebook_forms').notebook_forms.reapply({names!r}, globals())\n"]

    shell.input_transformers_post.append(reapply_after_forms)
    _registered[id(shell)] = reapply_after_forms
    _kept[id(shell.user_ns)] = values
    return values


_kept: dict = {}  # id(the kernel's user namespace) -> the runner's values, read by their forms' types


def reapply(names: list[str], namespace: dict) -> None:
    """Put the runner's values for `names` back over the form's defaults just assigned in
    `namespace`, each read by the form's declared type (the running cell's source)."""
    values = _kept.get(id(namespace), {})
    from IPython import get_ipython

    shell = get_ipython()
    source = shell.history_manager.input_hist_raw[-1] if shell is not None else ""
    declared = form_declarations(source)
    for name in names:
        if name not in values:
            continue
        kind, choices = declared.get(name, ("", None))
        value = check_value(name, values[name], kind, choices)
        form_value = namespace.get(name)
        namespace[name] = value
        if form_value != value:
            print(f"{name} = {value!r} (given by the runner; the form says {form_value!r})")

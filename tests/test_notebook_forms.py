"""utils/notebook_forms.py: a runner's injected values outlive the later forms, in a real IPython shell."""

from __future__ import annotations

import pytest

from utils.notebook_forms import assigned_names, injected_names

SETUP_FORM = '# @title Set-up\nworkspace_dir = "workspace"  #@param {type:"string"}'
SETUP_CELL = "from utils.notebook_forms import keep_runner_values\nkept = keep_runner_values()"
CONFIG_FORM = '# @title Configuration\npreset = "fast"  #@param ["smoke", "fast"]\nsteps = 5  #@param {type:"integer"}'


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def run(shell, source: str):
    result = shell.run_cell(source, store_history=True)
    result.raise_error()
    return result


def test_which_cells_count_as_injected():
    assert assigned_names("a = 1\nb: int = 2") == ["a", "b"]
    assert assigned_names("a = 1\nprint(a)") is None and assigned_names("a =") is None
    assert injected_names('# Parameters\npreset = "smoke"\nworkspace_dir = "W"') == ["preset", "workspace_dir"]
    assert injected_names(SETUP_FORM) == []  # the form itself: an ordinary run


def test_values_injected_after_the_first_form_stand_over_later_forms(shell, capsys):
    run(shell, SETUP_FORM)
    run(shell, '# Parameters\npreset = "smoke"\nworkspace_dir = "/tmp/W"')  # papermill's one cell
    run(shell, SETUP_CELL)
    assert shell.user_ns["kept"] == {"preset": "smoke", "workspace_dir": "/tmp/W"}
    run(shell, CONFIG_FORM)
    assert shell.user_ns["preset"] == "smoke" and shell.user_ns["steps"] == 5  # steps was not injected
    assert "preset = 'smoke' (given by the runner; the form says 'fast')" in capsys.readouterr().out
    run(shell, 'preset = "other"')  # not a form: the user's own assignment stands
    assert shell.user_ns["preset"] == "other"


def test_an_ordinary_run_all_keeps_nothing_even_after_an_injected_one(shell):
    run(shell, SETUP_FORM)
    run(shell, 'preset = "smoke"')
    run(shell, SETUP_CELL)
    # Run all again, without a runner: the form comes right before the set-up cell.
    run(shell, SETUP_FORM)
    run(shell, SETUP_CELL)
    assert shell.user_ns["kept"] == {}
    run(shell, CONFIG_FORM)
    assert shell.user_ns["preset"] == "fast"


RUN_FORM = ('# @title Search\nrun_search = True  #@param {type:"boolean"}\n'
            'learning_rate = 3e-4  #@param {type:"number"}\nsteps = 5  #@param {type:"integer"}')


def test_papermills_text_false_is_read_as_false_by_a_boolean_form(shell, capsys):
    """papermill hands `-p run_search false` over as the text "false" (truthy): the form's
    declared type reads it, so the study is not run."""
    run(shell, SETUP_FORM)
    run(shell, '# Parameters\nrun_search = "false"\nsteps = "7"')
    run(shell, SETUP_CELL)
    run(shell, RUN_FORM)
    assert shell.user_ns["run_search"] is False and shell.user_ns["steps"] == 7
    assert "run_search = False (given by the runner; the form says True)" in capsys.readouterr().out


@pytest.mark.parametrize("name,value,expected", [
    ("run_search", '"maybe"', "parameter run_search (boolean): 'maybe' is not True, False, true or false"),
    ("learning_rate", "float('inf')", "parameter learning_rate (number): inf is not a finite number"),
    ("steps", "2.5", "parameter steps (integer): 2.5 is not an integer"),
])
def test_a_value_its_form_cannot_take_stops_the_run_with_one_line(shell, capsys, name, value, expected):
    from utils.notebook_forms import FormValueError

    run(shell, SETUP_FORM)
    run(shell, f"# Parameters\n{name} = {value}")
    run(shell, SETUP_CELL)
    result = shell.run_cell(RUN_FORM, store_history=True)
    assert isinstance(result.error_in_exec, FormValueError)
    assert str(result.error_in_exec) == expected
    assert result.error_in_exec._render_traceback_() == [f"error: {expected}"]  # one line, no traceback


def test_a_value_for_the_first_form_is_checked_by_the_set_up_cell(shell):
    from utils.notebook_forms import FormValueError

    run(shell, '# @title Set-up\nuse_drive = True  #@param {type:"boolean"}')
    run(shell, '# Parameters\nuse_drive = "False"')
    run(shell, SETUP_CELL)
    assert shell.user_ns["use_drive"] is False
    run(shell, '# @title Set-up\nuse_drive = True  #@param {type:"boolean"}')
    run(shell, '# Parameters\nuse_drive = "no"')
    result = shell.run_cell(SETUP_CELL, store_history=True)
    assert isinstance(result.error_in_exec, FormValueError) and "use_drive" in str(result.error_in_exec)

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

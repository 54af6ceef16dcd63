"""build_notebooks.py: deterministic output, Colab metadata, structure validation, --check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import build_notebooks
from build_notebooks import BuildError, build_notebook

ROOT = Path(__file__).resolve().parents[1]
TRAINING_SOURCE = ROOT / "notebooks_src" / "training.py"

MINI_SOURCE = '''# %% [markdown]
# # Mini notebook
#
# A tiny notebook for the build tests.

# %%
# @title Mini form
steps = 3  #@param {type:"integer"}
name = "mini"  #@param ["mini", "other"]

# %%
print(name * steps)
'''


def rules(err: BuildError) -> list[str]:
    return [p.rule for p in err.problems]


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the sources and their freshly built notebooks."""
    src, out = tmp_path / "notebooks_src", tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks_src", src)
    (src / "mini.py").write_text(MINI_SOURCE, encoding="utf-8")
    assert build_notebooks.main(["--source-dir", str(src), "--output-dir", str(out)]) == 0
    return src, out


def test_two_builds_are_byte_identical(tree, tmp_path):
    src, out = tree
    first = {p.name: p.read_bytes() for p in out.glob("*.ipynb")}
    again = tmp_path / "again"
    assert build_notebooks.main(["--source-dir", str(src), "--output-dir", str(again)]) == 0
    assert {p.name: p.read_bytes() for p in again.glob("*.ipynb")} == first
    assert set(first) >= {"training.ipynb", "mini.ipynb"}


def test_output_is_stable_json_without_outputs(tree):
    _, out = tree
    text = (out / "mini.ipynb").read_text(encoding="utf-8")
    assert text.endswith("}\n")
    nb = json.loads(text)
    assert nb["nbformat"] == 4
    assert [c["id"] for c in nb["cells"]] == ["mini-000", "mini-001", "mini-002"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert text == json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def test_colab_metadata_and_title_badge(tree):
    _, out = tree
    nb = json.loads((out / "mini.ipynb").read_text(encoding="utf-8"))
    assert nb["metadata"]["accelerator"] == "GPU"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["colab"]["toc_visible"] is True
    title = "".join(nb["cells"][0]["source"])
    assert title.startswith("# Mini notebook\n")
    assert f"colab.research.google.com/github/{build_notebooks.GITHUB_REPO}/blob/" in title
    assert "notebooks/mini.ipynb" in title
    assert "notebooks_src/mini.py" in title and "make notebooks" in title
    assert len(nb["cells"]) == 3  # the badge lives in the title cell, not a cell of its own


def test_param_cell_is_a_colab_form_and_the_parameters_cell(tree):
    _, out = tree
    nb = json.loads((out / "mini.ipynb").read_text(encoding="utf-8"))
    params = nb["cells"][1]
    assert params["metadata"]["cellView"] == "form"
    assert params["metadata"]["tags"] == ["parameters"]
    assert "tags" not in nb["cells"][2]["metadata"]


def test_committed_notebooks_match_their_sources():
    # The same check as `make check`: `make notebooks` would leave git status clean.
    assert build_notebooks.main(["--check"]) == 0


def test_check_names_a_source_edited_without_rebuilding(tree, capsys):
    src, out = tree
    with (src / "mini.py").open("a", encoding="utf-8") as f:
        f.write('\n# %%\nprint("added later")\n')
    capsys.readouterr()
    assert build_notebooks.main(["--check", "--source-dir", str(src), "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'mini.ipynb'} differs from its source {src / 'mini.py'}" in err
    assert "training.ipynb" not in err


def test_check_names_missing_and_orphan_notebooks(tree, capsys):
    src, out = tree
    (out / "mini.ipynb").unlink()
    (out / "gone.ipynb").write_text("{}", encoding="utf-8")
    capsys.readouterr()
    assert build_notebooks.main(["--check", "--source-dir", str(src), "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'mini.ipynb'} is missing" in err
    assert f"{out / 'gone.ipynb'} has no source" in err


def test_check_does_not_write(tree):
    src, out = tree
    (src / "mini.py").write_text(MINI_SOURCE.replace("Mini notebook", "Renamed"), encoding="utf-8")
    before = (out / "mini.ipynb").read_bytes()
    build_notebooks.main(["--check", "--source-dir", str(src), "--output-dir", str(out)])
    assert (out / "mini.ipynb").read_bytes() == before


def test_only_builds_the_named_notebook(tree, tmp_path):
    src, _ = tree
    only = tmp_path / "only"
    assert build_notebooks.main(["--only", "mini", "--source-dir", str(src), "--output-dir", str(only)]) == 0
    assert [p.name for p in only.glob("*.ipynb")] == ["mini.ipynb"]
    with pytest.raises(SystemExit):
        build_notebooks.main(["--only", "nope", "--source-dir", str(src), "--output-dir", str(only)])


def test_training_structure_spec_passes_on_the_real_source():
    nb = json.loads(build_notebook("training", TRAINING_SOURCE.read_text(encoding="utf-8")))
    assert len(nb["cells"]) == 36


def drop_cell(text: str, first_line: str) -> str:
    """Remove the percent cell whose first source line is `first_line`."""
    cells = text.split("\n# %%")
    kept = [c for c in cells if not c.split("\n", 1)[-1].startswith(first_line)]
    assert len(kept) == len(cells) - 1, f"no single cell starting with {first_line!r}"
    return "\n# %%".join(kept)


def test_breaking_the_section_sizes_names_the_rule(tree, capsys):
    src, out = tree
    text = TRAINING_SOURCE.read_text(encoding="utf-8")
    (src / "training.py").write_text(drop_cell(text, '# A Hugging Face dataset (needs internet; Colab).'), encoding="utf-8")
    with pytest.raises(BuildError) as info:
        build_notebook("training", (src / "training.py").read_text(encoding="utf-8"))
    assert "cell-count" in rules(info.value)
    assert "section-anchor" in rules(info.value)
    assert "section-sizes" in rules(info.value)
    message = str(info.value)
    assert "training: [cell-count] expected exactly 36 cells, found 35" in message
    assert "training: cell 12: [section-sizes] anchor section-3 found here, expected at cell 13" in message

    capsys.readouterr()
    assert build_notebooks.main(["--source-dir", str(src), "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "[cell-count]" in err and "[section-anchor]" in err


def test_a_section_without_its_anchor_is_named(tree):
    text = TRAINING_SOURCE.read_text(encoding="utf-8").replace('<a id="section-5"></a>', "")
    with pytest.raises(BuildError) as info:
        build_notebook("training", text)
    problem = next(p for p in info.value.problems if p.rule == "section-anchor")
    assert problem.cell == 19 and "section 5" in problem.message


def test_all_problems_are_reported_together():
    text = MINI_SOURCE.replace("# # Mini notebook", "# Mini notebook, no heading").replace(
        'print(name * steps)', 'extra = 1  #@param {type:"integer"}'
    )
    with pytest.raises(BuildError) as info:
        build_notebook("mini", text)
    assert rules(info.value) == ["title", "one-parameters-cell", "form-title"]
    assert "found 2 (cells: 1, 2)" in str(info.value)


def test_a_notebook_needs_exactly_one_parameters_cell():
    text = MINI_SOURCE.replace('# @title Mini form\nsteps = 3  #@param {type:"integer"}\nname = "mini"  #@param ["mini", "other"]\n',
                               "steps = 3\n")
    with pytest.raises(BuildError) as info:
        build_notebook("mini", text)
    assert rules(info.value) == ["one-parameters-cell"]


def test_a_parameters_cell_holds_only_assignments():
    text = MINI_SOURCE.replace('name = "mini"  #@param ["mini", "other"]\n',
                               'name = "mini"  #@param ["mini", "other"]\nprint(name)\n')
    with pytest.raises(BuildError) as info:
        build_notebook("mini", text)
    assert rules(info.value) == ["parameters-only"]
    assert "print(name)" in str(info.value)


def test_a_name_belongs_to_one_form(monkeypatch):
    monkeypatch.setitem(build_notebooks.SPECS, "mini", build_notebooks.StructureSpec(parameter_cells=None))
    text = MINI_SOURCE.replace("print(name * steps)", '# @title Again\nsteps = 4  #@param {type:"integer"}')
    with pytest.raises(BuildError) as info:
        build_notebook("mini", text)
    assert rules(info.value) == ["parameters-unique"]
    assert "'steps' is already a parameter of cell 1" in str(info.value)


# -- the one setting: [tool.slm-notebooks] ------------------------------------------------

@pytest.fixture
def repo_tree(tmp_path: Path) -> Path:
    """A copy of what the setting drives: pyproject.toml, README.md, sources, notebooks."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks_src", tmp_path / "notebooks_src")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    return tmp_path


def tree_args(tree: Path, *extra: str) -> list[str]:
    return [*extra, "--source-dir", str(tree / "notebooks_src"), "--output-dir", str(tree / "notebooks")]


def code_cells(notebook: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]


def test_badges_forms_and_readme_come_from_the_setting():
    setting = build_notebooks.load_setting()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup_cells = []
    for name in ("training", "tokenizer_tutorial"):
        nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
        assert setting.colab_url(name) in "".join(nb["cells"][0]["source"])
        assert setting.colab_url(name) in readme
        cells = code_cells(ROOT / "notebooks" / f"{name}.ipynb")
        form = next(c for c in cells if c.startswith(build_notebooks.SETUP_FORM_TITLE))
        assert f'repo_url = "{setting.repo_url}"  #@param' in form
        assert f'repo_ref = "{setting.repo_ref}"  #@param' in form
        assert f'clone_dir = "/content/{setting.name}"  #@param' in form
        setup_cells += [c for c in cells if c.startswith(build_notebooks.SETUP_CODE_MARK)]
    # One template, the same cell in both notebooks, and it is the template's text.
    assert len(setup_cells) == 2 and setup_cells[0] == setup_cells[1] == build_notebooks.setup_code()


def test_check_fails_when_the_setting_changes_until_rebuilt(repo_tree, capsys):
    fork = "https://github.com/someone/my-fork.git"
    pyproject = repo_tree / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(build_notebooks.SETTING.repo_url, fork)
                         .replace('repo_ref = "main"', 'repo_ref = "v2"'))
    capsys.readouterr()
    assert build_notebooks.main(tree_args(repo_tree, "--check")) == 1
    err = capsys.readouterr().err
    assert "training.ipynb differs from its source" in err and "tokenizer_tutorial.ipynb differs" in err
    assert "README.md's colab-links block differs" in err
    # `make notebooks` (the fork's one step after the one line) brings everything in line.
    assert build_notebooks.main(tree_args(repo_tree)) == 0
    assert build_notebooks.main(tree_args(repo_tree, "--check")) == 0
    badge = "colab.research.google.com/github/someone/my-fork/blob/v2/notebooks/training.ipynb"
    assert badge in (repo_tree / "README.md").read_text() and badge in (repo_tree / "notebooks/training.ipynb").read_text()
    form = next(c for c in code_cells(repo_tree / "notebooks/tokenizer_tutorial.ipynb") if "repo_url =" in c)
    assert f'repo_url = "{fork}"' in form and 'repo_ref = "v2"' in form and 'clone_dir = "/content/my-fork"' in form


def test_check_fails_on_a_hand_edited_badge_or_form_url(repo_tree, capsys):
    notebook = repo_tree / "notebooks" / "training.ipynb"
    original = notebook.read_text()
    for old, new in ((f"github/{build_notebooks.GITHUB_REPO}/blob", "github/other/repo/blob"),
                     (f'repo_url = \\"{build_notebooks.SETTING.repo_url}\\"', 'repo_url = \\"https://github.com/x/y.git\\"')):
        assert old in original
        notebook.write_text(original.replace(old, new))
        capsys.readouterr()
        assert build_notebooks.main(tree_args(repo_tree, "--check")) == 1
        assert f"{notebook} differs from its source" in capsys.readouterr().err
    notebook.write_text(original)
    readme = repo_tree / "README.md"
    readme.write_text(readme.read_text().replace(f"github/{build_notebooks.GITHUB_REPO}/blob", "github/o/r/blob", 1))
    assert build_notebooks.main(tree_args(repo_tree, "--check")) == 1


def test_a_colab_link_or_repository_url_elsewhere_must_match_the_setting():
    text = MINI_SOURCE.replace("A tiny notebook for the build tests.",
                               "See https://colab.research.google.com/github/old/repo/blob/main/notebooks/mini.ipynb "
                               "or clone https://github.com/old/repo.git")
    with pytest.raises(BuildError) as info:
        build_notebook("mini", text)
    assert rules(info.value) == ["repo-url", "repo-url"]
    assert "old/repo at main" in str(info.value) and build_notebooks.GITHUB_REPO in str(info.value)


def test_a_setting_that_is_not_a_github_url_is_refused(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[tool.slm-notebooks]\nrepo_url = "https://example.com/x.git"\nrepo_ref = "main"\n')
    with pytest.raises(ValueError, match="must look like https://github.com/OWNER/NAME.git"):
        build_notebooks.load_setting(bad)
    bad.write_text('[tool.slm-notebooks]\nrepo_url = "https://github.com/a/b.git"\n')
    with pytest.raises(ValueError, match="needs repo_ref"):
        build_notebooks.load_setting(bad)


# -- forms: Colab polish ------------------------------------------------------------------

def test_every_form_has_a_title_and_no_dropdown_a_blank_choice():
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        forms = [source for source in code_cells(notebook) if build_notebooks.is_parameters_source(source)]
        assert len(forms) == build_notebooks.SPECS[notebook.stem].parameter_cells or len(forms) == 6
        for index, source in enumerate(forms):
            assert build_notebooks.check_form(notebook.stem, index, source) == []
    blank = MINI_SOURCE.replace('#@param ["mini", "other"]', '#@param ["", "mini", "other"]')
    with pytest.raises(BuildError) as info:
        build_notebook("mini", blank)
    assert rules(info.value) == ["form-blank-choice"]


# -- jupytext round trip ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["training", "tokenizer_tutorial"])
def test_jupytext_round_trip_builds_the_same_notebook(name, tmp_path):
    import subprocess
    import sys

    out = tmp_path / f"{name}.py"
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "py:percent",
                    str(ROOT / "notebooks" / f"{name}.ipynb"), "-o", str(out)], check=True)
    rebuilt = build_notebook(name, out.read_text(encoding="utf-8"))
    assert rebuilt.count("colab-badge.svg") == 1 and rebuilt.count("*Generated from `notebooks_src/") == 1
    assert rebuilt.count(build_notebooks.SETUP_CODE_MARK) == 1
    assert rebuilt == (ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8")


def test_a_form_title_must_open_the_form():
    text = MINI_SOURCE.replace('# @title Mini form\nsteps = 3  #@param {type:"integer"}',
                               'steps = 3  #@param {type:"integer"}\n# @title Mini form')
    with pytest.raises(BuildError) as info:
        build_notebook("mini", text)
    assert rules(info.value) == ["form-title"]


def test_the_set_up_form_comes_first_and_the_set_up_cell_right_after_it():
    text = (ROOT / "notebooks_src" / "tokenizer_tutorial.py").read_text(encoding="utf-8")
    build_notebook("tokenizer_tutorial", text)
    form = "# %%\n# @title Set-up: where the code comes from\n\n"
    assert form in text
    moved = text.replace(form, "").replace("# %% [markdown]\n# ## 1. The texts", form + "# %% [markdown]\n# ## 1. The texts")
    with pytest.raises(BuildError) as info:
        build_notebook("tokenizer_tutorial", moved)
    assert rules(info.value) == ["setup"]
    assert "must be the first form" in str(info.value)


def test_the_set_up_cell_is_hidden_behind_a_form():
    """Colab shows a cellView form cell as its form ("Show code"); JupyterLab collapses a
    source_hidden input: the ~100-line set-up cell opens neither notebook in full."""
    import json

    for name in ("training", "tokenizer_tutorial"):
        cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        setup = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith(
            "# Set-up, generated by build_notebooks.py")]
        assert len(setup) == 1, name
        assert setup[0]["metadata"]["cellView"] == "form" and setup[0]["metadata"]["jupyter"]["source_hidden"]

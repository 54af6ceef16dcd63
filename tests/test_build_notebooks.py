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
    assert rules(info.value) == ["title", "one-parameters-cell"]
    assert "found 2 (cells: 1, 2)" in str(info.value)


def test_a_notebook_needs_exactly_one_parameters_cell():
    text = MINI_SOURCE.replace('steps = 3  #@param {type:"integer"}\nname = "mini"  #@param ["mini", "other"]\n',
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
    text = MINI_SOURCE.replace("print(name * steps)", 'steps = 4  #@param {type:"integer"}')
    with pytest.raises(BuildError) as info:
        build_notebook("mini", text)
    assert rules(info.value) == ["parameters-unique"]
    assert "'steps' is already a parameter of cell 1" in str(info.value)

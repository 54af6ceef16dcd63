"""Build notebooks/NAME.ipynb from the Jupytext percent-format sources notebooks_src/NAME.py.

The sources are the only place notebooks are written; the .ipynb files are generated,
committed (so Colab can open them straight from GitHub) and checked by rebuilding:

    python build_notebooks.py              # rebuild every notebook
    python build_notebooks.py --only NAME  # rebuild one
    python build_notebooks.py --check      # exit 1 naming each notebook that differs from notebooks/

Output is byte-identical from run to run: cell ids come from the notebook name and the
cell position, keys are sorted, and no outputs or execution counts are written.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The GitHub repository the "Open in Colab" badges point at (owner/name), and its branch.
GITHUB_REPO = "slm-notebooks/slm-notebooks"
GITHUB_BRANCH = "main"

ROOT = Path(__file__).resolve().parent
SOURCE_DIR = ROOT / "notebooks_src"
OUTPUT_DIR = ROOT / "notebooks"

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
PARAM_MARK = re.compile(r"#\s*@param\b")
HEADING = re.compile(r"^#{1,6} \S", re.MULTILINE)
ANCHOR = re.compile(r"""<a\s+id=["']section-(\d+)["']\s*>\s*</a>""")

NOTEBOOK_METADATA = {
    "accelerator": "GPU",
    "colab": {"provenance": [], "toc_visible": True},
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


@dataclass(frozen=True)
class StructureSpec:
    """What a notebook must look like beyond nbformat's schema.

    Every notebook opens with a markdown title cell. Its `#@param` cells (Colab forms, and
    the cells parameters are injected after) hold only assignments, and no name is a
    parameter of two cells, so an injected value always lands after the one form that
    owns it. `parameter_cells` is their exact number (None: one or more).
    `sections`, when given, is the number of cells in each section 0..N-1; each section
    opens with a markdown cell carrying the anchor <a id="section-N"></a> and a heading.
    """

    sections: tuple[int, ...] | None = None
    parameter_cells: int | None = 1


SPECS: dict[str, StructureSpec] = {
    # Five forms: setup, data, configuration, tracking, export, search space.
    "training": StructureSpec(sections=(3, 4, 6, 4, 2, 4, 5, 4, 4), parameter_cells=None),
    "tokenizer_tutorial": StructureSpec(parameter_cells=1),
}


@dataclass(frozen=True)
class Problem:
    notebook: str
    cell: int | None  # None: the notebook as a whole
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.notebook}" if self.cell is None else f"{self.notebook}: cell {self.cell}"
        return f"{where}: [{self.rule}] {self.message}"


class BuildError(Exception):
    """Every problem found while building, reported together."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _cell_label(cell: dict) -> str:
    first = next((line for line in cell["source"].splitlines() if line.strip()), "")
    return f"{cell['cell_type']} cell {first[:60]!r}"


def is_parameters_source(source: str) -> bool:
    return bool(PARAM_MARK.search(source))


def parameter_assignments(source: str) -> tuple[list[str], list[str]]:
    """(names assigned at top level, first lines of the statements that are not simple
    assignments). Unparseable source counts as one such statement."""
    import ast

    try:
        body = ast.parse(source).body
    except SyntaxError as e:
        return [], [f"syntax error: {e.msg}"]
    names, other = [], []
    for node in body:
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names += [t.id for t in node.targets]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        else:
            other.append(ast.get_source_segment(source, node).splitlines()[0])
    return names, other


def check_structure(name: str, cells: list[dict], spec: StructureSpec) -> list[Problem]:
    problems: list[Problem] = []

    first = cells[0] if cells else None
    if first is None or first["cell_type"] != "markdown" or not HEADING.search(first["source"]):
        problems.append(Problem(name, 0, "title", "the first cell must be a markdown cell with a heading"))

    param_cells = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and is_parameters_source(c["source"])]
    wanted = spec.parameter_cells
    if (wanted is not None and len(param_cells) != wanted) or not param_cells:
        found = ", ".join(map(str, param_cells)) or "none"
        expected = f"exactly {wanted}" if wanted is not None else "at least one"
        rule = "one-parameters-cell" if wanted == 1 else "parameters-cells"
        problems.append(
            Problem(name, None, rule,
                    f"{expected} code cell(s) must hold '#@param' lines; found {len(param_cells)} (cells: {found})")
        )
    owner: dict[str, int] = {}
    for i in param_cells:
        names, other = parameter_assignments(cells[i]["source"])
        if other:
            problems.append(Problem(name, i, "parameters-only",
                                    f"a '#@param' cell may hold only assignments (parameters are injected after "
                                    f"it); move {other[0]!r} to the next cell"))
        for n in names:
            if n in owner:
                problems.append(Problem(name, i, "parameters-unique",
                                        f"{n!r} is already a parameter of cell {owner[n]}"))
            owner.setdefault(n, i)

    if spec.sections is None:
        return problems

    expected_total = sum(spec.sections)
    if len(cells) != expected_total:
        problems.append(
            Problem(name, None, "cell-count", f"expected exactly {expected_total} cells, found {len(cells)}")
        )
    starts = [sum(spec.sections[:n]) for n in range(len(spec.sections))]
    for n, start in enumerate(starts):
        if start >= len(cells):
            problems.append(Problem(name, None, "section-anchor", f"section {n} is missing (notebook too short)"))
            continue
        cell = cells[start]
        anchors = [int(a) for a in ANCHOR.findall(cell["source"])]
        if cell["cell_type"] != "markdown" or anchors != [n] or not HEADING.search(cell["source"]):
            problems.append(
                Problem(name, start, "section-anchor",
                        f'section {n} must open here with a markdown cell carrying <a id="section-{n}"></a> '
                        f"and a heading; found {_cell_label(cell)}")
            )
    for index, cell in enumerate(cells):
        for n in map(int, ANCHOR.findall(cell["source"])):
            if n >= len(starts) or starts[n] != index:
                expected = f"cell {starts[n]}" if n < len(starts) else f"no section {n} in the spec"
                problems.append(
                    Problem(name, index, "section-sizes",
                            f"anchor section-{n} found here, expected at {expected} "
                            f"(sections hold {','.join(map(str, spec.sections))} cells)")
                )
    return problems


def _title_with_badge(name: str, source: str) -> str:
    """Put the Colab badge and the 'generated from' line right under the title heading."""
    url = f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{GITHUB_BRANCH}/notebooks/{name}.ipynb"
    note = (
        f"[![Open In Colab]({COLAB_BADGE})]({url})\n\n"
        f"*Generated from `notebooks_src/{name}.py`: edit there, then rebuild with `make notebooks`.*"
    )
    lines = source.splitlines()
    heading = next(i for i, line in enumerate(lines) if HEADING.match(line))
    rest = lines[heading + 1:]
    while rest and not rest[0].strip():
        rest.pop(0)
    return "\n".join([*lines[: heading + 1], "", note, *(["", *rest] if rest else [])])


def build_notebook(name: str, text: str) -> str:
    """Return the .ipynb text for one source, or raise BuildError listing every problem."""
    import jupytext
    import nbformat

    parsed = jupytext.reads(text, fmt="py:percent")
    cells = []
    for index, cell in enumerate(parsed.cells):
        metadata = {k: v for k, v in cell.metadata.items()}
        built = {
            "cell_type": cell.cell_type,
            "id": f"{name}-{index:03d}",
            "metadata": metadata,
            "source": cell.source,
        }
        if cell.cell_type == "code":
            built.update(execution_count=None, outputs=[])
            if is_parameters_source(cell.source):
                # The same cell is a Colab form and the papermill/nbclient parameters cell.
                metadata["cellView"] = "form"
                metadata["tags"] = sorted(set(metadata.get("tags", [])) | {"parameters"})
        cells.append(built)

    problems = check_structure(name, cells, SPECS.get(name, StructureSpec()))
    if not any(p.rule == "title" for p in problems):
        cells[0]["source"] = _title_with_badge(name, cells[0]["source"])

    nb = nbformat.from_dict(
        {"cells": cells, "metadata": NOTEBOOK_METADATA, "nbformat": 4, "nbformat_minor": 5}
    )
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(Problem(name, None, "nbformat-schema", err.message))
    if problems:
        raise BuildError(problems)
    return nbformat.writes(nb, version=4).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="rebuild in memory; exit 1 if notebooks/ differs")
    parser.add_argument("--only", metavar="NAME", action="append", help="build only notebooks_src/NAME.py")
    parser.add_argument("--source-dir", type=Path, default=SOURCE_DIR)
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    sources = sorted(args.source_dir.glob("*.py"))
    if args.only:
        unknown = sorted(set(args.only) - {s.stem for s in sources})
        if unknown:
            parser.error(f"--only: no source {', '.join(f'{args.source_dir}/{u}.py' for u in unknown)}")
        sources = [s for s in sources if s.stem in args.only]
    if not sources:
        parser.error(f"no notebook sources (*.py) in {args.source_dir}")

    problems: list[Problem] = []
    stale: list[str] = []
    for source in sources:
        target = args.output_dir / f"{source.stem}.ipynb"
        try:
            built = build_notebook(source.stem, source.read_text(encoding="utf-8"))
        except BuildError as err:
            problems.extend(err.problems)
            continue
        current = target.read_bytes() if target.exists() else None
        if current == built.encode("utf-8"):
            continue
        if args.check:
            reason = "is missing" if current is None else "differs from its source"
            stale.append(f"{target} {reason} {source}")
        else:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            target.write_text(built, encoding="utf-8")
            print(f"wrote {target}")
    if args.check and not args.only:
        for orphan in sorted(set(args.output_dir.glob("*.ipynb")) - {args.output_dir / f"{s.stem}.ipynb" for s in sources}):
            stale.append(f"{orphan} has no source {args.source_dir / (orphan.stem + '.py')}")

    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    for line in stale:
        print(f"out of date: {line}", file=sys.stderr)
    if stale:
        print("run `make notebooks` and commit the result", file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(f"{'checked' if args.check else 'built'} {len(sources)} notebook(s) in {elapsed:.2f} s")
    return 1 if problems or stale else 0


if __name__ == "__main__":
    sys.exit(main())

"""The import graph of utils/, read from the source (AST), against the layer rule of
docs/ARCHITECTURE.md: the core never imports compat/, there is no import circle (counting
imports inside functions; `if TYPE_CHECKING:` imports excepted), and no module imports
from a floor above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "utils.training"

# The floors of utils/training, lowest first (docs/ARCHITECTURE.md, "Dependencies point
# down"): a module may import its own floor and those below. A module not named here
# sits on the floor of its folder (data/, engine/, ...).
FLOORS = (
    ("config", "config_rules", "config_parse", "presets", "contracts", "io", "workspace", "runtime", "text",
     "registries", "throughput"),
    ("data",),
    ("engine",),
    ("tracking",),
    ("viz",),
    ("session", "summary", "run_callbacks", "hf", "export"),
    ("hpo", "cli", "__main__"),
    ("compat", "__init__"),
)

# Circles the db and metrics work of this round removes (issue 22): reported, not failed,
# while they remain. An entry that no longer occurs fails the test, so the list only shrinks.
KNOWN_CIRCLES: set[frozenset[str]] = set()
KNOWN_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted((ROOT / "utils").rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _known(name: str) -> str | None:
    """The module of utils/ that importing `name` runs last (the longest known prefix)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, int]]:
    """(imported module of utils/, line) for every import statement of `module`, at module
    level or inside functions and classes; the body of `if TYPE_CHECKING:` is skipped."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in child.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{base}.{alias.name}"
                    found.append((sub if sub in MODULES else base, child.lineno))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    out = []
    for name, line in found:
        target = _known(name)
        if target is not None and target != module:
            out.append((target, line))
    return out


GRAPH = {module: sorted({target for target, _ in imports(module)}) for module in MODULES}


def short(module: str) -> str:
    return module[len(PACKAGE) + 1:] if module.startswith(PACKAGE + ".") else module


def circles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def floor(module: str) -> int | None:
    """The floor of a module of utils/training (None outside it)."""
    if module == PACKAGE:
        return floor(f"{PACKAGE}.__init__")
    if not module.startswith(PACKAGE + "."):
        return None
    first = short(module).split(".")[0]
    for level, names in enumerate(FLOORS):
        if first in names:
            return level
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and to docs/ARCHITECTURE.md)")


# -- the tests -------------------------------------------------------------------------------

def test_the_graph_reads_lazy_imports_and_skips_type_checking_ones():
    trainer = dict(imports(f"{PACKAGE}.engine.trainer"))
    assert f"{PACKAGE}.engine.run_facts" in trainer  # imported inside Trainer._run_info
    session = {t for t, _ in imports(f"{PACKAGE}.session")}
    assert f"{PACKAGE}.data.sources" not in session  # only under `if TYPE_CHECKING:`


def test_circles_are_found_through_function_level_imports():
    assert circles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert circles({"a": ["b"], "b": []}) == []


def test_the_core_never_imports_compat():
    compat = f"{PACKAGE}.compat"
    offenders = [f"{short(m)}:{line} imports {short(t)}" for m in MODULES if not (m == PACKAGE or m.startswith(compat))
                 for t, line in imports(m) if t == compat or t.startswith(compat + ".")]
    assert offenders == [], "only utils/training/__init__.py and compat/ itself may import compat/:\n" + "\n".join(offenders)


def test_no_import_circle_in_utils():
    found = {frozenset(short(m) for m in c) for c in circles(GRAPH)}
    new = [sorted(c) for c in found - KNOWN_CIRCLES]
    assert new == [], f"import circles (lazy imports counted): {new}"
    gone = [sorted(c) for c in KNOWN_CIRCLES - found]
    assert gone == [], f"these circles are broken now: remove them from KNOWN_CIRCLES: {gone}"


def test_known_circles_still_open():
    """Not a failure: what remains of the circles other work removes."""
    remaining = [" <-> ".join(sorted(c)) for c in KNOWN_CIRCLES]
    if remaining:
        pytest.xfail("import circles still open: " + "; ".join(remaining))


def test_every_module_of_the_library_is_on_a_floor():
    for module in MODULES:
        floor(module)


def test_no_import_runs_up_a_floor():
    upward = []
    for module in MODULES:
        own = floor(module)
        if own is None:
            continue
        for target, line in imports(module):
            theirs = floor(target)
            if theirs is not None and theirs > own and (short(module), short(target)) not in KNOWN_UPWARD:
                upward.append(f"{short(module)}:{line} (floor {own}) imports {short(target)} (floor {theirs})")
    assert upward == [], "imports from a lower floor to a higher one:\n" + "\n".join(upward)


def test_known_upward_imports_still_exist():
    for module, target in KNOWN_UPWARD:
        assert f"{PACKAGE}.{target}" in GRAPH[f"{PACKAGE}.{module}"], (
            f"{module} no longer imports {target}: remove it from KNOWN_UPWARD")

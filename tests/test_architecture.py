"""The package's shape: subpackages by concern, a few shared modules, and no import cycle.

The import graph counts every first-party import a module makes, at module level, inside a
function and under ``if TYPE_CHECKING:`` alike: a cycle through any of them means two modules
each need the other to be read, which is the tangle the layout exists to prevent.
"""

from __future__ import annotations

import ast
from pathlib import Path

from thinktune.codedeps import ROOT, module_file

PACKAGE = ROOT / "thinktune"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every thinktune module ``path`` imports, wherever the import statement stands."""
    name = module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for imported in names:
            if imported.split(".")[0] == "thinktune" and (target := module_file(imported, root)) is not None:
                found.add(module_name(target, root))
    found.discard(name)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    root = package.parent
    return {module_name(path, root): imports_of(path, root) for path in sorted(package.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # a package's __init__ is read before its modules: importing a module of one's own
            # package through it is not a cycle of the two
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_even_under_type_checking():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_type_checking_cycle(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    package = tmp_path / "thinktune"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from thinktune.sub import y\n")  # package -> own module: fine
    (package / "x.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from thinktune.sub.y import Y\n")
    (package / "sub" / "y.py").write_text("def f():\n    from ..x import g\n")
    graph = import_graph(package)
    assert graph["thinktune.x"] == {"thinktune.sub.y"} and graph["thinktune.sub.y"] == {"thinktune.x"}
    assert find_cycle(graph) in (["thinktune.sub.y", "thinktune.x", "thinktune.sub.y"],
                                 ["thinktune.x", "thinktune.sub.y", "thinktune.x"])
    (package / "sub" / "y.py").write_text("def f():\n    return 1\n")
    assert find_cycle(import_graph(package)) is None


def test_the_top_level_is_a_handful_of_subpackages_and_a_few_shared_modules():
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(subpackages) <= 10 and len(modules) <= 5, (subpackages, modules)


def test_no_name_is_used_twice_for_two_things():
    """The repository's other code folders (``perf/``: speed and memory scripts; ``stages/``) are
    not named like a part of the library (``thinktune.benchmarks``: what is evaluated)."""
    code_folders = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} - {"thinktune"}
    library = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert code_folders and not code_folders & library, code_folders & library

"""Which project files a module runs: its first-party import closure, read from the source.

A stage's output can change with any project module its command imports, directly or
through others, at module level or inside a function. DVC re-runs a stage only when a
declared dependency changes, so dvc.yaml must name every one of those files
(``tests/test_code_deps.py`` derives each ``python -m stages.X`` command's closure and
fails on a gap), and the evaluation cache keys graded answers on the files they came from
(:func:`code_digest`). The closure is found statically (``ast``), without importing
anything: every ``import``/``from … import`` of a ``thinktune`` or ``stages`` module, in
any function, counts, except under ``if TYPE_CHECKING:`` (never run), and so does a string
naming a project module for ``importlib`` (``"thinktune.benchmarks.humaneval:HUMANEVAL"``, as the
benchmark registry holds). A package's
``__init__`` counts wherever one of its modules is imported, as Python runs it first.

``EXEMPT``: modules that cannot change any output, each with its reason; they need not be
dependencies, so editing them re-runs nothing. A file holding nothing but its docstring (a
package's ``__init__``, say) runs nothing and is exempt too.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("thinktune", "stages")
_MODULE_STRING = re.compile(r"^((?:thinktune|stages)(?:\.\w+)+)(?::\w+)?$")  # importlib's names
EXEMPT = {
    "thinktune/logs.py": "configures log lines (format, level); no stage output reads them",
    "thinktune/errors.py": "turns a stage's exception into its one-line message and exit code",
}


def module_file(module: str, root: Path = ROOT) -> Path | None:
    path = root.joinpath(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(path: Path, root: Path) -> set[str]:
    """Dotted names of first-party modules (or of names in them) that ``path`` imports."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text(), filename=str(path))]
    while todo:
        node = todo.pop()
        if _type_checking_only(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                match := _MODULE_STRING.match(node.value)) and module_file(match.group(1), root):
            names.add(match.group(1))
        todo.extend(ast.iter_child_nodes(node))
    return {name for name in names if name.split(".")[0] in FIRST_PARTY}


def import_closure(module: str, root: Path = ROOT) -> list[Path]:
    """Every project file that importing (and running) ``module`` may execute, sorted."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):  # a.b.c runs a/__init__, a/b/__init__, then c
            path = module_file(".".join(parts[:i]), root)
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_imported_names(path, root))
    return sorted(seen)


def _docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def needed_files(module: str, root: Path = ROOT) -> list[Path]:
    """The closure less the exempt modules: what a stage running ``module`` must depend on."""
    return [p for p in import_closure(module, root)
            if p.relative_to(root).as_posix() not in EXEMPT and not _docstring_only(p)]


def code_digest(module: str, root: Path = ROOT) -> str:
    """sha256 over the path and bytes of every file in :func:`needed_files` of ``module``."""
    digest = hashlib.sha256()
    for path in needed_files(module, root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _counted_files(folder: Path, root: Path) -> set[Path]:
    """The files under ``folder`` that a stage running all of them must depend on."""
    return {p for p in folder.rglob("*.py")
            if p.relative_to(root).as_posix() not in EXEMPT and not _docstring_only(p)}


def stage_code_deps(module: str, root: Path = ROOT) -> list[str]:
    """dvc.yaml's code deps for a stage running ``module``: :func:`needed_files`, with a whole
    folder named instead of its files where the stage runs every one of them."""
    needed = set(needed_files(module, root))
    deps: list[str] = []
    covered: set[Path] = set()
    folders = sorted({parent for path in needed for parent in path.parents if root in parent.parents},
                     key=lambda folder: len(folder.parts))
    for folder in folders:  # outermost first
        files = _counted_files(folder, root)
        if files and files <= needed and not files <= covered:
            deps.append(folder.relative_to(root).as_posix())
            covered |= files
    deps += [path.relative_to(root).as_posix() for path in sorted(needed - covered)]
    return sorted(deps, key=lambda dep: (not dep.startswith("stages/"), dep))


_STAGE = re.compile(r"^  ([\w-]+):")
_CODE_DEP = re.compile(r"^(\s+)- (?:stages|thinktune)/\S*(\s+#.*)?$")


def stage_modules(dvc_yaml: str) -> dict[str, str]:
    """Stage name -> the module its ``python -m stages.X`` command runs."""
    import yaml

    found = {}
    for name, stage in yaml.safe_load(dvc_yaml)["stages"].items():
        match = re.search(r"python -m (stages\.\w+)", stage.get("do", stage)["cmd"])
        if match:
            found[name] = match.group(1)
    return found


def with_generated_code_deps(dvc_yaml: str, root: Path = ROOT) -> str:
    """``dvc_yaml`` with each stage's code deps replaced by :func:`stage_code_deps`, where its
    first code dep stood; every other line (data deps, params, comments) as it was."""
    modules = stage_modules(dvc_yaml)
    out: list[str] = []
    stage = None
    for line in dvc_yaml.splitlines(keepends=True):
        if match := _STAGE.match(line):
            stage = match.group(1)
            written = False
        if (dep := _CODE_DEP.match(line)) and stage in modules:
            if not written:
                out += [f"{dep.group(1)}- {path}\n" for path in stage_code_deps(modules[stage], root)]
                written = True
            continue
        out.append(line)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m thinktune.codedeps``: rewrite dvc.yaml's code deps from the imports (``--check``:
    only say whether they are current, exit 1 if not)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml")
    args = parser.parse_args(argv)
    text = args.dvc_yaml.read_text()
    generated = with_generated_code_deps(text)
    if args.check:
        print("dvc.yaml's code deps are current" if generated == text else
              "dvc.yaml's code deps differ from the imports: run python -m thinktune.codedeps")
        return int(generated != text)
    args.dvc_yaml.write_text(generated)
    print(f"wrote the code deps of {len(stage_modules(text))} stages into {args.dvc_yaml}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

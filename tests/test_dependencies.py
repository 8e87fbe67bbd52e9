"""requirements.txt is honest: every pin is imported by the project's code, or carries the reason
it is needed though nothing imports it; and pyproject.toml names the same packages."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==\S+$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str | None]:
    """Pinned distribution -> the comment line right above it (None when there is none)."""
    found, comment = {}, None
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if match := PIN.match(line.strip()):
            found[canonical(match.group(1))] = comment
        comment = line.strip() if line.startswith("#") else None
    return found


def imported_top_level_names() -> set[str]:
    names = set()
    for folder in ("thinktune", "stages", "perf", "tests", "dvc_plots_template"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


def test_every_pin_is_imported_or_says_why_it_is_needed():
    by_distribution: dict[str, set[str]] = {}
    for module, distributions in metadata.packages_distributions().items():
        for distribution in distributions:
            by_distribution.setdefault(canonical(distribution), set()).add(module)
    imported = imported_top_level_names()
    unexplained = [name for name, comment in pins().items()
                   if not by_distribution.get(name, set()) & imported and not comment]
    assert not unexplained, f"pinned but never imported, and no comment above the pin says why: {unexplained}"


def test_pyproject_names_every_pin():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {canonical(re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0])
                for spec in [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]}
    assert set(pins()) <= declared, set(pins()) - declared

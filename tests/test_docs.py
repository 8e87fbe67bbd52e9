"""The README and docs/ stay true to the repository: the pipeline picture is `dvc dag`'s own,
every relative link resolves, and the landing page stays a landing page."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme_dag_tool = _load_tool("readme_dag")
dvc_dag_md, readme_dag = readme_dag_tool.dvc_dag_md, readme_dag_tool.readme_dag

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_pipeline_picture_is_what_dvc_dag_draws():
    assert readme_dag((REPO / "README.md").read_text()) == dvc_dag_md(REPO), \
        "run python tools/readme_dag.py after changing the pipeline"


def test_the_dag_check_fails_on_a_stale_picture(tmp_path):
    stale = (REPO / "README.md").read_text().replace("node1-->node2\n", "", 1)
    assert readme_dag(stale) != dvc_dag_md(REPO)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.name} links to {broken}"


def test_readme_is_a_landing_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250, len(lines)
    text = "\n".join(lines)
    assert "make repro" in text and "make test" in text


def test_the_ci_script_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")]).returncode == 0

"""What the tracked files may not say.

- No issue-number or finding-number citations: a comment, docstring, test name or document
  states the reason itself, which outlives the tracker it would point to.
- No machine paths in Markdown: a document names paths inside the repository (or ``$OUT``,
  ``~/.cache``), never a directory of the machine it was written on.

Every tracked text file is read (``git ls-files``), except dvc.lock (written by DVC) and
binary files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {"dvc.lock"}

ISSUE_CITATION = re.compile(r"\bissues?[ _-]?#?\d+|findings?[ _-]\d+", re.IGNORECASE)
MACHINE_PATH = re.compile(r"(^|[\s`\"(])/(work|tmp|root)/")


def tracked_text_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = []
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if name in SKIPPED or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def offending_lines(path: Path, text: str) -> list[str]:
    """``path:line: text`` for each line that cites an issue or finding number, or, in a
    Markdown file, names a machine path."""
    found = []
    markdown = path.suffix.lower() in (".md", ".markdown")
    for number, line in enumerate(text.splitlines(), 1):
        if ISSUE_CITATION.search(line) or (markdown and MACHINE_PATH.search(line)):
            found.append(f"{path.relative_to(ROOT) if path.is_absolute() else path}:{number}: {line.strip()[:160]}")
    return found


def test_the_checks_catch_what_they_are_for():
    """Built from pieces, so that this file itself passes."""
    issue, finding = "iss" + "ue", "find" + "ing"
    for line in (f"# {issue} 14: kept", f"{issue.title()} #7's table", f"see {issue}s 3 and 4", f"{issue}12 item 7",
                 f"the {issue}-8 cases", f"def test_{finding}_6_x():", f"({finding} 2)", f"({finding}s 4-6)"):
        assert offending_lines(Path("x.py"), line), line
    for line in ("# the issue is the timeout", "t" + issue + " 3", "findings about the grader", "range(12)"):
        assert not offending_lines(Path("x.py"), line), line
    for line in ("see " + "/wo" + "rk/main/x", "`" + "/tm" + "p/x.json`", "(/" + "root/.cache)", "/" + "tmp/x at the start"):
        assert offending_lines(Path("x.md"), line), line
        assert not offending_lines(Path("x.py"), line), line
    assert not offending_lines(Path("x.md"), "`$OUT/gpu_check.json`, ~/.cache/thinktune, https://x.org/tmp/y")


def test_no_tracked_file_cites_an_issue_number_or_names_a_machine_path():
    files = tracked_text_files()
    assert any(path.name == "dvc.yaml" for path in files)  # the listing works
    found = [hit for path in files for hit in offending_lines(path, path.read_text(encoding="utf-8"))]
    assert not found, "state the reason instead of citing an issue; no machine paths in Markdown:\n" + "\n".join(found)

"""Write `dvc dag --md` into README.md between its dag markers (``--check``: exit 1 if it differs).

The README draws the pipeline as `dvc dag --md` prints it (a mermaid flowchart every code host
renders); this keeps the picture generated from dvc.yaml and params.yaml, never hand-drawn.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- dvc dag: begin -->\n)(.*?)(<!-- dvc dag: end -->)", re.S)


def dvc_dag_md(root: Path = ROOT) -> str:
    dvc = Path(sys.executable).with_name("dvc")
    result = subprocess.run([str(dvc) if dvc.exists() else "dvc", "dag", "--md"], cwd=root, capture_output=True,
                            text=True, check=True)
    return result.stdout.rstrip("\n") + "\n"


def readme_dag(readme: str) -> str:
    match = BLOCK.search(readme)
    if match is None:
        raise SystemExit("README.md has no <!-- dvc dag: begin --> ... <!-- dvc dag: end --> block")
    return match.group(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme_path = ROOT / "README.md"
    readme, drawn = readme_path.read_text(), dvc_dag_md()
    if args.check:
        current = readme_dag(readme) == drawn
        print("README's pipeline picture is current" if current else "README's pipeline picture differs from "
              "`dvc dag --md`: run python tools/readme_dag.py")
        return 0 if current else 1
    readme_path.write_text(BLOCK.sub(lambda m: m.group(1) + drawn + m.group(3), readme))
    print(f"wrote `dvc dag --md` into {readme_path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

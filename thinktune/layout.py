"""Where a training run's adapters live: ``models/<strategy>/checkpoint-<step>/``.

Shared by the training (which writes them) and the evaluation (which lists them), so the
evaluation stage need not import the training package.
"""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_DIR.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(adapters_dir: Path) -> list[Path]:
    """``checkpoint-<step>`` folders of a training run, in step order."""
    found = [p for p in Path(adapters_dir).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)

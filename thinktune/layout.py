"""Where each training run's files live, shared by the stages that write and read them.

A run is one strategy trained with one seed: its adapters in
``models/<strategy>/seed-<seed>/checkpoint-<step>/``, its DVCLive log in
``dvclive/train_<strategy>/seed-<seed>/`` and its evaluation in ``results/<strategy>/seed-<seed>/`` (the base model's in ``results/base/``).
Kept here so that no stage reaches into another's internals to find them.
"""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
BASE = "base"


def seed_dir(seed: int) -> str:
    return f"seed-{seed}"


def adapters_dir(models: Path, strategy: str, seed: int) -> Path:
    return Path(models) / strategy / seed_dir(seed)


def live_dir(live: Path, strategy: str, seed: int) -> Path:
    return Path(live) / f"train_{strategy}" / seed_dir(seed)


def results_dir(results: Path, strategy: str, seed: int | None = None) -> Path:
    """``results/base`` for the base model (seed None), else ``results/<strategy>/seed-<seed>``."""
    return Path(results) / BASE if seed is None else Path(results) / strategy / seed_dir(seed)


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_DIR.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(adapters: Path) -> list[Path]:
    """``checkpoint-<step>`` folders of a training run, in step order."""
    found = [p for p in Path(adapters).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)

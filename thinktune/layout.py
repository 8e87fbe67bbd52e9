"""Where each training run's files live, shared by the stages that write and read them.

A run is one strategy trained with one seed: its adapters in
``models/<strategy>/seed-<seed>/checkpoint-<step>/``, its DVCLive log in
``dvclive/train_<strategy>/seed-<seed>/`` and its evaluation on each benchmark in
``results/<benchmark>/<strategy>/seed-<seed>/`` (the base model's in ``results/<benchmark>/base/``).
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


def results_dir(results: Path, benchmark: str, strategy: str, seed: int | None = None) -> Path:
    """``results/<benchmark>/base`` for the base model (seed None), else
    ``results/<benchmark>/<strategy>/seed-<seed>``."""
    root = Path(results) / benchmark
    return root / BASE if seed is None else root / strategy / seed_dir(seed)


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_DIR.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(adapters: Path) -> list[Path]:
    """``checkpoint-<step>`` folders of a training run, in step order."""
    found = [p for p in Path(adapters).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def eval_problems_file(raw_eval: Path, benchmark: str) -> Path:
    """``data/raw/eval/<benchmark>.jsonl``: the problems fetch_data selected for one benchmark."""
    return Path(raw_eval) / f"{benchmark}.jsonl"

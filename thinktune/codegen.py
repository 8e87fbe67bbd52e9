"""CodeGen-Deep-5K / CodeGen-Diverse-5K rows: schema, loading, download.

Both datasets are one JSONL file each, with the OpenCodeReasoning fields (``id``,
``input``, ``output``, ``solution``, ``split``, ``difficulty``, ...). ``output`` is what the
model learns: step-by-step reasoning, then the code. Rows are validated on load; a
malformed row is skipped and counted, never trusted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from thinktune.atomic import read_jsonl
from thinktune.errors import InputError

REQUIRED_TEXT_FIELDS = ("input", "output")


@dataclass
class LoadReport:
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count

    def as_dict(self) -> dict:
        return {"kept": self.kept, "skipped": dict(self.skipped)}


def problem_key(row: dict) -> str:
    """The problem a row solves: its ``id`` when present, else a hash of the statement."""
    if isinstance(row.get("id"), str) and row["id"]:
        return row["id"]
    return hashlib.sha1(" ".join(row["input"].split()).encode()).hexdigest()


def row_problem(row: dict) -> str | None:
    """Why a row is unusable, or None when it is fine."""
    for name in REQUIRED_TEXT_FIELDS:
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            return f"missing or empty `{name}`"
    if "solution" in row and row["solution"] is not None and not isinstance(row["solution"], str):
        return "`solution` is not a string"
    return None


def load_codegen(path: str | Path, splits: list[str], max_rows: int | None = None) -> tuple[list[dict], LoadReport]:
    """Rows of one CodeGen JSONL file whose ``split`` is in ``splits`` (rows without one are kept)."""
    report = LoadReport()
    rows = []
    for row in read_jsonl(path):
        reason = row_problem(row)
        if reason is None and row.get("split") is not None and row["split"] not in splits:
            reason = f"split {row['split']!r} not in data.splits"
        if reason:
            report.skipped[reason] += 1
            continue
        rows.append(row)
        if max_rows is not None and len(rows) >= max_rows:
            break
    report.kept = len(rows)
    if not rows:
        raise InputError(_why_empty(Path(path), report, splits))
    return rows, report


def _why_empty(path: Path, report: LoadReport, splits: list[str]) -> str:
    """The message for a file that yields no training row, pointing at the actual cause."""
    if not report.skipped:
        return f"{path} holds no rows: it is empty; point data.source/data.sample_dir (or the hub file) at the data"
    by_split = sum(n for reason, n in report.skipped.items() if reason.startswith("split "))
    if by_split == sum(report.skipped.values()):
        seen = sorted(reason.split("'")[1] for reason in report.skipped)
        return (f"{path}: none of its {by_split} rows is in data.splits={splits} (its rows have split {seen}); "
                "add one of those to data.splits")
    return (f"{path}: no usable rows ({dict(report.skipped)}); rows need non-empty `input` and `output` "
            "strings: fix the file")


def download_codegen(repo_id: str, filename: str) -> Path:
    """One dataset file from the hub, as a path in the local hub cache."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=repo_id, filename=filename, repo_type="dataset"))

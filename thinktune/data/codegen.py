"""CodeGen-Deep-5K / CodeGen-Diverse-5K rows: schema, loading, download.

Both datasets are one JSONL file each, with the OpenCodeReasoning fields (``id``,
``input``, ``output``, ``solution``, ``split``, ``difficulty``, ...). ``output`` is what the
model learns: step-by-step reasoning, then the code. Rows are validated on load: a row
without a non-empty ``input``, ``output`` or ``solution`` string stops the load naming the
file, line and field (``data.malformed: error``, the default), or is skipped and counted
(``data.malformed: drop``; the counts go into the data report and report/README.md).
Rows of other splits are filtered out by ``data.splits`` and counted too.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from thinktune.atomic import iter_jsonl
from thinktune.errors import InputError

REQUIRED_TEXT_FIELDS = ("input", "output", "solution")


@dataclass
class LoadReport:
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    malformed: int = 0  # rows dropped as malformed (data.malformed: drop), among ``skipped``

    def as_dict(self) -> dict:
        return {"kept": self.kept, "skipped": dict(self.skipped), "malformed": self.malformed}


def problem_key(row: dict) -> str:
    """The problem a row solves: its ``id`` when present, else a hash of the statement."""
    if isinstance(row.get("id"), str) and row["id"]:
        return row["id"]
    return hashlib.sha1(" ".join(row["input"].split()).encode()).hexdigest()


def row_problem(row: dict) -> str | None:
    """Why a row is unusable, or None when it is fine."""
    for name in REQUIRED_TEXT_FIELDS:
        value = row.get(name)
        if name not in row or value is None:
            return f"missing `{name}`"
        if not isinstance(value, str):
            return f"`{name}` is not a string"
        if not value.strip():
            return f"empty `{name}`"
    return None


def load_codegen(path: str | Path, splits: list[str], max_rows: int | None = None,
                 malformed: str = "error") -> tuple[list[dict], LoadReport]:
    """Rows of one CodeGen JSONL file whose ``split`` is in ``splits`` (rows without one are kept).

    A malformed row raises :class:`InputError` (``<file>:<line>: <field> ...``) with
    ``malformed="error"``; with ``"drop"`` it is skipped and counted."""
    report = LoadReport()
    rows = []
    for lineno, row in iter_jsonl(path):
        reason = row_problem(row)
        if reason:
            if malformed == "error":
                raise InputError(f"{path}:{lineno}: {reason}; every row needs non-empty `input`, `output` and "
                                 "`solution` strings: fix or remove the row, or set data.malformed=drop to skip "
                                 "such rows (counted in the data report)")
            report.malformed += 1
        elif row.get("split") is not None and row["split"] not in splits:
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
    return (f"{path}: no usable rows ({dict(report.skipped)}); rows need non-empty `input`, `output` and "
            "`solution` strings: fix the file")


def download_codegen(repo_id: str, filename: str) -> Path:
    """One dataset file from the hub, as a path in the local hub cache."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=repo_id, filename=filename, repo_type="dataset"))


def select_rows(rows: list[dict], problems: int | None = None, solutions_per_problem: int | None = None) -> list[dict]:
    """A strategy's row filter: the rows of the first ``problems`` problems (in file order of each
    problem's first row), at most ``solutions_per_problem`` rows of each (file order); None: all."""
    order: dict[str, int] = {}
    for row in rows:
        order.setdefault(problem_key(row), len(order))
    taken: Counter = Counter()
    kept = []
    for row in rows:
        key = problem_key(row)
        if problems is not None and order[key] >= problems:
            continue
        if solutions_per_problem is not None and taken[key] >= solutions_per_problem:
            continue
        taken[key] += 1
        kept.append(row)
    return kept

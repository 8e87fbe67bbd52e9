"""What an evaluation leaves in ``results/<target>/``, and how the later stages read it.

``<checkpoint>.jsonl``: one record per problem (``question_id``, ``difficulty``,
``n_samples``, ``n_correct``, ``pass_at_1`` and each sample's raw answer, graded code,
verdicts, reasoning length, whether the token limit cut it). ``summary.json``: the target,
benchmark, problem and sample counts, decoding, environment and each checkpoint's
:func:`summarize`. Written by ``thinktune.evaluation``; plot and report read them through
this module alone, so they depend on neither the decode engine nor the sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path

from thinktune.stats import mean_pass_at_k, wilson_interval

# pass@k reported beside Pass@1 when every problem has at least k samples (eval.n_samples).
PASS_AT_K = (5, 10)
SUMMARY = "summary.json"


def summarize(records: list[dict], step: int) -> dict:
    """The metrics of one checkpoint: Pass@1 with a 95% interval, solved/total, answer shape.

    ``solved`` counts problems with at least one passing sample; with n_samples > 1 the
    unbiased pass@k for k in ``PASS_AT_K`` (k <= n) is added. Shares are over all samples.
    """
    total = len(records)
    pass_at_1 = mean_pass_at_k([(r["n_samples"], r["n_correct"]) for r in records], 1)
    low, high = wilson_interval(pass_at_1 * total, total)
    samples = [s for r in records for s in r["samples"]]
    n = max(len(samples), 1)
    truncated = sum(s["hit_token_limit"] for s in samples)
    no_code = sum(s["code"] is None for s in samples)
    summary = {
        "step": step,
        "pass_at_1": round(pass_at_1, 6),
        "solved": sum(r["n_correct"] > 0 for r in records),
        "total": total,
        "ci95_low": round(low, 6),
        "ci95_high": round(high, 6),
        "mean_reasoning_chars": round(sum(s["reasoning_chars"] for s in samples) / n, 1),
        "mean_reasoning_tokens": round(sum(s.get("reasoning_tokens", 0) for s in samples) / n, 1),
        "hit_token_limit": truncated,
        "truncated_share": round(truncated / n, 6),
        "no_code": no_code,
        "no_code_share": round(no_code / n, 6),
    }
    n_min = min((r["n_samples"] for r in records), default=0)
    for k in PASS_AT_K:
        if 1 < k <= n_min:
            summary[f"pass_at_{k}"] = round(mean_pass_at_k([(r["n_samples"], r["n_correct"]) for r in records], k), 6)
    return summary


def read_summary(results_dir: Path, target: str) -> dict:
    """``results/<target>/summary.json`` as written by :func:`thinktune.evaluation.write_results`."""
    path = Path(results_dir) / target / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro eval_checkpoints@{target}`")
    return json.loads(path.read_text())

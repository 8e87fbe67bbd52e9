"""eval_checkpoints: Pass@1 of the base model or of every saved checkpoint of one strategy.

Reads ``data/raw/eval.jsonl``, ``models/base`` and, for a strategy, every
``models/<strategy>/checkpoint-<step>/`` adapter. Writes ``results/<target>/``: one
per-problem record file per model (``<checkpoint>.jsonl``) and ``summary.json`` (every
checkpoint's Pass@1 and answer shape, the decoding settings and the environment). One DVC
stage per target, so retraining Diverse leaves the Deep evaluation alone. Generation runs
in ``eval.num_processes`` processes (one device each); a killed run, started again,
evaluates only the checkpoints it had not finished.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thinktune.atomic import read_jsonl
from thinktune.benchmark import Problem
from thinktune.errors import run_stage
from thinktune.evaluation import evaluate_checkpoints, write_results
from thinktune.generation import stop_tokens_of
from thinktune.layout import checkpoint_step, list_checkpoints
from thinktune.logs import get_logger
from thinktune.params import STRATEGIES, load_params

log = get_logger("eval_checkpoints")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", choices=("base", *STRATEGIES))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--problems", type=Path, default=Path("data/raw/eval.jsonl"))
    parser.add_argument("--base-model", type=Path, default=Path("models/base"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    params = load_params(args.params)

    problems = [Problem.from_json(row) for row in read_jsonl(args.problems)]
    if args.target == "base":
        adapters, steps = {"base": None}, {"base": 0}
    else:
        found = list_checkpoints(args.models / args.target)
        if not found:
            raise FileNotFoundError(f"no checkpoint-<step> folders in {args.models / args.target}: run train_{args.target}")
        adapters = {a.name: a for a in found}
        steps = {a.name: checkpoint_step(a) for a in found}
    log.info("%s: %d model(s) x %d problems (%s, %d sample(s) each)", args.target, len(adapters),
             len(problems), params.eval.benchmark, params.eval.n_samples)

    records, decode = evaluate_checkpoints(args.base_model, adapters, problems, args.problems, params.eval,
                                           params.format.system_prompt, label=args.target)
    summary = write_results(args.results / args.target, args.target, records, steps, params.eval,
                            stop_tokens_of(args.base_model), decode)
    for name, point in summary["checkpoints"].items():
        log.info("%s/%s: Pass@1 %.1f%% (%d/%d), %.0f reasoning tokens, %.0f%% truncated, %.0f%% without code",
                 args.target, name, 100 * point["pass_at_1"], point["solved"], point["total"],
                 point["mean_reasoning_tokens"], 100 * point["truncated_share"], 100 * point["no_code_share"])
    log.info("records and summary in %s (%s, %s)", args.results / args.target, summary["environment"]["device"],
             summary["environment"]["precision"])


if __name__ == "__main__":
    run_stage(main)

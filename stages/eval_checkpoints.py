"""eval_checkpoints: Pass@1 of the base model or of every saved checkpoint of one strategy.

Reads ``data/raw/eval.jsonl``, ``models/base`` and, for a strategy, every
``models/<strategy>/checkpoint-<step>/`` adapter. Writes one per-problem record file per
model to ``results/<target>/<checkpoint>.jsonl`` and the Pass@1 table of the target to
``metrics/eval_<target>.json``. One DVC stage per target, so retraining Diverse leaves
the Deep evaluation alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thinktune.atomic import atomic_dir, read_jsonl, write_json, write_jsonl
from thinktune.evaluation import evaluate_checkpoint, summarize
from thinktune.benchmark import Problem
from thinktune.logs import get_logger
from thinktune.params import STRATEGIES, load_params
from thinktune.training import checkpoint_step, list_checkpoints

log = get_logger("eval_checkpoints")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", choices=("base", *STRATEGIES))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--problems", type=Path, default=Path("data/raw/eval.jsonl"))
    parser.add_argument("--base-model", type=Path, default=Path("models/base"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    args = parser.parse_args(argv)
    params = load_params(args.params)

    problems = [Problem.from_json(row) for row in read_jsonl(args.problems)]
    if args.target == "base":
        models = {"base": (None, 0)}
    else:
        adapters = list_checkpoints(args.models / args.target)
        if not adapters:
            raise FileNotFoundError(f"no checkpoint-<step> folders in {args.models / args.target}: run train_{args.target}")
        models = {a.name: (a, checkpoint_step(a)) for a in adapters}
    log.info("%s: %d model(s) x %d problems (%s, %d sample(s) each)", args.target, len(models),
             len(problems), params.eval.benchmark, params.eval.n_samples)

    table = {}
    with atomic_dir(args.results / args.target) as tmp:
        for name, (adapter, step) in models.items():
            records = evaluate_checkpoint(args.base_model, adapter, problems, args.problems, params.eval,
                                          params.format.system_prompt, label=f"{args.target}/{name}")
            write_jsonl(tmp / f"{name}.jsonl", records)
            table[name] = summarize(records, step)
            log.info("%s/%s: Pass@1 %.1f%% (%d/%d)", args.target, name, 100 * table[name]["pass_at_1"],
                     table[name]["solved"], table[name]["total"])
    out = args.metrics / f"eval_{args.target}.json"
    write_json(out, {"target": args.target, "benchmark": params.eval.benchmark, "n_problems": len(problems),
                     "n_samples": params.eval.n_samples, "checkpoints": table})
    log.info("records in %s, metrics in %s", args.results / args.target, out)


if __name__ == "__main__":
    main()

"""eval_base@<benchmark> / eval_checkpoints@<strategy>-<seed>-<benchmark>: Pass@1 on one benchmark
of the base model, or of every saved checkpoint of one training run (a strategy trained with one seed).

Reads ``data/raw/eval/<benchmark>.jsonl``, ``models/base`` and, for a run, every
``models/<strategy>/seed-<seed>/checkpoint-<step>/`` adapter. Writes ``results/<benchmark>/base/`` or
``results/<benchmark>/<strategy>/seed-<seed>/``: one per-problem record file per model
(``<checkpoint>.jsonl``) and ``summary.json`` (every checkpoint's Pass@1 and answer shape, the
decoding settings and the environment). One DVC stage per run and benchmark, so retraining
Diverse, adding a seed or adding a benchmark leaves every other evaluation alone. Generation runs
in ``eval.num_processes`` processes (one device each); a killed run, started again,
evaluates only the checkpoints it had not finished.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thinktune.atomic import read_jsonl
from thinktune.benchmarks.base import Problem
from thinktune.config.params import ParamsError, load_params
from thinktune.errors import run_stage
from thinktune.evaluation.evaluate import evaluate_checkpoints, write_results
from thinktune.generation.chats import stop_tokens_of
from thinktune.layout import BASE, adapters_dir, checkpoint_step, eval_problems_file, list_checkpoints, results_dir
from thinktune.logs import get_logger

log = get_logger("eval_checkpoints")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", help="base, or a name under `strategies` in params.yaml")
    parser.add_argument("--seed", type=int, help="the training run's seed (one of train.seeds); not for base")
    parser.add_argument("--benchmark", required=True, help="one of eval.benchmarks")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--problems", type=Path, default=Path("data/raw/eval"), help="a folder of <benchmark>.jsonl")
    parser.add_argument("--base-model", type=Path, default=Path("models/base"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    params = load_params(args.params, check_palette=False)  # plot.palette: checked by check_params, read by plot

    if args.target != BASE and args.target not in params.strategies:
        raise ParamsError(f"strategies: no strategy {args.target!r} in {args.params} ({', '.join(params.strategies)})")
    if (args.target == BASE) != (args.seed is None):
        raise ParamsError(f"{args.target}: give --seed for a strategy's run, and none for base")
    if args.seed is not None and args.seed not in params.train.seeds:
        raise ParamsError(f"train.seeds: {args.seed} is not in {params.train.seeds}")
    try:
        settings = params.eval.for_benchmark(args.benchmark)  # what decides this benchmark's answers, and no other
    except ValueError as exc:
        raise ParamsError(f"eval.benchmarks: {exc}") from None

    problems_file = eval_problems_file(args.problems, args.benchmark)
    problems = [Problem.from_json(row) for row in read_jsonl(problems_file)]
    run = (args.target if args.seed is None else f"{args.target} seed {args.seed}") + f" on {args.benchmark}"
    if args.target == BASE:
        adapters, steps = {"base": None}, {"base": 0}
    else:
        folder = adapters_dir(args.models, args.target, args.seed)
        found = list_checkpoints(folder) if folder.is_dir() else []
        if not found:
            raise FileNotFoundError(f"no checkpoint-<step> folders in {folder}: run train_{args.target}@{args.seed}")
        adapters = {a.name: a for a in found}
        steps = {a.name: checkpoint_step(a) for a in found}
    log.info("%s: %d model(s) x %d problems (%s, %d sample(s) each)", run, len(adapters),
             len(problems), args.benchmark, settings.n_samples)

    records, decode = evaluate_checkpoints(args.base_model, adapters, problems, problems_file, settings,
                                           params.format.system_prompt, label=run)
    out = results_dir(args.results, args.benchmark, args.target, args.seed)
    summary = write_results(out, args.target, records, steps, settings, stop_tokens_of(args.base_model), decode,
                            seed=args.seed)
    for name, point in summary["checkpoints"].items():
        log.info("%s/%s: Pass@1 %.1f%% (%d/%d), %.0f reasoning tokens, %.0f%% truncated, %.0f%% without code",
                 run, name, 100 * point["pass_at_1"], point["solved"], point["total"],
                 point["mean_reasoning_tokens"], 100 * point["truncated_share"], 100 * point["no_code_share"])
    log.info("records and summary in %s (%s, %s)", out, summary["environment"]["device"],
             summary["environment"]["precision"])


if __name__ == "__main__":
    run_stage(main)

"""plot: Pass@1 and the answers' shape against training step, every strategy from the base model.

Reads ``results/<benchmark>/base/`` and ``results/<benchmark>/<strategy>/seed-<seed>/``
(summary.json and the per-problem records, for the intervals) for every benchmark, strategy and
seed in params.yaml, and the
training runs' DVCLive logs ``dvclive/train_<strategy>/seed-<seed>/``. Writes
``plots/pass_at_1.csv`` (every point: benchmark, strategy, checkpoint, step, seeds, Pass@1 as the
mean over seeds with its 95% interval over problems and seeds, answer shape), ``plots/training/<metric>.csv``
(every run's loss, validation loss, learning rate and tokens/s), all drawn by ``dvc plots show``
(dvc.yaml ``plots:``), and ``plots/pass_at_1.png`` and ``plots/answer_shape.png`` (seaborn,
styled by params ``plot``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thinktune.analysis.answer import analysis_rows, checkpoint_points
from thinktune.config.params import load_params
from thinktune.errors import run_stage
from thinktune.evaluation.records import read_runs
from thinktune.layout import live_dir
from thinktune.logs import get_logger
from thinktune.reporting.plots import curve_rows, draw_answer_shape, draw_curve, gather_training_logs, write_curve_csv

log = get_logger("plot")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--live", type=Path, default=Path("dvclive"))
    parser.add_argument("--out", type=Path, default=Path("plots"))
    args = parser.parse_args(argv)
    params = load_params(args.params)

    strategies, seeds = params.strategy_names, params.train.seeds
    rows = []
    for benchmark in params.eval.benchmarks:  # the headline first
        runs = read_runs(args.results, benchmark, strategies, seeds)
        rows += curve_rows(benchmark, runs, checkpoint_points(analysis_rows(runs)), strategies)
    write_curve_csv(rows, args.out / "pass_at_1.csv")
    logs = gather_training_logs({(s, seed): live_dir(args.live, s, seed) for s in strategies for seed in seeds},
                                args.out / "training")
    draw_curve(rows, params.plot, args.out / "pass_at_1.png")
    draw_answer_shape(rows, params.plot, args.out / "answer_shape.png")
    log.info("%d points of %d strategies x %d seed(s) on %s in %s; training logs in %s; figures %s and %s",
             len(rows), len(strategies), len(seeds), ", ".join(params.eval.benchmarks), args.out / "pass_at_1.csv", ", ".join(p.name for p in logs),
             args.out / "pass_at_1.png", args.out / "answer_shape.png")


if __name__ == "__main__":
    run_stage(main)

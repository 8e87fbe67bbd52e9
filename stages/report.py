"""report: the study's answer and table, regenerated from the evaluation results.

Reads ``results/<benchmark>/base/`` and ``results/<benchmark>/<strategy>/seed-<seed>/``
(summary.json and the per-problem records) for every benchmark, strategy and seed in params.yaml
(the first of ``eval.benchmarks`` is the headline, the others second views), each run's DVCLive log
``dvclive/train_<strategy>/seed-<seed>/`` (validation loss picks each strategy's step without
looking at the problems; summary.json: losses, speed, environment), ``data/formatted/report.json``
(training chats per strategy, rows left out), ``plots/pass_at_1.csv`` (the curve) and links the two
figures. Writes ``report/README.md`` (the answer in its first paragraph), ``report/study.json``
(the design, the whole analysis, the environment) and the headline ``metrics/study.json`` (what
`dvc exp show` and `dvc metrics diff` compare: Pass@1 of the base model and of each strategy at its
chosen step, the headline difference with its 95% interval, the number of problems).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from thinktune.analysis.answer import analysis_rows, answer, validation_losses
from thinktune.atomic import atomic_file, write_json
from thinktune.config.params import load_params
from thinktune.errors import run_stage
from thinktune.evaluation.records import read_runs
from thinktune.layout import live_dir
from thinktune.logs import get_logger
from thinktune.reporting.plots import read_curve_csv
from thinktune.reporting.report import data_sources, render_markdown, study_metrics, study_summary

log = get_logger("report")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--plots", type=Path, default=Path("plots"))
    parser.add_argument("--live", type=Path, default=Path("dvclive"))
    parser.add_argument("--data-report", type=Path, default=Path("data/formatted/report.json"))
    parser.add_argument("--out", type=Path, default=Path("report/README.md"))
    args = parser.parse_args(argv)
    params = load_params(args.params, check_palette=False)  # plot.palette: checked by check_params, read by plot

    strategies, seeds = params.strategy_names, params.train.seeds
    validation = {s: validation_losses([live_dir(args.live, s, seed) for seed in seeds]) for s in strategies}
    views = {}  # benchmark -> (runs, analysis); the headline benchmark first
    for benchmark in params.eval.benchmarks:
        runs = read_runs(args.results, benchmark, strategies, seeds)
        views[benchmark] = runs, answer(analysis_rows(runs), validation, strategies)
    headline, *others = params.eval.benchmarks
    runs, result = views[headline]
    training = {(s, seed): json.loads(path.read_text()) for s in strategies for seed in seeds
                if (path := live_dir(args.live, s, seed) / "summary.json").is_file()}
    data_report = json.loads(args.data_report.read_text()) if args.data_report.is_file() else {}
    base = runs[0].summary
    context = {"model": params.model.name, "benchmark": base["benchmark"], "platform": ", ".join(params.eval.platforms),
               "difficulties": params.eval.difficulties, "n_samples": base["n_samples"],
               "n_problems": base["n_problems"], "seeds": seeds}
    curve = read_curve_csv(args.plots / "pass_at_1.csv")
    second = {b: (views[b][1], [r for r in curve if r["benchmark"] == b]) for b in others}
    links = [os.path.relpath(args.plots / name, args.out.parent) for name in ("pass_at_1.png", "answer_shape.png")]
    with atomic_file(args.out) as fh:
        fh.write(render_markdown(result, context, [r for r in curve if r["benchmark"] == headline], runs, training,
                                 *links, sources=data_sources(params), data=data_report, second_views=second))
    summary = study_summary(result, runs, params, data_report)
    summary["second_views"] = {b: {"n_problems": views[b][0][0].summary["n_problems"], "analysis": views[b][1]}
                               for b in others}
    write_json(args.out.parent / "study.json", summary)
    write_json(args.metrics / "study.json", study_metrics(result, base["n_problems"]))
    log.info("report in %s, summary in %s, headline metrics in %s", args.out, args.out.parent / "study.json",
             args.metrics / "study.json")


if __name__ == "__main__":
    run_stage(main)

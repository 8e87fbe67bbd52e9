"""report: the study's table and answer, regenerated from the evaluation results.

Reads ``results/{base,deep,diverse}/summary.json`` (Pass@1 per checkpoint),
``results/<target>/<checkpoint>.jsonl`` (which problems each checkpoint solved, for the
paired tests) and links ``plots/pass_at_1.png``. Writes ``report/README.md`` and the
headline numbers to ``metrics/study.json`` (what `dvc metrics diff` compares).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from thinktune.atomic import atomic_file, write_json
from thinktune.errors import run_stage
from thinktune.evaluation import read_summary
from thinktune.logs import get_logger
from thinktune.params import load_params
from thinktune.plotting import TARGETS
from thinktune.reporting import build_study, load_solved, render_markdown

log = get_logger("report")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--plot", type=Path, default=Path("plots/pass_at_1.png"))
    parser.add_argument("--out", type=Path, default=Path("report/README.md"))
    args = parser.parse_args(argv)
    params = load_params(args.params)

    evals = {t: read_summary(args.results, t) for t in TARGETS}
    solved = {t: {name: load_solved(args.results / t / f"{name}.jsonl") for name in evals[t]["checkpoints"]}
              for t in TARGETS}
    study = build_study(evals, solved)
    data = ("the project's sample data (data/sample/)" if params.data.source == "sample"
            else f"{params.data.deep_repo} and {params.data.diverse_repo}")
    context = {"model": params.model.name, "data": data, "benchmark": evals["base"]["benchmark"],
               "platform": params.eval.platform, "difficulties": params.eval.difficulties,
               "n_samples": params.eval.n_samples}
    plot_link = os.path.relpath(args.plot, args.out.parent)
    with atomic_file(args.out) as fh:
        fh.write(render_markdown(study, context, plot_link))
    write_json(args.metrics / "study.json", study["summary"])
    log.info("report in %s, headline metrics in %s", args.out, args.metrics / "study.json")


if __name__ == "__main__":
    run_stage(main)

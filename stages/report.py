"""report: the study's table and answer, regenerated from the evaluation results.

Reads ``results/{base,deep,diverse}/summary.json`` (Pass@1 and answer shape per checkpoint,
decoding, environment), ``results/<target>/<checkpoint>.jsonl`` (which problems each
checkpoint solved, for the paired tests), ``dvclive/train_<strategy>/summary.json`` (training
loss, speed, environment), ``data/formatted/report.json`` (training chats per strategy, rows
left out) and links the two plots. Writes ``report/README.md``, the study's summary to
``report/study.json`` (best and final steps, paired tests, environment) and the headline to
``metrics/study.json`` (what `dvc exp show` and `dvc metrics diff` compare: Pass@1 of the base
model and of each strategy's best checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from thinktune.atomic import atomic_file, read_jsonl, write_json
from thinktune.errors import run_stage
from thinktune.logs import get_logger
from thinktune.params import STRATEGIES, load_params
from thinktune.plotting import TARGETS
from thinktune.records import read_summary
from thinktune.reporting import build_study, load_solved, render_markdown
from thinktune.study_answer import analysis_rows, answer, validation_losses

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
    params = load_params(args.params)

    evals = {t: read_summary(args.results, t) for t in TARGETS}
    solved = {t: {name: load_solved(args.results / t / f"{name}.jsonl") for name in evals[t]["checkpoints"]}
              for t in TARGETS}
    study = build_study(evals, solved)
    records = {t: {name: read_jsonl(args.results / t / f"{name}.jsonl") for name in evals[t]["checkpoints"]}
               for t in TARGETS}
    steps = {t: {name: point["step"] for name, point in evals[t]["checkpoints"].items()} for t in TARGETS}
    study["analysis"] = answer(analysis_rows(records, steps, params.train.seed),
                               {s: validation_losses(args.live / f"train_{s}") for s in STRATEGIES})
    study["summary"]["analysis"] = study["analysis"]
    data = ("the project's sample data (data/sample/)" if params.data.source == "sample"
            else f"{params.data.deep_repo} and {params.data.diverse_repo}")
    context = {"model": params.model.name, "data": data, "benchmark": evals["base"]["benchmark"],
               "platform": params.eval.platform, "difficulties": params.eval.difficulties,
               "n_samples": params.eval.n_samples}
    training = {s: json.loads(path.read_text()) for s in STRATEGIES
                if (path := args.live / f"train_{s}" / "summary.json").is_file()}
    data_report = json.loads(args.data_report.read_text()) if args.data_report.is_file() else {}
    links = [os.path.relpath(args.plots / name, args.out.parent) for name in ("pass_at_1.png", "answer_shape.png")]
    with atomic_file(args.out) as fh:
        fh.write(render_markdown(study, context, evals, training, *links, data=data_report))
    write_json(args.out.parent / "study.json", study["summary"])
    write_json(args.metrics / "study.json", study["metrics"])
    log.info("report in %s, summary in %s, headline metrics in %s", args.out, args.out.parent / "study.json",
             args.metrics / "study.json")


if __name__ == "__main__":
    run_stage(main)

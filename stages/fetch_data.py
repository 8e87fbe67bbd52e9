"""fetch_data: the study's training data and evaluation problems, from the sources params name.

Writes ``data/raw/train/<dataset>.jsonl`` for every entry of ``data.datasets`` (CodeGen rows as
published, validated first; the strategies pick their rows from them in format_think) and
``data/raw/eval/<benchmark>.jsonl`` (the problems each of ``eval.benchmarks`` selects with the eval
params, tests decoded). Every input is read and validated before any output is written. The base
model is fetched by its own stage (fetch_model), so new training data never re-converts the model."""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from pathlib import Path

from thinktune.atomic import atomic_dir, write_jsonl
from thinktune.benchmarks.base import get_benchmark
from thinktune.config.params import DataParams, EvalParams, load_params
from thinktune.data import codegen
from thinktune.errors import InputError, SourceError, run_stage
from thinktune.layout import eval_problems_file
from thinktune.logs import get_logger
from thinktune.models.hub import from_hub

log = get_logger("fetch_data")


def training_sources(data: DataParams) -> dict[str, Path]:
    """Each dataset's CodeGen file: downloaded (hub), or where data.local_dir/sample_dir say."""
    sources = {}
    for name, dataset in data.datasets.items():
        if data.source == "hub":
            log.info("downloading %s/%s", dataset.repo, dataset.file)
            with from_hub("data.source", f"dataset {dataset.repo} ({dataset.file})",
                          "copy the files elsewhere and use data.source=local with data.local_dir"):
                sources[name] = codegen.download_codegen(dataset.repo, dataset.file)
        elif data.source == "local":
            sources[name] = Path(data.local_dir) / dataset.file
            if not sources[name].is_file():
                raise SourceError(f"data.local_dir: {sources[name]} not found; copy {dataset.repo}'s {dataset.file} "
                                  "there or set data.local_dir to the folder holding it")
        else:
            sources[name] = Path(data.sample_dir) / dataset.sample_file
    return sources


def select_problems(params: EvalParams) -> dict[str, list]:
    """benchmark -> the problems it selects with the eval params (each of ``eval.benchmarks``)."""
    source_fix = "copy the release's test*.jsonl files and use eval.source=local with eval.local_dir"
    with from_hub("eval.source", f"dataset {params.lcb_repo} ({params.lcb_release})", source_fix):
        chosen = {name: get_benchmark(name).load_problems(params.for_benchmark(name)) for name in params.benchmarks}
    for name, problems in chosen.items():
        if len(problems) < 2:
            raise InputError(f"eval.benchmarks: {name} selects {len(problems)} problem with eval.platforms="
                             f"{params.platforms}, eval.difficulties={params.difficulties}, dates {params.date_from}.."
                             f"{params.date_to}, eval.max_problems={params.max_problems}; the analysis needs at least 2 "
                             "(the spread over problems gives the interval): widen the filters")
    return chosen


def write_problems(chosen: dict[str, list], out_dir: Path) -> None:
    """``out_dir/<benchmark>.jsonl`` for each benchmark, the folder replaced whole."""
    with atomic_dir(out_dir) as tmp:
        for name, problems in chosen.items():
            write_jsonl(eval_problems_file(tmp, name), (p.to_json() for p in problems))
    for name, problems in chosen.items():
        log.info("%s: %d problems (%s) -> %s", name, len(problems), dict(Counter(p.difficulty for p in problems)),
                 eval_problems_file(out_dir, name))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data-out", type=Path, default=Path("data/raw/train"))
    parser.add_argument("--eval-out", type=Path, default=Path("data/raw/eval"))
    args = parser.parse_args(argv)
    params = load_params(args.params, check_palette=False)  # plot.palette: checked by check_params, read by plot

    # Everything is read and checked first; only then is anything written (each file renamed
    # into place whole), so a bad row or an unreachable source leaves data/raw as it was.
    sources = training_sources(params.data)
    for name, src in sources.items():
        _, report = codegen.load_codegen(src, params.data.splits, params.data.max_rows, params.data.malformed)
        log.info("%s: %d rows usable in %s (skipped: %s)", name, report.kept, src, dict(report.skipped) or "none")
        if report.malformed:
            log.warning("%s: %d malformed row(s) dropped (data.malformed=drop), counted in the data report",
                        name, report.malformed)
    chosen = select_problems(params.eval)

    with atomic_dir(args.data_out) as tmp:  # the whole folder, so a dataset removed from params goes too
        for name, src in sources.items():
            with (tmp / f"{name}.jsonl").open("wb") as out, src.open("rb") as fh:
                shutil.copyfileobj(fh, out)
    log.info("training rows of %s -> %s", ", ".join(sources), args.data_out)
    write_problems(chosen, args.eval_out)


if __name__ == "__main__":
    run_stage(main)

"""fetch_data: the study's training data and evaluation problems, from the sources params name.

Writes ``data/raw/deep.jsonl`` and ``data/raw/diverse.jsonl`` (CodeGen rows as published,
validated first) and ``data/raw/eval.jsonl`` (the problems ``eval.benchmark`` selects with
the eval params, tests decoded). The base model is fetched by its own stage (fetch_model),
so new training data never re-converts the model.
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from pathlib import Path

from thinktune import codegen
from thinktune.atomic import atomic_file, write_jsonl
from thinktune.benchmark import get_benchmark
from thinktune.errors import InputError, run_stage
from thinktune.logs import get_logger
from thinktune.params import DataParams, EvalParams, load_params

log = get_logger("fetch_data")


def fetch_training_data(data: DataParams, out_dir: Path) -> None:
    """``<out_dir>/deep.jsonl`` and ``diverse.jsonl``, each validated before it is renamed in."""
    for strategy, repo, filename in (("deep", data.deep_repo, data.deep_file),
                                     ("diverse", data.diverse_repo, data.diverse_file)):
        dest = out_dir / f"{strategy}.jsonl"
        with atomic_file(dest, "wb") as tmp:
            if data.source == "hub":
                log.info("downloading %s/%s", repo, filename)
                src = codegen.download_codegen(repo, filename)
            elif data.source == "local":
                src = Path(data.local_dir or "") / filename
                if not src.is_file():
                    raise InputError(f"data.local_dir: {src} not found; copy {repo}'s {filename} there")
            else:
                src = Path(data.sample_dir) / f"codegen_{strategy}.jsonl"
            _, report = codegen.load_codegen(src, data.splits, data.max_rows)
            with src.open("rb") as fh:
                shutil.copyfileobj(fh, tmp)
        log.info("%s: %d rows usable (skipped: %s) -> %s", strategy, report.kept,
                 dict(report.skipped) or "none", dest)


def fetch_eval_problems(params: EvalParams, out_file: Path) -> None:
    """The problems ``eval.benchmark`` selects with the eval params, tests decoded."""
    chosen = get_benchmark(params.benchmark).load_problems(params)
    write_jsonl(out_file, (p.to_json() for p in chosen))
    by_difficulty = dict(Counter(p.difficulty for p in chosen))
    log.info("%s: %d problems (%s) -> %s", params.benchmark, len(chosen), by_difficulty, out_file)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data-out", type=Path, default=Path("data/raw"))
    parser.add_argument("--eval-out", type=Path, default=Path("data/raw/eval.jsonl"))
    args = parser.parse_args(argv)
    params = load_params(args.params)

    fetch_training_data(params.data, args.data_out)
    fetch_eval_problems(params.eval, args.eval_out)


if __name__ == "__main__":
    run_stage(main)

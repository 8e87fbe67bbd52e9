"""plot: Pass@1 and the answers' shape against training step, Deep and Diverse from the base model.

Reads ``results/{base,deep,diverse}/summary.json``. Writes ``plots/pass_at_1.csv`` (every
point: strategy, checkpoint, step, Pass@1, solved/total, 95% interval, mean reasoning
tokens, shares cut by the token limit and without code), ``plots/curve/{deep,diverse}.csv``
(one curve each, for ``dvc plots show``), ``plots/pass_at_1.png`` and
``plots/answer_shape.png`` (seaborn, styled by params ``plot``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thinktune.errors import run_stage
from thinktune.logs import get_logger
from thinktune.params import STRATEGIES, load_params
from thinktune.plotting import TARGETS, curve_rows, draw_answer_shape, draw_curve, write_curve_csv
from thinktune.records import read_summary

log = get_logger("plot")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("plots"))
    args = parser.parse_args(argv)
    params = load_params(args.params)

    evals = {t: read_summary(args.results, t) for t in TARGETS}
    rows = curve_rows(evals)
    write_curve_csv(rows, args.out / "pass_at_1.csv")
    for strategy in STRATEGIES:
        write_curve_csv([r for r in rows if r["strategy"] == strategy], args.out / "curve" / f"{strategy}.csv")
    draw_curve(rows, params.plot, args.out / "pass_at_1.png")
    draw_answer_shape(rows, params.plot, args.out / "answer_shape.png")
    log.info("%d points; curves in %s, figures %s and %s", len(rows), args.out / "pass_at_1.csv",
             args.out / "pass_at_1.png", args.out / "answer_shape.png")


if __name__ == "__main__":
    run_stage(main)

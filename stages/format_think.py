"""format_think: CodeGen rows -> chat messages with the reasoning inside ``<think>``.

Reads ``data/raw/train/<dataset>.jsonl``, the base model's tokenizer (for lengths) and
``data/raw/eval/<benchmark>.jsonl`` (for the contamination check). Each strategy in params ``strategies``
takes its rows from its datasets (with its row filter). Writes
``data/formatted/<strategy>/{train,valid}.jsonl`` and ``data/formatted/report.json`` (rows kept,
dropped or shortened to fit ``format.max_length``, token lengths, eval problems whose text
overlaps the training statements). Every strategy must end with the same number of training
chats (the study's design): ``format.balance`` stops the run when they differ, or trims the
larger sets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thinktune.atomic import atomic_dir, read_jsonl, write_json, write_jsonl
from thinktune.config.params import load_params
from thinktune.data import codegen, formatting
from thinktune.errors import run_stage
from thinktune.logs import get_logger

log = get_logger("format_think")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw/train"))
    parser.add_argument("--eval-problems", type=Path, default=Path("data/raw/eval"), help="a folder of <benchmark>.jsonl")
    parser.add_argument("--base-model", type=Path, default=Path("models/base"))
    parser.add_argument("--out", type=Path, default=Path("data/formatted"))
    args = parser.parse_args(argv)
    params = load_params(args.params, check_palette=False)  # plot.palette: checked by check_params, read by plot

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    data_report: dict = {"max_length": params.format.max_length, "overlength": params.format.overlength}
    statements: list[str] = []
    # Everything is checked before data/formatted is replaced (whole, in one rename).
    with atomic_dir(args.out) as tmp:
        train: dict[str, list[dict]] = {}
        valid: dict[str, list[dict]] = {}
        loaded = {}  # dataset -> (rows, load report), each file read once
        for strategy, parts in params.strategies.items():
            rows, loads = [], {}
            for part in parts:
                if part.dataset not in loaded:
                    loaded[part.dataset] = codegen.load_codegen(args.raw / f"{part.dataset}.jsonl", params.data.splits,
                                                                params.data.max_rows, params.data.malformed)
                rows += codegen.select_rows(loaded[part.dataset][0], part.problems, part.solutions_per_problem)
                loads[part.dataset] = loaded[part.dataset][1].as_dict()
            statements += [row["input"] for row in rows]
            chats, report = formatting.format_rows(rows, tokenizer, params.format)
            train[strategy], valid[strategy] = formatting.split_by_problem(chats, params.format.valid_fraction,
                                                                           params.format.seed)
            malformed = sum(d["malformed"] for d in loads.values())
            data_report[strategy] = {"datasets": loads, "load": {"malformed": malformed}, **report.as_dict()}
            log.info("%s: %d chats from %d problems of %s (%d train, %d valid), malformed rows dropped %d, dropped %s, "
                     "truncated %d, code from the `solution` field %d", strategy, report.kept, len(report.problems),
                     ", ".join(loads), len(train[strategy]), len(valid[strategy]), malformed,
                     dict(report.dropped) or "none", report.truncated, report.code_from_solution)
        trimmed = formatting.balance(train, params.format.balance, params.format.seed)
        for strategy in params.strategies:
            if trimmed[strategy]:
                log.warning("%s: %d training chats left out to match the other strategies (format.balance=trim)",
                            strategy, trimmed[strategy])
            write_jsonl(tmp / strategy / "train.jsonl", train[strategy])
            write_jsonl(tmp / strategy / "valid.jsonl", valid[strategy])
            data_report[strategy].update(train_rows=len(train[strategy]), valid_rows=len(valid[strategy]),
                                         trimmed_for_balance=trimmed[strategy])

        eval_problems = {r["question_id"]: r["question_content"] for path in sorted(args.eval_problems.glob("*.jsonl"))
                         for r in read_jsonl(path)}
        data_report["contamination"] = formatting.contamination(statements, eval_problems)
        if data_report["contamination"]["overlapping"]:
            log.warning("eval problems sharing a 13-word run with training statements: %s",
                        data_report["contamination"]["overlapping_ids"])
        write_json(tmp / "report.json", data_report)
    log.info("chats and the data report (report.json) written to %s", args.out)


if __name__ == "__main__":
    run_stage(main)

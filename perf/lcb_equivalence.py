"""Do we grade like LiveCodeBench? Grade the same programs with ours and with the official grader.

    python -m perf.lcb_equivalence                      # the corpus in tests/grading_corpus.py
    python -m perf.lcb_equivalence --results results    # + every program the models wrote

The official grader is ``codegen_metrics`` from the PyPI package ``nvidia-livecodebench``
(LiveCodeBench's own code), installed on first use without its dependencies into the
thinktune cache (perf/_official.py) - the project's environment is not touched.

Corpus: each program has a known verdict; a case marked with a known difference expects
the official grader to give the other verdict (README.md, "Evaluation harness", says why for each).
``--results``: the programs extracted from evaluation records (``results/*/*.jsonl``), on
their problems' tests from ``data/raw/eval/livecodebench.jsonl`` - real model output, no labels, so
every disagreement there is reported as one.

Prints one line per disagreement and a summary; exits 1 when there is an unexplained
disagreement (or our grader misses a corpus label), so it can gate a change to grading.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perf import _official, load_file
from thinktune.atomic import read_jsonl
from thinktune.grading.sandbox import Limits
from thinktune.grading.verdicts import TestCase, grade_many


def load_corpus() -> list[dict]:
    return load_file("tests/grading_corpus.py").CASES


def model_programs(results_dir: Path, problems_file: Path) -> list[dict]:
    """Every distinct (problem, extracted program) in the evaluation records, as unlabeled cases."""
    problems = {row["question_id"]: row for row in read_jsonl(problems_file)}
    cases, seen = [], set()
    for path in sorted(results_dir.rglob("*.jsonl")):  # results/<benchmark>/<run>/<checkpoint>.jsonl
        for record in read_jsonl(path):
            problem = problems.get(record["question_id"])
            if problem is None:
                continue
            for sample in record["samples"]:
                key = (record["question_id"], sample["code"])
                if sample["code"] is None or key in seen:
                    continue
                seen.add(key)
                cases.append({"name": f"{path.parent.name}/{path.stem}/{record['question_id']}",
                              "program": sample["code"], "func_name": problem.get("func_name"),
                              "tests": problem["public_tests"] + problem["private_tests"],
                              "passed": None, "official": None, "why": ""})
    return cases


def grade_both(cases: list[dict], timeout: int, workers: int) -> tuple[list[bool], list[bool]]:
    jobs = [(c["program"], [TestCase(**t) for t in c["tests"]], c["func_name"]) for c in cases]
    ours = [r.passed for r in grade_many(jobs, Limits(timeout_s=float(timeout)), workers=workers, progress=True)]
    official = _official.run_codegen_metrics(cases, [c["program"] for c in cases], timeout=timeout,
                                             processes=workers)
    return ours, official["passed"]


def compare(cases: list[dict], ours: list[bool], official: list[bool]) -> tuple[list[str], list[str]]:
    """(unexplained problems, explained known differences), one line each."""
    problems, explained = [], []
    for case, mine, theirs in zip(cases, ours, official, strict=True):
        verdicts = f"ours={'pass' if mine else 'fail'} official={'pass' if theirs else 'fail'}"
        if case["passed"] is not None and mine != case["passed"]:
            problems.append(f"{case['name']}: {verdicts}, but the corpus says {case['passed']}")
        elif mine == theirs:
            continue
        elif case["official"] is not None and theirs == case["official"]:
            explained.append(f"{case['name']}: {verdicts} (known: {case['why']})")
        else:
            problems.append(f"{case['name']}: {verdicts}")
    return problems, explained


def print_comparison(label: str, noun: str, grader: str, cases: list[dict], ours: list[bool],
                     official: list[bool]) -> bool:
    """Print one set's summary line and its known and unexplained differences; True if any is
    unexplained."""
    problems, explained = compare(cases, ours, official)
    print(f"\n{label}: {len(cases)} {noun}, {sum(ours)} pass with ours, {sum(official)} with {grader}; "
          f"{len(explained)} known differences, {len(problems)} unexplained disagreements")
    for line in explained:
        print("  known   ", line)
    for line in problems:
        print("  DISAGREE", line)
    return bool(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, help="also grade the programs in these evaluation records")
    parser.add_argument("--problems", type=Path, default=Path("data/raw/eval/livecodebench.jsonl"))
    parser.add_argument("--timeout", type=int, default=3, help="seconds per test, both graders (default 3)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    sets = {"corpus": load_corpus()}
    if args.results:
        sets["model programs"] = model_programs(args.results, args.problems)
    failed = False
    for label, cases in sets.items():
        ours, official = grade_both(cases, args.timeout, args.workers)
        failed |= print_comparison(label, "programs", "the official grader", cases, ours, official)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

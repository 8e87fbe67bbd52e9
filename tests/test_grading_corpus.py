"""Our grader gives every corpus program its known verdict (tests/grading_corpus.py).

The same corpus is graded by LiveCodeBench's official grader in
perf/lcb_equivalence.py; here, in CI, only our side runs."""

from __future__ import annotations

import pytest
from grading_corpus import CASES, KNOWN_DIFFERENCES

from thinktune.grading.sandbox import Limits
from thinktune.grading.verdicts import TestCase, Verdict, grade_program

LIMITS = Limits(timeout_s=3.0)


def test_corpus_is_well_formed():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)) and len(CASES) >= 50
    assert {c["passed"] for c in CASES} == {True, False}
    assert any(c["func_name"] for c in CASES) and any(not c["func_name"] for c in CASES)
    assert all(KNOWN_DIFFERENCES.values()), "every known difference says why"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_our_verdict(case):
    tests = [TestCase(**t) for t in case["tests"]]
    result = grade_program(case["program"], tests, LIMITS, func_name=case["func_name"], stop_at_first_failure=False)
    assert result.passed is case["passed"], result.first_failure
    if not case["passed"]:
        assert result.first_failure and any(v is not Verdict.PASSED for v in result.verdicts)


@pytest.mark.parametrize("name, verdict", [("infinite_loop", Verdict.TIMEOUT), ("sleep_past_timeout", Verdict.TIMEOUT),
                                           ("memory_bomb", Verdict.RUNTIME_ERROR),
                                           ("output_flood", Verdict.OUTPUT_LIMIT),
                                           ("sys_exit_1_after_output", Verdict.RUNTIME_ERROR),
                                           ("extra_line", Verdict.WRONG_ANSWER),
                                           ("functional_timeout", Verdict.TIMEOUT)])
def test_failures_are_classified(name, verdict):
    case = next(c for c in CASES if c["name"] == name)
    result = grade_program(case["program"], [TestCase(**t) for t in case["tests"]], LIMITS,
                           func_name=case["func_name"])
    assert result.verdicts[-1] is verdict

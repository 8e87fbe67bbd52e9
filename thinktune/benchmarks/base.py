"""One interface for every benchmark the evaluation runs; ``eval.benchmarks`` lists them.

A benchmark says where its problems come from and how an answer to one is judged:

- ``load_problems(params)``: the problems the eval params select (the fetch stage),
- ``user_prompt(problem, style)``: the user turn that asks one problem,
- ``program_to_grade(problem, code)``: the program run from an answer's code block,
- ``tests(problem)``: what that program is run against.

LiveCodeBench (``thinktune.benchmarks.livecodebench``) and HumanEval (``thinktune.benchmarks.humaneval``)
implement it; fetch, chat prompting and evaluation call it and never branch on the
benchmark's name. A third benchmark is one more class and one more line in ``_REGISTRY``.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from thinktune.grading.testcase import TestCase

if TYPE_CHECKING:
    from thinktune.config.params import EvalParams

PromptStyle = Literal["study", "livecodebench"]


@dataclass(frozen=True)
class Problem:
    """One evaluation problem, normalised: every test decoded, dates parsed."""

    question_id: str
    question_title: str
    question_content: str
    platform: str
    contest_id: str
    contest_date: str  # ISO date-time, as in the source
    difficulty: str
    starter_code: str
    func_name: str | None
    public_tests: list[dict]
    private_tests: list[dict]

    @property
    def tests(self) -> list[dict]:
        return self.public_tests + self.private_tests

    @property
    def is_functional(self) -> bool:
        return bool(self.starter_code.strip())

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict) -> Problem:
        return cls(**row)


class Benchmark:
    """Base of every benchmark: subclasses give a ``name`` and the first three methods."""

    name: str

    def load_problems(self, params: EvalParams) -> list[Problem]:
        raise NotImplementedError

    def user_prompt(self, problem: Problem, style: PromptStyle) -> str:
        raise NotImplementedError

    def program_to_grade(self, problem: Problem, code: str | None) -> str | None:
        """The program to run; None (no code in the answer) is graded as no code."""
        return code

    def tests(self, problem: Problem) -> list[TestCase]:
        return [TestCase(**test) for test in problem.tests]


# name -> "module:attribute" of its instance; imported on use, so neither module loads the other.
_REGISTRY = {
    "livecodebench": "thinktune.benchmarks.livecodebench:LIVECODEBENCH",
    "humaneval": "thinktune.benchmarks.humaneval:HUMANEVAL",
}


def get_benchmark(name: str) -> Benchmark:
    if name not in _REGISTRY:
        raise ValueError(f"eval.benchmarks: {name!r} is unknown; choose from {sorted(_REGISTRY)}")
    module, attribute = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attribute)

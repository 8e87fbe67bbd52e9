"""The benchmark interface: both benchmarks behind it, chosen by eval.benchmark, no name branches elsewhere."""

from __future__ import annotations

import ast
import json
import re

import pytest

from stages.fetch_data import select_problems, write_problems
from thinktune.benchmarks.base import Benchmark, Problem, get_benchmark
from thinktune.grading.verdicts import TestCase


def test_registry_names_each_implementation(params):
    for name in ("livecodebench", "humaneval"):
        benchmark = get_benchmark(name)
        assert isinstance(benchmark, Benchmark) and benchmark.name == name
    with pytest.raises(ValueError, match="eval.benchmarks: 'mbpp' is unknown"):
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
    eval_params = params.eval.model_copy(update={"benchmarks": ["humaneval"], "platforms": ["codeforces"],
                                                 "max_problems": 3})
    problems = he.load_problems(eval_params)
    assert [p.question_id for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert [t.testtype for t in he.tests(problems[0])] == ["assertion"]
    assert he.program_to_grade(problems[0], "    return True\n").startswith(problems[0].starter_code)


def test_fetch_writes_what_each_benchmark_selects(params, repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    eval_params = params.eval.model_copy(update={"benchmarks": ["livecodebench", "humaneval"], "source": "sample",
                                                 "date_from": None, "max_problems": 4})
    write_problems(select_problems(eval_params), tmp_path / "eval")
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["humaneval.jsonl", "livecodebench.jsonl"]
    for benchmark in ("livecodebench", "humaneval"):
        rows = [Problem.from_json(json.loads(line)) for line in (tmp_path / "eval" / f"{benchmark}.jsonl").open()]
        view = eval_params.model_copy(update={"benchmarks": [benchmark]})
        assert rows == get_benchmark(benchmark).load_problems(view) and len(rows) == 4


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


# Where naming a benchmark is the point: the benchmarks themselves, and two places that still
# branch on the name (line counts, so that a new branch there fails too).
BENCHMARK_MODULES = {"thinktune/benchmarks/humaneval.py", "thinktune/benchmarks/livecodebench.py"}
KNOWN_BRANCHES = {
    "thinktune/config/local_inputs.py": 2,  # LiveCodeBench's local and sample files, checked before any stage
    "thinktune/reporting/templates/report.md.j2": 1,  # the report's benchmark line names LiveCodeBench's filters
}
TEMPLATE_BRANCH = re.compile(r"""==\s*["'](humaneval|livecodebench)["']|["'](humaneval|livecodebench)["']\s*==""")


def test_no_module_branches_on_the_benchmark(repo_root):
    """Prompting, fetching and evaluation go through the interface, never `if benchmark == ...`:
    every module of the package, the stages and the speed scripts."""
    modules = sorted(p for folder in ("thinktune", "stages", "perf") for p in (repo_root / folder).rglob("*.py"))
    templates = sorted((repo_root / "thinktune").rglob("*.j2"))
    names = {p.relative_to(repo_root).as_posix() for p in modules}
    assert {"thinktune/evaluation/evaluate.py", "thinktune/generation/chats.py", "stages/eval_checkpoints.py",
            "stages/fetch_data.py", "perf/humaneval_base.py"} <= names and len(names) > 60
    names |= {p.relative_to(repo_root).as_posix() for p in templates}
    assert BENCHMARK_MODULES | set(KNOWN_BRANCHES) <= names
    offenders = {}
    for path in modules:
        name = path.relative_to(repo_root).as_posix()
        if name not in BENCHMARK_MODULES and (lines := _compares_benchmark_names(ast.parse(path.read_text()))):
            offenders[name] = lines
    for path in templates:  # the report's prose is a Jinja2 template: its `{% if %}`s count too
        if lines := [i for i, line in enumerate(path.read_text().splitlines(), 1) if TEMPLATE_BRANCH.search(line)]:
            offenders[path.relative_to(repo_root).as_posix()] = lines
    assert {name: len(lines) for name, lines in offenders.items()} == KNOWN_BRANCHES, offenders


def test_fetch_refuses_a_single_problem_naming_the_filters(params, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    one_day = params.eval.model_copy(update={"source": "sample", "date_from": None, "max_problems": None,
                                             "difficulties": ["medium"]})
    dates = sorted({p.contest_date[:10] for p in get_benchmark("livecodebench").load_problems(one_day)})
    lone = [d for d in dates if sum(p.contest_date[:10] == d for p in get_benchmark("livecodebench")
                                    .load_problems(one_day)) == 1]
    assert lone, "the sample has a day with one medium problem"
    from datetime import date

    day = date.fromisoformat(lone[0])
    with pytest.raises(ValueError, match=r"livecodebench selects 1 problem .* needs at least 2 .* widen the filters"):
        select_problems(one_day.model_copy(update={"date_from": day, "date_to": day}))

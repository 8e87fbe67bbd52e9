from __future__ import annotations

import json

import pytest

from thinktune.benchmarks.base import Problem, get_benchmark
from thinktune.benchmarks.livecodebench import STUDY_STDIN
from thinktune.data import chat, codegen

OUTPUT = "First read n.\nThen print n squared.\n\n```python\nn = int(input())\nprint(n * n)\n```\n"


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_codegen_stops_at_a_malformed_row_naming_file_line_and_field(tmp_path):
    good = {"id": "p1", "input": "Square n.", "output": OUTPUT, "solution": "print(1)", "split": "train"}
    cases = [({k: v for k, v in good.items() if k != "input"}, "missing `input`"),
             ({**good, "output": "  "}, "empty `output`"),
             ({k: v for k, v in good.items() if k != "solution"}, "missing `solution`"),
             ({**good, "solution": 5}, "`solution` is not a string")]
    for bad, reason in cases:
        path = write(tmp_path / "d.jsonl", [good, good, bad, good])
        with pytest.raises(codegen.InputError) as info:
            codegen.load_codegen(path, ["train"])
        assert str(info.value).startswith(f"{path}:3: {reason}; ") and "data.malformed=drop" in str(info.value)


def test_load_codegen_drops_and_counts_malformed_rows_when_asked(tmp_path):
    good = {"input": "Square n.", "output": OUTPUT, "solution": "print(1)"}
    rows = [
        {"id": "p1", **good, "split": "train"},
        {"id": "p2", **good, "input": ""},
        {"id": "p3", "input": "x", "solution": "s", "split": "train"},
        {"id": "p4", **good, "split": "test"},
        {"id": "p5", **good, "solution": 5},
        {"id": "p6", "input": "x", "output": OUTPUT},
    ]
    kept, report = codegen.load_codegen(write(tmp_path / "d.jsonl", rows), ["train"], malformed="drop")
    assert [r["id"] for r in kept] == ["p1"]
    assert report.skipped == {"empty `input`": 1, "missing `output`": 1, "split 'test' not in data.splits": 1,
                              "`solution` is not a string": 1, "missing `solution`": 1}
    assert report.malformed == 4 and report.as_dict()["malformed"] == 4
    with pytest.raises(ValueError, match="no usable rows.*non-empty `input`, `output` and `solution`"):
        codegen.load_codegen(write(tmp_path / "e.jsonl", rows[1:3]), ["train"], malformed="drop")


def test_empty_data_file_errors_name_the_real_cause(tmp_path):
    with pytest.raises(codegen.InputError, match="holds no rows: it is empty"):
        codegen.load_codegen(write(tmp_path / "empty.jsonl", []), ["train"])
    only_test = [{"id": "p", "input": "x", "output": OUTPUT, "solution": "s", "split": "test"}] * 2
    with pytest.raises(codegen.InputError, match=r"none of its 2 rows is in data.splits=\['train'\].*\['test'\]"):
        codegen.load_codegen(write(tmp_path / "t.jsonl", only_test), ["train"])


def test_problem_key_groups_solutions():
    assert codegen.problem_key({"id": "abc", "input": "x"}) == "abc"
    assert codegen.problem_key({"input": "Sum  it"}) == codegen.problem_key({"input": "Sum it"})


def test_split_reasoning_and_code_variants():
    assert chat.split_reasoning_and_code(OUTPUT) == ("First read n.\nThen print n squared.", "n = int(input())\nprint(n * n)")
    think = "<think>plan it</think>\nAnswer:\n```python\nprint(1)\n```"
    assert chat.split_reasoning_and_code(think) == ("plan it", "print(1)")
    assert chat.split_reasoning_and_code("just prose", solution="print(2)") == ("just prose", "print(2)")
    assert chat.split_reasoning_and_code("just prose") is None


def test_training_messages_put_reasoning_in_think():
    messages = chat.training_messages("SYS", " Problem ", "why", "print(1)")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[2]["content"] == "<think>\nwhy\n</think>\n\n```python\nprint(1)\n```"
    pc = chat.prompt_completion(messages)
    assert pc["prompt"] == messages[:2] and pc["completion"] == messages[2:]
    with pytest.raises(ValueError):
        chat.prompt_completion(messages[:2])


def problem(content: str, starter_code: str) -> Problem:
    """An AtCoder-style problem with only a statement and (maybe) starter code."""
    return Problem(question_id="q", question_title="t", question_content=content, platform="atcoder",
                   contest_id="c", contest_date="2024-01-01T00:00:00", difficulty="easy", func_name=None,
                   public_tests=[], private_tests=[], starter_code=starter_code)


def test_livecodebench_template_for_stdin_and_functional():
    lcb = get_benchmark("livecodebench")
    stdin = lcb.user_prompt(problem("Do it.", starter_code=""), "livecodebench")
    assert stdin.startswith("### Question:\nDo it.") and "stdin" in stdin and "# YOUR CODE HERE" in stdin
    assert stdin.endswith("### Answer: (use the provided format with backticks)\n\n")
    functional = lcb.user_prompt(problem("Do it.", starter_code="class Solution:\n    def f(self):"), "livecodebench")
    assert "class Solution" in functional and "# YOUR CODE HERE" not in functional
    messages = chat.eval_messages("SYS", stdin)
    assert messages == [{"role": "system", "content": "SYS"}, {"role": "user", "content": stdin}]


def test_study_prompt_is_the_training_user_turn_plus_the_io_convention():
    lcb = get_benchmark("livecodebench")
    stdin = lcb.user_prompt(problem("Do it.\n", starter_code=""), "study")
    assert stdin == "Do it.\n\n" + STUDY_STDIN and "YOUR CODE HERE" not in stdin
    functional = lcb.user_prompt(problem("Do it.\n", starter_code="class Solution:\n    def f(self):\n        "),
                                 "study")
    assert functional.startswith("Do it.\n\n") and functional.endswith("def f(self):\n```")

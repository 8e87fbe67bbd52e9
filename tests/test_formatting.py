from __future__ import annotations

import pytest

from thinktune.config.params import FormatParams
from thinktune.data import formatting

CODE = "n = int(input())\nprint(n * n)"


def fmt(**kw) -> FormatParams:
    return FormatParams(**({"system_prompt": "SYS", "max_length": 4096, "overlength": "drop",
                            "valid_fraction": 0.0, "seed": 1} | kw))


def rows(reasoning_words=10, problems=3, per_problem=2):
    reasoning = " ".join(["think"] * reasoning_words)
    return [{"id": f"p{p}", "input": f"Problem {p}: square n.",
             "output": f"{reasoning}\n```python\n{CODE}\n```"} for p in range(problems) for _ in range(per_problem)]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_chats_have_think_then_code(tokenizer):
    chats, report = formatting.format_rows(rows(), tokenizer, fmt())
    assert report.kept == 6 and len(report.problems) == 3 and not report.dropped
    answer = chats[0]["messages"][-1]["content"]
    assert answer.startswith("<think>\n") and "</think>\n\n```python\n" + CODE in answer


def test_overlength_drop_and_truncate(tokenizer):
    long_rows = rows(reasoning_words=400, problems=1, per_problem=1) + [{"input": "x", "output": "no code"}]
    limit = formatting.chat_length(tokenizer, formatting.format_rows(rows(10, 1, 1), tokenizer, fmt())[0][0]["messages"]) + 20
    _, dropped = formatting.format_rows(long_rows, tokenizer, fmt(max_length=limit))
    assert dropped.kept == 0 and dropped.dropped == {"longer than format.max_length": 1, "no code in output": 1}
    chats, truncated = formatting.format_rows(long_rows, tokenizer, fmt(max_length=limit, overlength="truncate"))
    assert truncated.truncated == 1 and truncated.kept == 1
    assert formatting.chat_length(tokenizer, chats[0]["messages"]) <= limit
    assert chats[0]["messages"][-1]["content"].endswith(f"```python\n{CODE}\n```")  # the code survives whole


def test_validation_holds_out_whole_problems(tokenizer):
    chats, _ = formatting.format_rows(rows(problems=40), tokenizer, fmt())
    train, valid = formatting.split_by_problem(chats, 0.25, seed=3)
    assert valid and train and len(train) + len(valid) == len(chats)
    assert not {c["problem_id"] for c in train} & {c["problem_id"] for c in valid}
    assert formatting.split_by_problem(chats, 0.25, seed=3) == (train, valid)  # seeded, stable
    assert formatting.split_by_problem(chats, 0.0, seed=3) == (chats, [])


def test_contamination_finds_shared_word_runs():
    statement = "Takahashi has N apples and gives half of them to Aoki every day until none are left at all."
    report = formatting.contamination([statement], {"copy": "Story: " + statement, "fresh": "Print the sum of A and B."})
    assert report["overlapping_ids"] == ["copy"] and report["eval_problems"] == 2


def test_rows_whose_code_comes_from_the_solution_field_are_counted(tokenizer):
    fallback = [{"id": "p9", "input": "Square n.", "output": "Read n, print its square.", "solution": CODE}]
    chats, report = formatting.format_rows(rows(problems=1, per_problem=1) + fallback, tokenizer, fmt())
    assert report.kept == 2 and report.code_from_solution == 1
    assert report.as_dict()["code_from_solution"] == 1
    assert chats[-1]["messages"][-1]["content"].endswith(f"```python\n{CODE}\n```")


def test_unequal_training_sets_stop_or_are_trimmed_to_equal_size():
    chats = {"deep": [{"problem_id": f"d{i // 3}", "n": i} for i in range(9)],
             "diverse": [{"problem_id": f"v{i}", "n": i} for i in range(7)]}
    assert formatting.balance({"deep": chats["deep"][:7], "diverse": list(chats["diverse"])}, "error", 0) == \
           {"deep": 0, "diverse": 0}
    with pytest.raises(formatting.InputError, match=r"^format\.balance: .*\(deep 9, diverse 7\).*format\.balance=trim"):
        formatting.balance({k: list(v) for k, v in chats.items()}, "error", 0)
    trimmed = {k: list(v) for k, v in chats.items()}
    assert formatting.balance(trimmed, "trim", 0) == {"deep": 2, "diverse": 0}
    assert len(trimmed["deep"]) == len(trimmed["diverse"]) == 7
    kept = [c["n"] for c in trimmed["deep"]]
    assert kept == sorted(kept) and trimmed["diverse"] == chats["diverse"]  # order kept, smaller set untouched
    again = {k: list(v) for k, v in chats.items()}
    formatting.balance(again, "trim", 0)
    assert again == trimmed  # the same seed cuts the same chats

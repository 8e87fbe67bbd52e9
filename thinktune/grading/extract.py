"""The program to grade, taken from a model's answer.

A fine-tuned answer is ``<think>reasoning</think>`` followed by the final answer with a
fenced code block. Only code in the final answer is graded: a model that sketches code
while thinking and never commits to it has not answered (LiveCodeBench grades the last
fenced block of the answer after the reasoning).
"""

from __future__ import annotations

import re

_OPEN = "<think>"
_CLOSE = "</think>"

# An opening fence: ``` then an optional info string (the language, then anything without
# a backtick). Matched in steps, each linear: one regex for the whole line made the tag and
# the rest compete for the same characters, quadratic in the line's length (8,000 characters
# after the backticks took 0.49 s).
_FENCE_TAG = re.compile(r"[A-Za-z0-9_+.#-]*")
_FENCE_CLOSE = re.compile(r"[ \t]*```[ \t]*")
_PYTHON_TAGS = {"", "python", "py", "python3"}


def split_reasoning(answer: str) -> tuple[str, str]:
    """(reasoning, rest) of a model answer.

    - ``<think>`` ... last ``</think>``: the reasoning is the text between them (a model
      may mention the closing tag while thinking, so the last one ends it); rest is what
      follows the last ``</think>``. Text before ``<think>`` is neither.
    - ``<think>`` without ``</think>``: the model ran out of tokens while thinking;
      everything after ``<think>`` is reasoning and there is no answer.
    - ``</think>`` without ``<think>``: the prompt opened the block (some chat templates
      do); everything before the last ``</think>`` is reasoning.
    - no tags: no reasoning; the whole answer is the rest.
    """
    start = answer.find(_OPEN)
    end = answer.rfind(_CLOSE)
    if start == -1 and end == -1:
        return "", answer
    if start == -1:
        return answer[:end], answer[end + len(_CLOSE):]
    body = start + len(_OPEN)
    if end < body:
        return answer[body:], ""
    return answer[body:end], answer[end + len(_CLOSE):]


def extract_code(answer: str) -> str | None:
    """The last Python (or untagged) fenced code block after the reasoning, or None.

    Fences tagged with another language (```text, ```cpp) are skipped but still pair up,
    so their contents are never mistaken for code. An unterminated last fence runs to
    the end of the answer (the model hit its token limit while writing code). An empty
    block counts as no code.
    """
    _, rest = split_reasoning(answer)
    last: str | None = None
    block_tag: str | None = None  # language of the block being read; None outside blocks
    block: list[str] = []
    for line in rest.replace("\r\n", "\n").split("\n"):
        if block_tag is None:
            if (tag := _opening_fence_tag(line)) is not None:
                block_tag, block = tag, []
        elif _FENCE_CLOSE.fullmatch(line):
            if block_tag in _PYTHON_TAGS:
                last = "\n".join(block)
            block_tag = None
        else:
            block.append(line)
    if block_tag in _PYTHON_TAGS:
        last = "\n".join(block)
    if last is None:
        return None
    code = last.rstrip()
    return code if code.strip() else None


def _opening_fence_tag(line: str) -> str | None:
    """The language of an opening fence line (lower case; "" untagged), or None if the line
    is not one: spaces or tabs, three backticks, spaces or tabs, the tag, then anything but a
    backtick."""
    body = line.lstrip(" \t")
    if not body.startswith("```"):
        return None
    info = body[3:].lstrip(" \t")
    if "`" in info:
        return None
    return _FENCE_TAG.match(info).group(0).lower()

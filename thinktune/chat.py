"""Chat messages: what the model is trained on and what it is asked at evaluation.

Training turn (one CodeGen row)::

    system:    the study's system prompt
    user:      the problem statement
    assistant: <think>\\n{reasoning}\\n</think>\\n\\n```python\\n{code}\\n```

Evaluation turn: the same system prompt and a user turn in one of two styles
(``eval.prompt_style``):

- ``study`` (default): the problem statement as the user turn, as in training, then one
  sentence on the input/output convention (stdin/stdout, or the starter code to complete).
  The fine-tuned models are asked in the form they were trained on.
- ``livecodebench``: LiveCodeBench's own template (``### Question:``, ``### Format:`` with
  a ``# YOUR CODE HERE`` code block, ``### Answer:``), for comparison with published numbers.
  Measured on the default's 0.5B model: it answers that template by repeating the empty
  ``# YOUR CODE HERE`` block (0/12 on the sample), hence not the default.
"""

from __future__ import annotations

import re
from typing import Literal

from thinktune import humaneval
from thinktune.livecodebench import Problem

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_THINK = re.compile(r"<think>(.*)</think>", re.DOTALL)


def split_reasoning_and_code(output: str, solution: str | None = None) -> tuple[str, str] | None:
    """(reasoning, code) of a CodeGen ``output``; None when it holds no code.

    The code is the last fenced block (``solution`` is used when the output has none);
    the reasoning is the text inside ``<think>`` if the output already has one, else
    everything before that last block.
    """
    blocks = list(_FENCE.finditer(output))
    code = blocks[-1].group(2).strip() if blocks else (solution or "").strip()
    if not code:
        return None
    if think := _THINK.search(output):
        reasoning = think.group(1)
    else:
        reasoning = output[: blocks[-1].start()] if blocks else output
    return reasoning.strip(), code


def assistant_answer(reasoning: str, code: str) -> str:
    return f"<think>\n{reasoning}\n</think>\n\n```python\n{code}\n```"


def training_messages(system_prompt: str, problem: str, reasoning: str, code: str) -> list[dict]:
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": problem.strip()},
        {"role": "assistant", "content": assistant_answer(reasoning, code)},
    ]


STDIN_FORMAT = (
    "### Format: Read the inputs from stdin, solve the problem and write the answer to stdout "
    "(do not directly test on the sample inputs). Enclose your code within delimiters as follows. "
    "Ensure that when the python program runs, it reads the inputs, runs the algorithm and "
    "writes output to STDOUT.\n```python\n# YOUR CODE HERE\n```"
)
FUNCTIONAL_FORMAT = (
    "### Format: You will use the following starter code to write the solution to the problem "
    "and enclose your code within delimiters.\n```python\n{starter_code}\n```"
)


STUDY_STDIN = ("Write a Python program that reads the input from standard input and prints the answer "
               "to standard output.")
STUDY_FUNCTIONAL = "Complete this starter code and give the whole solution:\n```python\n{starter_code}\n```"

PromptStyle = Literal["study", "livecodebench"]


def eval_prompt(problem: Problem, style: PromptStyle = "study") -> str:
    """The user turn for one problem (HumanEval: its own, whatever the style)."""
    if problem.platform == humaneval.PLATFORM:
        return humaneval.prompt(problem)
    if style == "study":
        fmt = (STUDY_FUNCTIONAL.format(starter_code=problem.starter_code.rstrip()) if problem.is_functional
               else STUDY_STDIN)
        return f"{problem.question_content.strip()}\n\n{fmt}"
    fmt = FUNCTIONAL_FORMAT.format(starter_code=problem.starter_code) if problem.is_functional else STDIN_FORMAT
    return (
        f"### Question:\n{problem.question_content.strip()}\n\n{fmt}\n\n"
        "### Answer: (use the provided format with backticks)\n\n"
    )


def eval_messages(system_prompt: str, problem: Problem, style: PromptStyle = "study") -> list[dict]:
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": eval_prompt(problem, style)},
    ]


def prompt_completion(messages: list[dict]) -> dict:
    """Split a chat into TRL's prompt/completion form so loss falls on the answer only."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("a training chat must end with the assistant turn")
    return {"prompt": messages[:-1], "completion": messages[-1:]}

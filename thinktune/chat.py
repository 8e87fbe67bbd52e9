"""Chat messages: what the model is trained on and what it is asked at evaluation.

Training turn (one CodeGen row)::

    system:    the study's system prompt
    user:      the problem statement
    assistant: <think>\\n{reasoning}\\n</think>\\n\\n```python\\n{code}\\n```

Evaluation turn: the same system prompt and a LiveCodeBench-style user prompt (the
question, then the required answer format), so the fine-tuned model is asked in the
form it was trained on and the base model in the form LiveCodeBench uses.
"""

from __future__ import annotations

import re

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


def eval_prompt(problem: Problem) -> str:
    """The user turn for one problem, in LiveCodeBench's layout (HumanEval: its own)."""
    if problem.platform == humaneval.PLATFORM:
        return humaneval.prompt(problem)
    fmt = FUNCTIONAL_FORMAT.format(starter_code=problem.starter_code) if problem.is_functional else STDIN_FORMAT
    return (
        f"### Question:\n{problem.question_content.strip()}\n\n{fmt}\n\n"
        "### Answer: (use the provided format with backticks)\n\n"
    )


def eval_messages(system_prompt: str, problem: Problem) -> list[dict]:
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": eval_prompt(problem)},
    ]


def prompt_completion(messages: list[dict]) -> dict:
    """Split a chat into TRL's prompt/completion form so loss falls on the answer only."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("a training chat must end with the assistant turn")
    return {"prompt": messages[:-1], "completion": messages[-1:]}

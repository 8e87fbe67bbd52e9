"""Chat messages: what the model is trained on and what it is asked at evaluation.

Training turn (one CodeGen row)::

    system:    the study's system prompt
    user:      the problem statement
    assistant: <think>\\n{reasoning}\\n</think>\\n\\n```python\\n{code}\\n```

Evaluation turn: the same system prompt and the user turn the benchmark writes for the
problem in the style ``eval.prompt_style`` asks (``Benchmark.user_prompt`` in
``thinktune.benchmarks.base``; LiveCodeBench's ``study`` style is the problem statement as in
training plus one sentence on the input/output convention).
"""

from __future__ import annotations

import re

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


def eval_messages(system_prompt: str, user_turn: str) -> list[dict]:
    """The chat an evaluated model answers: the study's system prompt, then the problem."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user_turn},
    ]


def prompt_completion(messages: list[dict]) -> dict:
    """Split a chat into TRL's prompt/completion form so loss falls on the answer only."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("a training chat must end with the assistant turn")
    return {"prompt": messages[:-1], "completion": messages[-1:]}

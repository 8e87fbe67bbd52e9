"""Turn CodeGen rows into training chats: ``<think>`` reasoning, then the code.

Also the two checks a careful reader asks for before trusting a fine-tune: how long the
chats are (and what was dropped or shortened to fit ``format.max_length``), and whether
any evaluation problem also appears in the training data.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field

from thinktune.config.params import FormatParams
from thinktune.data.chat import split_reasoning_and_code, training_messages
from thinktune.data.codegen import problem_key
from thinktune.errors import InputError

TRUNCATION_MARK = "\n…"


@dataclass
class FormatReport:
    rows_in: int = 0
    kept: int = 0
    truncated: int = 0
    code_from_solution: int = 0  # `output` had no code block: the row's `solution` field was used
    dropped: Counter = field(default_factory=Counter)
    token_lengths: list[int] = field(default_factory=list)
    problems: set[str] = field(default_factory=set)

    def as_dict(self) -> dict:
        lengths = self.token_lengths or [0]
        return {
            "rows_in": self.rows_in,
            "kept": self.kept,
            "problems": len(self.problems),
            "truncated": self.truncated,
            "code_from_solution": self.code_from_solution,
            "dropped": dict(self.dropped),
            "tokens_mean": round(statistics.fmean(lengths), 1),
            "tokens_max": max(lengths),
            "tokens_total": sum(self.token_lengths),
        }


def chat_length(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def _fit_reasoning(tokenizer, params: FormatParams, problem: str, reasoning: str, code: str) -> list[dict] | None:
    """Shorten the reasoning (keeping its start and the whole code) until the chat fits."""
    words = reasoning.split(" ")
    low, high, best = 0, len(words), None
    while low <= high:
        mid = (low + high) // 2
        messages = training_messages(params.system_prompt, problem, " ".join(words[:mid]) + TRUNCATION_MARK, code)
        if chat_length(tokenizer, messages) <= params.max_length:
            best, low = messages, mid + 1
        else:
            high = mid - 1
    return best


def format_rows(rows: list[dict], tokenizer, params: FormatParams) -> tuple[list[dict], FormatReport]:
    """Chats ``{"problem_id", "messages"}`` for the rows that have code and fit."""
    report = FormatReport(rows_in=len(rows))
    chats = []
    for row in rows:
        parts = split_reasoning_and_code(row["output"], row.get("solution"))
        if parts is None:
            report.dropped["no code in output"] += 1
            continue
        reasoning, code = parts
        report.code_from_solution += "```" not in row["output"]
        messages = training_messages(params.system_prompt, row["input"], reasoning, code)
        length = chat_length(tokenizer, messages)
        if length > params.max_length:
            if params.overlength == "drop":
                report.dropped["longer than format.max_length"] += 1
                continue
            messages = _fit_reasoning(tokenizer, params, row["input"], reasoning, code)
            if messages is None:
                report.dropped["too long even without reasoning"] += 1
                continue
            report.truncated += 1
            length = chat_length(tokenizer, messages)
        report.kept += 1
        report.token_lengths.append(length)
        report.problems.add(problem_key(row))
        chats.append({"problem_id": problem_key(row), "messages": messages})
    return chats, report


def split_by_problem(chats: list[dict], valid_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out whole problems (never some solutions of one), chosen by a seeded hash."""
    if valid_fraction == 0:
        return chats, []

    def held_out(problem_id: str) -> bool:
        digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < valid_fraction

    train = [c for c in chats if not held_out(c["problem_id"])]
    valid = [c for c in chats if held_out(c["problem_id"])]
    return train, valid


def balance(train: dict[str, list[dict]], mode: str, seed: int) -> dict[str, int]:
    """The study's design: every strategy trains on the same number of chats.

    Unequal counts raise :class:`InputError` naming them (``format.balance: error``), or the
    larger sets are cut in place to the smallest count (``trim``: the chats kept are chosen by a
    seeded hash, in their original order). Returns the chats removed per strategy."""
    counts = {name: len(chats) for name, chats in train.items()}
    smallest = min(counts.values())
    if smallest == max(counts.values()):
        return dict.fromkeys(counts, 0)
    listed = ", ".join(f"{name} {n}" for name, n in counts.items())
    if mode == "error":
        raise InputError(f"format.balance: the strategies would train on unequal numbers of chats ({listed}); the "
                         "study compares equal numbers: fix the data (data/formatted/report.json says what was "
                         f"dropped) or set format.balance=trim to cut each set to {smallest}")

    def order(index_chat: tuple[int, dict]) -> bytes:
        index, chat = index_chat
        return hashlib.sha256(f"{seed}:{chat['problem_id']}:{index}".encode()).digest()

    removed = {}
    for name, chats in train.items():
        keep = sorted(i for i, _ in sorted(enumerate(chats), key=order)[:smallest])
        removed[name] = len(chats) - smallest
        chats[:] = [chats[i] for i in keep]
    return removed


_WORD = re.compile(r"[a-z0-9]+")


def shingles(text: str, n: int = 13) -> set[tuple[str, ...]]:
    """Word n-grams of a lower-cased text (n=13 as in the GPT-3 contamination study)."""
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(max(len(words) - n + 1, 1))}


def contamination(train_statements: list[str], eval_problems: dict[str, str], n: int = 13) -> dict:
    """Eval problems sharing any word n-gram with a training statement."""
    seen: set[tuple[str, ...]] = set()
    for statement in train_statements:
        seen |= shingles(statement, n)
    overlapping = sorted(qid for qid, text in eval_problems.items() if shingles(text, n) & seen)
    return {"ngram": n, "eval_problems": len(eval_problems), "overlapping": len(overlapping),
            "overlapping_ids": overlapping}

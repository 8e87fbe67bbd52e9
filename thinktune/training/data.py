"""Training chats as token ids with the loss on the assistant turn only.

A formatted chat (system, user, assistant) is tokenized the way TRL's SFTTrainer tokenized
the project's prompt/completion rows before this loop replaced it: the prompt (system + user)
rendered by the chat template with the generation prompt, the whole chat rendered by the same
template, and the loss on every token after the longest common prefix, i.e. the assistant
turn with its end-of-turn token (``<|im_end|>`` and the newline the template writes after it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from thinktune.atomic import read_jsonl
from thinktune.data.chat import prompt_completion

IGNORE = -100  # label of a token that carries no loss (PyTorch's cross-entropy ignore_index)


@dataclass(frozen=True)
class TokenizedChat:
    """One training example: token ids and, per token, its label (``IGNORE`` on the prompt)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels) or not self.input_ids:
            raise ValueError("a tokenized chat needs as many labels as tokens, and at least one token")

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def n_targets(self) -> int:
        """Tokens the loss is computed on: labelled tokens the model predicts from a previous one."""
        return sum(label != IGNORE for label in self.labels[1:])


def _ids(encoded) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True); older a list.
    ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
    return list(ids)


def tokenize_chat(tokenizer, messages: list[dict], max_length: int) -> TokenizedChat:
    """Token ids of a chat and its labels: the assistant turn carries the loss, the prompt none."""
    split = prompt_completion(messages)
    prompt = _ids(tokenizer.apply_chat_template(split["prompt"], tokenize=True, add_generation_prompt=True))
    full = _ids(tokenizer.apply_chat_template(split["prompt"] + split["completion"], tokenize=True))
    common = 0
    for a, b in zip(prompt, full, strict=False):
        if a != b:
            break
        common += 1
    full = full[:max_length]
    labels = [IGNORE] * min(common, len(full)) + full[common:]
    return TokenizedChat(tuple(full), tuple(labels))


def load_tokenized(path: Path, tokenizer, max_length: int) -> list[TokenizedChat]:
    """Tokenize every chat of a formatted JSONL file (rows with ``messages``); names a bad row."""
    chats = []
    for lineno, row in enumerate(read_jsonl(path), start=1):
        messages = row.get("messages")
        if not isinstance(messages, list):
            raise TypeError(f"{path}:{lineno}: a formatted row needs a `messages` list (rerun format_think)")
        try:
            chat = tokenize_chat(tokenizer, messages, max_length)
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from None
        if chat.n_targets == 0:
            raise ValueError(f"{path}:{lineno}: no answer token within format.max_length={max_length}; "
                             "the prompt alone fills the context (raise max_length or drop the row)")
        chats.append(chat)
    return chats


def file_sha256(paths: Iterable[Path]) -> str:
    """One hash over the contents of files (missing files hash as absent), in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(Path(path).name).encode() + b"\0")
        if Path(path).is_file():
            with Path(path).open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(b"<absent>")
        digest.update(b"\0")
    return digest.hexdigest()


def token_counts(chats: Sequence[TokenizedChat]) -> tuple[int, int]:
    """(tokens, loss-carrying tokens) of a list of chats."""
    return sum(c.n_tokens for c in chats), sum(c.n_targets for c in chats)

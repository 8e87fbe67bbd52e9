"""The next token of every decoded row, from its logits and the decoding params alone.

Semantics are Hugging Face ``generate``'s: a repetition penalty on every token the row has
seen (prompt and answer), then greedy argmax at temperature 0; otherwise temperature,
top-k and top-p (transformers' own warpers) and a draw from the softmax. Nothing is read
from the model's ``generation_config``: the hub's Qwen2.5 Instruct file sets
``repetition_penalty`` 1.1 and sampling defaults, which would silently change what
"greedy" means.

Each row draws from its own random generator, seeded by ``(seed, prompt key, sample)``:
an answer does not depend on which rows share its batch, on when it entered the batch, or
on which process generated it, so sharded and continuous-batched runs sample the same
answers as a single batch does.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from thinktune.generation.settings import DecodingSettings


def row_seed(seed: int, key: int, sample: int) -> int:
    """A 63-bit seed for one answer, stable across runs, batches and processes."""
    digest = hashlib.sha256(f"{seed}/{key}/{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class TokenChooser:
    """Chooses next tokens for rows held in ``slots`` (the decode engine's batch slots)."""

    def __init__(self, settings: DecodingSettings, slots: int, vocab_size: int, device):
        import torch
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.settings = settings
        self.device = device
        self.greedy = settings.temperature == 0
        self.penalty = settings.repetition_penalty
        # Tokens each slot's row has seen, for the repetition penalty (HF penalises the whole input).
        self.seen = (torch.zeros(slots, vocab_size, dtype=torch.bool, device=device)
                     if self.penalty != 1.0 else None)
        self.generators: list[torch.Generator | None] = [None] * slots
        self.warpers = []  # in generate's order: temperature, top-k, top-p
        if not self.greedy:
            if settings.temperature != 1.0:
                self.warpers.append(TemperatureLogitsWarper(settings.temperature))
            if settings.top_k > 0:
                self.warpers.append(TopKLogitsWarper(settings.top_k))
            if settings.top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(settings.top_p))

    def start(self, slot: int, prompt_ids: list[int], key: int, sample: int) -> None:
        """A new row enters ``slot``."""
        import torch

        if self.seen is not None:
            self.seen[slot] = False
            self.seen[slot, torch.tensor(prompt_ids, device=self.device)] = True
        if not self.greedy:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(row_seed(self.settings.seed, key, sample))
            self.generators[slot] = generator

    def move(self, src: int, dst: int) -> None:
        """The row in ``src`` now lives in ``dst`` (the engine compacts its batch)."""
        if self.seen is not None:
            self.seen[dst] = self.seen[src]
        self.generators[dst] = self.generators[src]
        self.generators[src] = None

    def choose(self, logits: torch.Tensor, slots: list[int]) -> torch.Tensor:
        """Next token per row: ``logits[i]`` belongs to the row in ``slots[i]``."""
        import torch

        scores = logits.float()
        if self.seen is not None:
            index = torch.tensor(slots, device=self.device)
            seen = self.seen[index]
            scores = torch.where(seen, torch.where(scores < 0, scores * self.penalty, scores / self.penalty), scores)
        if self.greedy:
            tokens = scores.argmax(dim=-1)
        else:
            for warper in self.warpers:
                scores = warper(None, scores)
            probs = scores.softmax(dim=-1)
            tokens = torch.cat([torch.multinomial(probs[i], 1, generator=self.generators[slot])
                                for i, slot in enumerate(slots)])
        if self.seen is not None:
            self.seen[index, tokens] = True
        return tokens

"""The next token of every decoded row, from its logits and the decoding params alone.

Semantics are Hugging Face ``generate``'s: a repetition penalty on every token the row has
seen (prompt and answer), then greedy argmax at temperature 0; otherwise temperature,
top-k and top-p (the cuts of transformers' ``TopKLogitsWarper`` and ``TopPLogitsWarper``)
and a draw from the softmax of what is left. Nothing is read from the model's
``generation_config``: the hub's Qwen2.5 Instruct file sets ``repetition_penalty`` 1.1 and
sampling defaults, which would silently change what "greedy" means.

The draw is one batched operation for all rows, the same ops whatever the rows hold: no
per-row loop, no ``torch.multinomial``, no host sync and no data-dependent shape, so a CUDA
graph can capture it. Each row inverts its distribution's cumulative sum at one uniform
number (the inverse-CDF method: token ``j`` is drawn with probability exactly its share of
the sum). That uniform is the ``step``-th output of a counter-based Philox stream (numpy's
``Philox`` bit generator) keyed by the answer's ``(seed, prompt key, sample)``; the stream is
expanded into a table when the answer enters a slot, and each step reads its column. An
answer therefore depends on nothing but its key and its own logits: not on which rows share
its batch, which slot it sits in, when it entered the batch or which process decodes it.

The decode engine captures ``choose`` in its CUDA graph with the forward, over every row of a
padded batch bucket: the rows past the live ones choose too, from garbage logits, into slots
that a new row resets when it enters (``start_rows``), and their step counters, which keep
counting, are clamped where they index the table. A captured graph replays the ops and scalars
of the chooser it saw and reads its buffers by address, so choosers of equal ``graph_key`` can
share one set of buffers (``share_buffers``) and with it the graphs.
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


def answer_uniforms(seed: int, key: int, sample: int, steps: int):
    """The uniform numbers in [0, 1) of one answer's first ``steps`` tokens (float64 numpy array).

    Number ``t`` is the ``t``-th double of numpy's Philox stream keyed by :func:`row_seed`, a
    counter-based generator: it depends only on the key and ``t``."""
    import numpy as np

    return np.random.Generator(np.random.Philox(key=row_seed(seed, key, sample))).random(steps)


class TokenChooser:
    """Chooses next tokens for rows held in ``slots`` (the decode engine's batch slots)."""

    def __init__(self, settings: DecodingSettings, slots: int, vocab_size: int, device):
        import torch

        self.settings = settings
        self.device = device
        self.greedy = settings.temperature == 0
        self.penalty = settings.repetition_penalty
        # Tokens each slot's row has seen, for the repetition penalty (HF penalises the whole input).
        self.seen = (torch.zeros(slots, vocab_size, dtype=torch.bool, device=device)
                     if self.penalty != 1.0 else None)
        self.top_k = min(settings.top_k, vocab_size)
        # Each slot's answer: its uniforms for every step, and how many tokens it has drawn.
        self.uniforms = (torch.zeros(slots, max(settings.max_new_tokens, 1), dtype=torch.float64, device=device)
                         if not self.greedy else None)
        self.step = torch.zeros(slots, 1, dtype=torch.long, device=device) if not self.greedy else None

    def graph_key(self) -> tuple:
        """What a captured :meth:`choose` holds fixed besides the contents of the buffers: which ops
        run, the scalars they were recorded with and the buffers' shapes (the seed only fills the
        uniforms table, when a row enters)."""
        shapes = tuple(None if t is None else (tuple(t.shape), str(t.device)) for t in self._buffers())
        if self.greedy:
            return ("greedy", self.penalty, shapes)
        settings = self.settings
        return ("sampling", self.penalty, settings.temperature, self.top_k, settings.top_p, shapes)

    def _buffers(self) -> tuple:
        return self.seen, self.uniforms, self.step

    def share_buffers(self, other: TokenChooser) -> None:
        """Read and write ``other``'s buffers from now on (equal ``graph_key``): a graph captured
        with ``other`` then replays for this chooser. No row's state carries over: each slot is
        reset when a row enters it."""
        if other.graph_key() != self.graph_key():
            raise ValueError(f"choosers of other settings or shapes share no buffers: {other.graph_key()} "
                             f"vs {self.graph_key()}")
        self.seen, self.uniforms, self.step = other._buffers()

    def state(self) -> tuple:
        """A copy of what :meth:`choose` changes (for a graph's warm-up steps, which must not count)."""
        return tuple(None if t is None else t.clone() for t in (self.seen, self.step))

    def load_state(self, state: tuple) -> None:
        for buffer, saved in zip((self.seen, self.step), state, strict=True):
            if buffer is not None:
                buffer.copy_(saved)

    def start(self, slot: int, prompt_ids: list[int], key: int, sample: int) -> None:
        """A new row enters ``slot``."""
        self.start_rows([slot], [prompt_ids], [key], [sample])

    def start_rows(self, slots: list[int], prompts: list[list[int]], keys: list[int], samples: list[int]) -> None:
        """New rows enter ``slots`` (one upload of their uniforms for the whole group)."""
        import numpy as np
        import torch

        if self.seen is not None:
            for slot, prompt_ids in zip(slots, prompts, strict=True):
                self.seen[slot] = False
                self.seen[slot, torch.tensor(prompt_ids, device=self.device)] = True
        if not self.greedy:
            steps = self.uniforms.shape[1]
            table = np.stack([answer_uniforms(self.settings.seed, key, sample, steps)
                              for key, sample in zip(keys, samples, strict=True)])
            index = torch.tensor(slots, device=self.device)
            self.uniforms[index] = torch.from_numpy(table).to(self.device)
            self.step[index] = 0

    def move(self, src: int, dst: int) -> None:
        """The row in ``src`` now lives in ``dst`` (the engine compacts its batch)."""
        if self.seen is not None:
            self.seen[dst] = self.seen[src]
        if not self.greedy:
            self.uniforms[dst] = self.uniforms[src]
            self.step[dst] = self.step[src]

    def choose(self, logits: torch.Tensor, slots: list[int]) -> torch.Tensor:
        """Next token per row: ``logits[i]`` belongs to the row in ``slots[i]``.

        Consecutive ``slots`` (what a decode step passes) are read as a slice of the state, so
        the ops are a graph's static ones."""
        import torch

        first = slots[0] if len(slots) else 0
        rows = (slice(first, first + len(slots)) if list(slots) == list(range(first, first + len(slots)))
                else torch.tensor(slots, device=self.device))
        scores = logits.float()
        if self.seen is not None:
            seen = self.seen[rows]
            scores = torch.where(seen, torch.where(scores < 0, scores * self.penalty, scores / self.penalty), scores)
        if self.greedy:
            tokens = scores.argmax(dim=-1)
        else:
            tokens = self._draw(scores, rows)
        if self.seen is not None:
            self.seen[rows] = seen.scatter(1, tokens[:, None], True)
        return tokens

    def distribution(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """softmax(scores / T) cut by top-k and top-p, float64 [rows, vocab]; with top-p it is over
        the tokens sorted most likely first, and ``order`` maps those places to token ids."""
        settings = self.settings
        if settings.temperature != 1.0:
            scores = scores / settings.temperature
        order = None
        if settings.top_p < 1.0:  # the nucleus is a prefix of the scores sorted most likely first
            scores, order = scores.sort(dim=-1, descending=True, stable=True)
        if self.top_k > 0:  # as TopKLogitsWarper: below the k-th largest score goes (ties stay)
            kth = scores[:, self.top_k - 1:self.top_k] if order is not None else scores.topk(self.top_k).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = scores.softmax(dim=-1).double()
        if settings.top_p < 1.0:  # as TopPLogitsWarper: a token stays while the mass before it is below top_p
            # (the most likely token's mass before it is exactly 0, so it stays for any top_p > 0)
            kept = (probs.cumsum(dim=-1) - probs) < settings.top_p
            probs = probs * kept
            probs = probs / probs.sum(dim=-1, keepdim=True)
        return probs, order

    def _draw(self, scores: torch.Tensor, rows) -> torch.Tensor:
        """One token per row from :meth:`distribution`, at each row's next uniform number."""
        probs, order = self.distribution(scores)
        cumulative = probs.cumsum(dim=-1)
        # Inverse CDF: the first token whose cumulative mass exceeds u * total. u <= 1 - 2^-53, so
        # the target stays below the total and a token of zero probability is never reached.
        # A real row draws at most max_new_tokens times; a padded row of a graph's bucket keeps
        # counting, so its index is clamped into the table (its token is never read).
        uniform = self.uniforms[rows].gather(1, self.step[rows].clamp(max=self.uniforms.shape[1] - 1))
        target = uniform * cumulative[:, -1:]
        pick = (cumulative <= target).sum(dim=-1, keepdim=True).clamp(max=scores.shape[-1] - 1)
        self.step[rows] += 1
        return (order.gather(1, pick) if order is not None else pick)[:, 0]

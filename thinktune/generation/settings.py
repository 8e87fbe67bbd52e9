"""What decides an answer: the decoding settings, in one place that the engine's caller
(``thinktune.generation.chats``) and the token chooser (``thinktune.generation.sampling``) both
import, so neither imports the other."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thinktune.config.params import EvalParams


@dataclass(frozen=True)
class DecodingSettings:
    """What decides an answer. ``batch_size`` (rows decoded at once) is how, not what."""

    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0  # 1: off
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0  # 1: off
    n_samples: int = 1
    seed: int = 0
    batch_size: int = 8

    @classmethod
    def from_params(cls, params: EvalParams) -> DecodingSettings:
        return cls(max_new_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                   top_k=params.top_k, repetition_penalty=params.repetition_penalty, n_samples=params.n_samples,
                   seed=params.seed, batch_size=params.batch_size)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def describe(self) -> dict:
        """The decoding as results record it."""
        fields = asdict(self)
        del fields["batch_size"]
        return {"strategy": "greedy" if self.greedy else "sampling", **fields}

"""Which chats an optimizer step trains on, how they are shared and packed, and the tensors.

Step semantics (as with the TRL trainer before): each epoch is a fresh seeded shuffle of the
chats cut into steps of ``effective_batch`` chats, the last step of an epoch taking the
remainder; ``epochs`` may be fractional. The plan depends only on the seed, the number of
chats and the step number, so a resumed run trains on exactly the chats the killed one would
have.

Within a step, the chats are dealt to the processes by token count (longest first, to the
process with the fewest tokens so far), and each process packs its share into micro-batches
of at most ``micro_batch_tokens`` tokens (first-fit decreasing). A micro-batch is one
padding-free row: the chats concatenated, ``position_ids`` restarting at 0 for each chat (how
transformers recognises packed sequences and keeps each chat's attention to itself: a
block-diagonal causal mask for sdpa/eager/flex, per-sequence lengths for FlashAttention), and
next-token targets shifted inside each chat so that no chat predicts the next one's tokens.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from thinktune.training.data import IGNORE, TokenizedChat


def steps_per_epoch(n_chats: int, effective_batch: int) -> int:
    return math.ceil(n_chats / effective_batch)


def total_steps(n_chats: int, effective_batch: int, epochs: float, max_steps: int = -1) -> int:
    """Optimizer steps of the run: ``max_steps`` if positive, else ``epochs`` epochs (rounded up)."""
    if n_chats <= 0:
        raise ValueError("no training chats")
    if max_steps > 0:
        return max_steps
    return max(1, math.ceil(epochs * steps_per_epoch(n_chats, effective_batch)))


def epoch_order(n_chats: int, seed: int, epoch: int) -> list[int]:
    """The seeded shuffle of one epoch (Python's ``random`` with a string seed: stable across versions)."""
    order = list(range(n_chats))
    random.Random(f"thinktune-train-{seed}-{epoch}").shuffle(order)
    return order


def step_chat_ids(step: int, n_chats: int, effective_batch: int, seed: int) -> list[int]:
    """Indices of the chats optimizer step ``step`` (1-based) trains on."""
    if step < 1:
        raise ValueError(f"steps count from 1, got {step}")
    per_epoch = steps_per_epoch(n_chats, effective_batch)
    epoch, index = divmod(step - 1, per_epoch)
    order = epoch_order(n_chats, seed, epoch)
    return order[index * effective_batch:(index + 1) * effective_batch]


def epoch_of_step(step: int, n_chats: int, effective_batch: int) -> float:
    """Epochs completed after ``step`` (fractional, as the Trainer logged it)."""
    per_epoch = steps_per_epoch(n_chats, effective_batch)
    full, index = divmod(step, per_epoch)
    return full + index / per_epoch


def share_across_processes(lengths: Sequence[int], num_processes: int) -> list[list[int]]:
    """Positions of ``lengths`` for each process, balanced by tokens (greedy, longest first)."""
    shares: list[list[int]] = [[] for _ in range(num_processes)]
    loads = [0] * num_processes
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        rank = min(range(num_processes), key=lambda r: (loads[r], r))
        shares[rank].append(i)
        loads[rank] += lengths[i]
    return shares


def pack_by_tokens(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Positions of ``lengths`` in micro-batches of at most ``budget`` tokens (first-fit decreasing)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        if lengths[i] > budget:
            raise ValueError(f"a chat of {lengths[i]} tokens exceeds the micro-batch budget of {budget} tokens "
                             "(train.micro_batch_tokens)")
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(budget - lengths[i])
    return bins


@dataclass(frozen=True)
class StepPlan:
    """The micro-batches of one optimizer step on every process (equal counts: see ``padded``)."""

    micro_batches: list[list[list[TokenizedChat]]]  # [process][micro-batch][chat]
    n_targets: int                                   # loss-carrying tokens of the whole step
    n_tokens: int

    @property
    def rounds(self) -> int:
        """Micro-batches every process runs; a process with fewer real ones runs empty ones."""
        return max(len(mbs) for mbs in self.micro_batches)

    def for_process(self, rank: int) -> list[list[TokenizedChat]]:
        """This process's micro-batches, padded with empty ones to ``rounds`` (DDP needs every
        process to run the same number of backward passes)."""
        mine = self.micro_batches[rank]
        return mine + [[] for _ in range(self.rounds - len(mine))]


def plan_step(chats: Sequence[TokenizedChat], num_processes: int, micro_batch_tokens: int) -> StepPlan:
    """Share a step's chats across processes and pack each share by the token budget."""
    lengths = [c.n_tokens for c in chats]
    per_process = []
    for share in share_across_processes(lengths, num_processes):
        packed = pack_by_tokens([lengths[i] for i in share], micro_batch_tokens)
        per_process.append([[chats[share[j]] for j in mb] for mb in packed])
    return StepPlan(per_process, n_targets=sum(c.n_targets for c in chats), n_tokens=sum(lengths))


def shifted_targets(chat: TokenizedChat) -> list[int]:
    """Per position, the label of the next token of the same chat (``IGNORE`` at its last token)."""
    return list(chat.labels[1:]) + [IGNORE]


def flatten(chats: Sequence[TokenizedChat], pad_token_id: int = 0) -> dict:
    """One padding-free row: ``input_ids``, ``position_ids`` (restarting per chat) and ``targets``,
    each of shape (1, total tokens). An empty list gives one ignored token (an empty micro-batch)."""
    import torch

    if not chats:
        return {"input_ids": torch.tensor([[pad_token_id]]), "position_ids": torch.tensor([[0]]),
                "targets": torch.tensor([[IGNORE]])}
    input_ids, positions, targets = [], [], []
    for chat in chats:
        input_ids.extend(chat.input_ids)
        positions.extend(range(chat.n_tokens))
        targets.extend(shifted_targets(chat))
    return {"input_ids": torch.tensor([input_ids]), "position_ids": torch.tensor([positions]),
            "targets": torch.tensor([targets])}

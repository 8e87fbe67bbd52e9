"""Admission to the decode engine's slots: which waiting prompts enter, prefilled once, placed where.

The engine (``thinktune.generation.engine``) runs the model; this module keeps one run's
bookkeeping and decides what enters a freed slot and at which columns:

- a free slot is refilled from the waiting prompts (longest first). Prompts are prefilled
  in batches of up to the engine's ``prefill_budget`` distinct tokens (half in fp32), the next ones in line
  included, so most refills copy keys and values already computed instead of stalling the
  batch for a forward; each prompt is prefilled once and its keys and values are copied into
  the slot of every one of its samples, whenever that sample is admitted;
- a prompt's prefill is shared per (prompt, adapter) (``Request.prefill_key``): rows of a
  run's checkpoints share a step, but two checkpoints never share one prefill;
- a new row's prompt ends at the column where the furthest live row writes next if its
  answer fits after that, else at the width of its prefill batch, so a slot needs at most the
  longest prompt + ``max_new_tokens`` columns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from thinktune.generation.sampling import TokenChooser


@dataclass(frozen=True)
class Request:
    prompt_ids: list[int]
    key: int  # the prompt's index in the caller's list (also its sampling seed)
    sample: int = 0
    adapter: int = 0  # which of the model's stacked LoRA adapters this row applies (thinktune.models.lora)

    @property
    def prefill_key(self) -> tuple[int, int]:
        """Requests with equal keys share one prefill: the same prompt through the same adapter."""
        return self.key, self.adapter


@dataclass
class EngineStats:
    """One run's counters; kept with its bookkeeping because admission and decoding both add to them."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_steps: int = 0
    prefills: int = 0
    graphs_captured: int = 0
    shifts: int = 0
    prefill_tokens: int = 0  # prompt tokens run through the model (each distinct prompt once)
    cuda_graphs: bool = False
    graphs_off_reason: str | None = None  # why decoding ran without CUDA graphs (None: it used them)
    max_active: int = 0
    decode_tokens: int = field(default=0)  # tokens produced by decode steps (not by prefills)
    packed_linears: int = 0  # linear layers run on weights packed once for oneDNN (bf16 on CPU)
    decode_forward: str = ""  # "fused" (``thinktune.generation.fused_step``), or the model's own and why

    def as_dict(self) -> dict:
        wall = self.prefill_s + self.decode_s
        return {
            "prompt_tokens": self.prompt_tokens,
            "prefill_tokens": self.prefill_tokens,
            "prefills": self.prefills,
            "new_tokens": self.new_tokens,
            "prefill_s": round(self.prefill_s, 3),
            "decode_s": round(self.decode_s, 3),
            "decode_steps": self.decode_steps,
            "tokens_per_s": round(self.new_tokens / wall, 2) if wall else None,
            "decode_tokens_per_s": round(self.decode_tokens / self.decode_s, 2) if self.decode_s else None,
            "cuda_graphs": self.cuda_graphs,
            "graphs_off_reason": self.graphs_off_reason,
            "graphs_captured": self.graphs_captured,
            "shifts": self.shifts,
            "max_active": self.max_active,
            "packed_linears": self.packed_linears,
            "decode_forward": self.decode_forward,
        }


@dataclass
class Prefilled:
    """One prefill forward's output, kept until every sample of its prompts is in a slot."""

    logits: object  # [prompts, vocab], each prompt's last-token logits
    kv: list  # per layer (keys, values) [prompts, kv_heads, width, head_dim], prompts left-padded
    width: int  # the longest prompt of the batch


class Run:
    """One ``DecodeEngine.run``'s bookkeeping: the queue, the answers, which request is in which slot."""

    def __init__(self, requests: list[Request], chooser: TokenChooser, stop_ids: set[int], max_new_tokens: int,
                 progress, stats: EngineStats):
        self.requests, self.chooser, self.stop_ids = requests, chooser, stop_ids
        self.max_new_tokens, self.progress, self.stats = max_new_tokens, progress, stats
        self.waiting = sorted(range(len(requests)), key=lambda i: (-len(requests[i].prompt_ids), i))
        self.waiting.reverse()  # pop() takes the longest
        self.out: list[list[int]] = [[] for _ in requests]
        self.limit_hit = [False] * len(requests)
        self.slot_row: list[int] = []  # request index in each active slot
        self.end: list[int] = []  # each active slot's next column (where its next token's keys go)
        self.start: list[int] = []  # first valid column of each active slot
        self.column = 0  # the furthest of those: a step reads columns [0, column]
        self.prompt_of = {r.prefill_key: r.prompt_ids for r in requests}
        self.unplaced = Counter(r.prefill_key for r in requests)  # samples of each (prompt, adapter) not yet in a slot
        self.ready: dict[tuple[int, int], tuple[Prefilled, int]] = {}  # prefilled (prompt, adapter): (batch, row)

    def finish(self, i: int, token: int) -> bool:
        """Record ``token`` for request i; True when its answer is complete."""
        if token in self.stop_ids:
            return True
        self.out[i].append(token)
        self.stats.new_tokens += 1
        if len(self.out[i]) >= self.max_new_tokens:
            self.limit_hit[i] = True
            return True
        return False

    def next_group(self, free: int, budget: int) -> list[int]:
        """Up to ``free`` waiting requests, longest first, whose prompts not yet prefilled fit one
        prefill of ``budget`` tokens."""
        group: list[int] = []
        distinct: set[tuple[int, int]] = set()
        tokens = 0
        while self.waiting and len(group) < free:
            request = self.requests[self.waiting[-1]]
            new = request.prefill_key not in distinct and request.prefill_key not in self.ready  # samples share a prefill
            if group and new and tokens + len(request.prompt_ids) > budget:
                break
            group.append(self.waiting.pop())
            if new:
                distinct.add(request.prefill_key)
                tokens += len(request.prompt_ids)
        return group

    def unprefilled(self, group: list[int]) -> list[tuple[int, int]]:
        """The prefill keys of ``group`` with no prefill ready, each once, in order."""
        return list(dict.fromkeys(r.prefill_key for r in map(self.requests.__getitem__, group)
                                  if r.prefill_key not in self.ready))

    def prefill_ahead(self, keys: list[tuple[int, int]], budget: int) -> dict[tuple[int, int], list[int]]:
        """The prompts to prefill in one forward: those of ``keys`` and, within ``budget`` tokens,
        the next ones in line."""
        prompts = {key: self.prompt_of[key] for key in keys}
        tokens = sum(map(len, prompts.values()))
        for i in reversed(self.waiting):  # the next requests in line
            key = self.requests[i].prefill_key
            if key in prompts or key in self.ready:
                continue
            if tokens + len(self.prompt_of[key]) > budget:
                break
            prompts[key] = self.prompt_of[key]
            tokens += len(prompts[key])
        return prompts

    def hold(self, prompts: dict[tuple[int, int], list[int]], logits, kv: list) -> None:
        """Keep a prefill of ``prompts`` (in that order) in ``ready`` until its last sample is placed."""
        batch = Prefilled(logits, kv, width=max(map(len, prompts.values())))
        for row, key in enumerate(prompts):
            self.ready[key] = (batch, row)
        self.stats.prefills += 1
        self.stats.prefill_tokens += sum(map(len, prompts.values()))


class SlotBuffers(Protocol):
    """What placing a prompt writes: the engine's slot cache and per-slot step inputs (``DecodeEngine``)."""

    capacity: int  # columns per slot
    device: Any
    dtype: Any  # the cache's
    cache: Any  # SlotCache: ``layers`` of keys/values [slots, kv_heads, capacity, head_dim], ``column`` [slots]
    valid: Any  # [slots, capacity] bool: the columns each row attends to
    positions: Any  # [slots, 1]: each row's next position
    input_ids: Any  # [slots, 1]: each row's next input token


def place(buffers: SlotBuffers, run: Run, group: list[int]) -> tuple[list[int], object]:
    """Copy ``group``'s prefilled keys and values into the next free slots and choose each row's
    first token; returns the slots and those tokens."""
    import torch

    requests = run.requests
    slots = list(range(len(run.slot_row), len(run.slot_row) + len(group)))
    members: dict[int, tuple[Prefilled, list[tuple[int, int, int]]]] = {}  # per prefill batch
    for slot, i in zip(slots, group, strict=True):
        batch, row = run.ready[requests[i].prefill_key]
        members.setdefault(id(batch), (batch, []))[1].append((slot, row, len(requests[i].prompt_ids)))
    cols = torch.arange(buffers.capacity, device=buffers.device)
    ends, column = {}, run.column if run.slot_row else 0
    for batch, rows in members.values():
        # The prompts end where the furthest live row writes next when the answers fit after
        # that (the columns the rows before them have, so the attention sums run as they did
        # when all rows shared one column), else at the batch's own width.
        end = max(batch.width, column)
        end = ends[id(batch)] = end if end + run.max_new_tokens <= buffers.capacity else batch.width
        column = max(column, end)
        index = torch.tensor([slot for slot, _, _ in rows], device=buffers.device)
        source = torch.tensor([row for _, row, _ in rows], device=buffers.device)
        for layer, (k, v) in zip(buffers.cache.layers, batch.kv, strict=True):
            layer.keys[index, :, end - batch.width:end] = k[source].to(buffers.dtype)
            layer.values[index, :, end - batch.width:end] = v[source].to(buffers.dtype)
        lengths = torch.tensor([length for _, _, length in rows], device=buffers.device)
        buffers.valid[index] = (cols[None, :] >= end - lengths[:, None]) & (cols[None, :] < end)
        buffers.positions[index, 0] = lengths
        buffers.cache.column[index] = end
    firsts = [run.ready[requests[i].prefill_key] for i in group]
    logits = torch.stack([batch.logits[row] for batch, row in firsts])
    for slot, i in zip(slots, group, strict=True):
        run.chooser.start(slot, requests[i].prompt_ids, requests[i].key, requests[i].sample)
    tokens = run.chooser.choose(logits, slots)
    buffers.input_ids[slots[0]:slots[-1] + 1, 0] = tokens
    for i, (batch, _) in zip(group, firsts, strict=True):
        run.slot_row.append(i)
        run.end.append(ends[id(batch)])
        run.start.append(ends[id(batch)] - len(requests[i].prompt_ids))
        key = requests[i].prefill_key
        run.unplaced[key] -= 1
        if not run.unplaced[key]:
            del run.ready[key]  # every sample placed: the prefill's memory can go
    run.column = column
    return slots, tokens

"""Continuous-batching decode on any Hugging Face causal LM: finished answers stop costing.

``generate`` in transformers decodes a fixed batch until its longest answer ends: a batch
where one answer runs to the token limit pays every step for every row, and its cache is
re-concatenated at each step. Here the batch is a set of *slots* in one preallocated KV
cache:

- a row that ends frees its slot at once (the last active row moves into the hole, so the
  active rows are always slots ``0..n-1`` and a step computes only them);
- a free slot is refilled from the waiting prompts, prefilled ahead and shared by their
  samples (``thinktune.generation.admission`` says which prompts enter and where they go);
- each row writes its next token's keys and values at its own column. A boolean mask marks
  the valid columns and positions come from the row's own length, so rows that entered at
  different times share the step and attention reads only up to the furthest live row.

Attention is transformers' SDPA path: for a one-token query it folds the query heads of
each key/value head into the query length (``pack_gqa``), so grouped-query attention reads
the cache without repeating it. On CUDA each decode step of a given (batch bucket,
window bucket) shape is captured once as a CUDA graph and replayed (one launch instead of
hundreds of kernel launches per token); the cache, inputs and mask are static buffers
the graph reads. The graph holds the whole step: the forward and the token choice
(``thinktune.generation.sampling``: the penalty, then argmax or the batched inverse-CDF
draw) over every row of the bucket, its output the next tokens, which the loop reads with
one host sync. The padded rows choose too, harmlessly (the chooser resets a slot when a row
enters and clamps their step counters). ``buckets`` mode runs this same padded step eagerly,
so CPU tests check it; no GPU has run the capture of the token choice yet.

Graphs are kept while the model's weights stay in place, so swapping LoRA adapters in place
(``thinktune.models.host``) reuses them; a graph replays the LoRA state it was captured in
(adapters on or off, which stacked tensors, row masks or none) and the chooser it captured
(its settings, its buffers by address), so both are part of its key: the chooser's
``graph_key`` (greedy or sampling, penalty, temperature, top-k, top-p, table width), and a
run's chooser takes the buffers of the first chooser of equal key the engine saw, so the
next run with those settings replays the same graphs.

Each request names the adapter its row applies (``Request.adapter``,
``thinktune.models.lora``): rows of a run's checkpoints share a step.
``torch.compile`` is not used: through ``generate(cache_implementation="static")`` it
recompiled on an H200 and did not pay.

Greedy answers equal ``model.generate``'s (tests compare them on a tiny model), up to the
floating-point effects of batch shape that ``generate`` itself has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from thinktune.generation.admission import EngineStats, Request, Run, place
from thinktune.generation.fused_step import fusable, fused_step
from thinktune.generation.sampling import TokenChooser
from thinktune.generation.slot_cache import slot_cache_class
from thinktune.logs import get_logger
from thinktune.models.hardware import release_freed_heap
from thinktune.models.lora import lora_of
from thinktune.models.packed_linear import packed_linears

log = get_logger("engine")

# CUDA graphs are captured per bucket: the batch rounded up to a power of two (or the slot
# count), the attended columns rounded up to this many.
WINDOW_BUCKET = 512
# Distinct prompt tokens prefilled in one forward (at least one prompt) by a model computing in
# 16 bits: bounds the prefill's activations, which are what the evaluation's peak memory is made
# of; freed slots are still all filled before the next decode step, by as many prefills as it
# takes. A 32-bit model's activations take twice the bytes, so it gets half the tokens
# (``prefill_budget``): with a run's two checkpoints in one batch, 4,096 tokens took the fp32
# evaluation of the 0.5B to 4.56 GiB RSS (2,048: see docs/measurements.md).
PREFILL_TOKENS = 4096


def prefill_budget(dtype) -> int:
    """Distinct prompt tokens one prefill forward takes in ``dtype``: the same activation bytes."""
    return max(1, PREFILL_TOKENS * 2 // dtype.itemsize)


# A prefill forward pads its prompts to the longest. The 12 sample prompts (150-266 tokens) in
# one forward computed 37% more tokens than they hold; grouped so that padding stays under this
# share of a forward's tokens they compute 10% more, in two forwards, at the same cost per token
# (a CPU's or GPU's matrix products run as fast at a few hundred rows as at thousands).
MAX_PADDING = 0.125


def length_groups(lengths: list[int], max_padding: float | None = None) -> list[list[int]]:
    """Indices of ``lengths``, longest first, cut into groups whose left-padding is at most
    ``max_padding`` of each group's tokens. Groups are cut only between distinct lengths, so the
    rows of one prompt (its samples, or its adapters) always share a forward."""
    max_padding = MAX_PADDING if max_padding is None else max_padding
    by_length: dict[int, list[int]] = {}  # longest first, each length's rows together
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        by_length.setdefault(lengths[i], []).append(i)
    groups: list[list[int]] = []
    tokens = 0  # the last group's real tokens
    for length, rows in by_length.items():
        if groups:
            held = tokens + length * len(rows)
            if (len(groups[-1]) + len(rows)) * lengths[groups[-1][0]] - held <= max_padding * held:
                groups[-1].extend(rows)
                tokens = held
                continue
        groups.append(list(rows))
        tokens = length * len(rows)
    return groups


@dataclass
class Completion:
    token_ids: list[int]
    hit_token_limit: bool


MODES = ("auto", "eager", "buckets", "graphs")


class DecodeEngine:
    """Decodes :class:`Request` s through ``slots`` batch slots of ``capacity`` cache columns.

    ``mode``: ``eager`` runs each step at its exact shape (CPU); ``graphs`` replays a CUDA
    graph per padded (batch, window) bucket; ``buckets`` runs those padded shapes eagerly
    (what a graph replays, checkable on a CPU); ``auto``: graphs on CUDA, else eager.
    Reusable across calls and across in-place weight changes (graphs are recaptured when a
    weight tensor moves).
    """

    def __init__(self, model, slots: int, capacity: int, mode: str = "auto"):
        import torch

        config = model.config
        if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ["full_attention"]):
            raise ValueError(f"{config.model_type}: only full-attention models are supported by the decode engine")
        self.model = model
        self.device = model.device
        self.slots, self.capacity = slots, capacity
        self.dtype = next(model.parameters()).dtype
        self.cache = slot_cache_class()(config, slots, capacity, self.dtype, self.device)
        self.layer_types = sorted(set(getattr(config, "layer_types", None) or ["full_attention"]))
        self.input_ids = torch.zeros(slots, 1, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(slots, 1, dtype=torch.long, device=self.device)
        self.valid = torch.zeros(slots, capacity, dtype=torch.bool, device=self.device)
        if mode not in MODES:
            raise ValueError(f"decode mode {mode!r}: choose from {MODES}")
        on_cuda = self.device.type == "cuda"
        if mode == "graphs" and not on_cuda:
            raise ValueError(f"CUDA graphs need a CUDA device; the model is on {self.device}")
        self.use_graphs = mode == "graphs" or (mode == "auto" and on_cuda)
        self.graphs_off_reason = None if self.use_graphs else (
            f"decode mode {mode!r} (eval.cuda_graphs false)" if on_cuda else f"not a CUDA device ({self.device})")
        self.bucketed = self.use_graphs or mode == "buckets"
        # (batch bucket, window bucket, LoRA state, chooser settings) -> (graph, its output: tokens or logits)
        self.graphs: dict[tuple, tuple] = {}
        self._choosers: dict[tuple, TokenChooser] = {}  # per chooser settings: whose buffers the graphs read
        self._chooser_key: tuple = ()
        self._choice_in_step = True  # the chooser's choice runs inside the step (and its graph)
        self.graph_pool = None
        self.weights_at = self._weights_signature()
        self.lora = lora_of(model)
        self.fused = None  # the fused decode step (``thinktune.generation.fused_step``), chosen per run
        self.unfused_reason: str | None = None  # why a run's decode steps run the model's own forward
        self._run: Run | None = None  # the run in progress (its slots' requests name their adapters)

    # -- the model calls ----------------------------------------------------------------

    def _forward_step(self, rows: int, window: int):
        """One decode step for slots ``0..rows-1`` reading columns ``[0, window)``; logits [rows, vocab]."""
        self.cache.window = window
        mask = self.valid[:rows, None, None, :window]
        if self.fused is not None:
            return self.fused(self.input_ids[:rows], self.positions[:rows], mask, self.cache, self.lora)
        out = self.model(input_ids=self.input_ids[:rows], position_ids=self.positions[:rows],
                         attention_mask={t: mask for t in self.layer_types}, cache=self.cache, use_cache=True)
        return out.logits[:, -1, :]

    def _prefill(self, prompts: list[list[int]], adapters: list[int] | None = None):
        """Prefill ``prompts``, prompt i through LoRA adapter ``adapters[i]`` (default all 0), in
        forwards of prompts of similar length (``length_groups``); (last-token logits [n, vocab],
        per-layer keys/values [n, h, L, d] with each prompt left-padded to the longest, L)."""
        import torch

        adapters = adapters if adapters is not None else [0] * len(prompts)
        width = max(map(len, prompts))
        logits, kv = None, []
        for group in length_groups([len(p) for p in prompts]):
            part_logits, part_kv = self._prefill_padded([prompts[i] for i in group], [adapters[i] for i in group])
            if logits is None:  # allocated at the first group's shapes
                logits = part_logits.new_empty(len(prompts), part_logits.shape[-1])
                kv = [tuple(t.new_zeros(len(prompts), t.shape[1], width, t.shape[3]) for t in pair)
                      for pair in part_kv]
            index = torch.tensor(group, device=part_logits.device)
            logits[index] = part_logits
            for pair, part_pair in zip(kv, part_kv, strict=True):
                for whole, part in zip(pair, part_pair, strict=True):
                    whole[index, :, width - part.shape[2]:] = part
        return logits, kv

    def _prefill_padded(self, prompts: list[list[int]], adapters: list[int]):
        """One forward of left-padded ``prompts``: last-token logits and per-layer keys/values."""
        import torch
        from transformers import DynamicCache

        if self.lora is not None and self.lora.enabled:
            self.lora.select_rows(adapters)
        length = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), length, dtype=torch.long)
        mask = torch.zeros(len(prompts), length, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, length - len(p):] = torch.tensor(p)
            mask[i, length - len(p):] = 1
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :], [(layer.keys, layer.values) for layer in cache.layers]

    # -- CUDA graphs --------------------------------------------------------------------

    def _weights_signature(self) -> tuple:
        return tuple(p.data_ptr() for p in self.model.parameters())

    def _lora_state(self) -> tuple:
        """What the model's forward applies besides its weights: a graph captured in one LoRA
        state replays that state whatever Python flags say later, so this is part of its key."""
        return ("base",) if self.lora is None else self.lora.key()

    def _select_adapters(self, rows: int) -> None:
        """Point the LoRA row masks at the decode buffers, holding each active slot's adapter."""
        if self.lora is not None and self.lora.enabled and self._run is not None:
            run = self._run
            self.lora.select_decode_rows([run.requests[i].adapter for i in run.slot_row[:rows]], self.slots)

    def _step(self, rows: int, window: int, stats: EngineStats):
        """The next token of slots ``0..rows-1`` (reading columns ``[0, window)``). A chooser that a
        graph cannot capture (one without ``graph_key``, such as the GPU check's logit recorder)
        chooses after the step, for the live rows only."""
        out = self._padded_step(rows, window, stats)
        return out if self._choice_in_step else self._run.chooser.choose(out, list(range(rows)))

    def _padded_step(self, rows: int, window: int, stats: EngineStats):
        """:meth:`_step_body` of slots ``0..rows-1``; bucketed, of the whole padded bucket, as a graph
        replays it (its first ``rows`` rows returned)."""
        self._select_adapters(rows)
        if not self.bucketed:
            return self._step_body(rows, window)
        bucket = next((b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if b >= rows and b <= self.slots), self.slots)
        span = min(self.capacity, -(-window // WINDOW_BUCKET) * WINDOW_BUCKET)
        self.valid[rows:bucket] = False  # rows past the active ones compute garbage that no one reads...
        self.valid[rows:bucket, window - 1] = True  # ...but finite: each attends to its own new column
        if not self.use_graphs:
            return self._step_body(bucket, span)[:rows]
        key = (bucket, span, self._lora_state(), self._chooser_key, self.fused is not None)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(bucket, span)
                stats.graphs_captured += 1
            except Exception as exc:  # noqa: BLE001 - any capture failure: decode eagerly instead
                log.warning("CUDA graph capture failed (%s: %s); decoding without graphs, recorded in summary.json",
                            type(exc).__name__, exc)
                self.use_graphs = self.bucketed = False
                self.graphs_off_reason = f"capture failed: {type(exc).__name__}: {exc}"[:300]
                return self._step_body(rows, window)
        graph, out = self.graphs[key]
        graph.replay()
        return out[:rows]

    def _step_body(self, rows: int, window: int):
        """What a graph captures: the forward of slots ``0..rows-1`` and the run's token choice for
        each (its tokens), or the logits when the chooser chooses after the step."""
        logits = self._forward_step(rows, window)
        return self._run.chooser.choose(logits, list(range(rows))) if self._choice_in_step else logits

    def _capture(self, rows: int, window: int):
        import torch

        with torch.cuda.device(self.device):
            if self.graph_pool is None:
                self.graph_pool = torch.cuda.graph_pool_handle()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._warm_up(rows, window)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.graph_pool):
                out = self._step_body(rows, window)
        return graph, out  # the graph's output buffer (tokens, or logits), refreshed by each replay

    def _warm_up(self, rows: int, window: int) -> None:
        """Run the step twice before its capture (allocator and kernels warm, outside the graph),
        then put the chooser's state back: the warm-ups' draws are not the rows' tokens. The
        forward's writes are the step's own (each row's keys and values at its column)."""
        chooser = self._run.chooser
        before = chooser.state() if self._choice_in_step else None
        for _ in range(2):
            self._step_body(rows, window)
        if before is not None:
            chooser.load_state(before)

    def _take_chooser(self, chooser: TokenChooser) -> None:
        """A graph reads the chooser's buffers by address and replays the settings it was captured
        with, so the settings are part of each graph's key, and a run's chooser takes the buffers
        of the first one of equal settings this engine saw: that one's graphs replay for it."""
        self._choice_in_step = hasattr(chooser, "graph_key")
        if not self._choice_in_step:
            self._chooser_key = ("chosen after the step",)  # the graph's output is the logits
            return
        self._chooser_key = chooser.graph_key()
        if self.use_graphs:
            held = self._choosers.setdefault(self._chooser_key, chooser)
            if held is not chooser:
                chooser.share_buffers(held)

    # -- the loop -----------------------------------------------------------------------

    def run(self, requests: list[Request], chooser: TokenChooser, stop_ids: set[int], max_new_tokens: int,
            progress=None) -> tuple[list[Completion], EngineStats]:
        """Completions in the order of ``requests``; admitted longest prompt first."""
        import torch

        if max(len(r.prompt_ids) for r in requests) + max_new_tokens > self.capacity:
            raise ValueError("engine capacity below longest prompt + max_new_tokens")
        self.lora = lora_of(self.model)  # the host may have applied other adapters since the last run
        self._choose_forward()
        if self.use_graphs and self._weights_signature() != self.weights_at:
            self.graphs.clear()  # the weights moved: recapture against the new tensors
            self.weights_at = self._weights_signature()
        if self.lora is not None and self.lora.enabled and max(r.adapter for r in requests) >= self.lora.n:
            raise ValueError(f"a request names adapter {max(r.adapter for r in requests)} but the model "
                             f"carries {self.lora.n} LoRA adapter(s)")
        self._take_chooser(chooser)
        run = Run(requests, chooser, stop_ids, max_new_tokens, progress, EngineStats(cuda_graphs=self.use_graphs))
        run.stats.decode_forward = "fused" if self.fused is not None else f"the model's own: {self.unfused_reason}"
        self._run = run
        with torch.inference_mode(), packed_linears(self.linear_layers(), self.slots) as packed:
            run.stats.packed_linears = packed
            while run.waiting or run.slot_row:
                while run.waiting and len(run.slot_row) < self.slots:
                    self._admit(run)
                if run.slot_row:
                    self._decode_step(run)
        run.stats.cuda_graphs = self.use_graphs  # false if a capture failed on the way
        run.stats.graphs_off_reason = self.graphs_off_reason
        return [Completion(run.out[i], run.limit_hit[i]) for i in range(len(requests))], run.stats

    def _choose_forward(self) -> None:
        """The fused decode step where it computes what the model's forward does, else the model's
        forward (said once per engine: the reason is also in each run's stats)."""
        reason = fusable(self.model, self.lora)
        if reason is not None and reason != self.unfused_reason:
            log.info("decode steps run the model's own forward: %s", reason)
        self.fused = fused_step(self.model) if reason is None else None  # the first: stacks q|k|v, gate|up
        self.unfused_reason = reason

    def linear_layers(self) -> list:
        """The model's linear layers in its dtype that the run calls, to run on oneDNN, with a fused
        step's stacks. Layers in another dtype, such as the fp32 adapters of PEFT's layers in a
        bf16 model, keep ``F.linear``, so PEFT's forward keeps its own bits. In bf16 the stacks
        replace their members (whose products only prefills need), so each weight is packed once,
        not twice."""
        import torch

        layers = [m for m in self.model.modules() if isinstance(m, torch.nn.Linear) and m.weight.dtype == self.dtype]
        if self.fused is None:
            return layers
        if self.dtype == torch.bfloat16:
            stacked = self.fused.unstacked_members()
            layers = [m for m in layers if m not in stacked]
        return layers + self.fused.stacked_linears()

    def _decode_step(self, run: Run) -> None:
        """One token for every active slot; the finished ones leave, unused left columns go."""
        rows = len(run.slot_row)
        run.stats.max_active = max(run.stats.max_active, rows)
        began = time.perf_counter()
        self.valid[:rows].scatter_(1, self.cache.column[:rows, None], True)  # each row's new column
        tokens = self._step(rows, run.column + 1, run.stats)
        self.input_ids[:rows, 0] = tokens
        self.positions[:rows] += 1
        self.cache.column[:rows] += 1
        token_list = tokens.tolist()  # one host sync per step
        run.column += 1
        run.end = [end + 1 for end in run.end]
        run.stats.decode_s += time.perf_counter() - began
        run.stats.decode_steps += 1
        run.stats.decode_tokens += rows
        self._release(run, [s for s in range(rows) if run.finish(run.slot_row[s], token_list[s])])
        if run.slot_row and (waste := min(run.start)) >= max(WINDOW_BUCKET // 4, run.column // 4):
            self._shift_left(run, waste)  # the rows that held the leftmost columns have ended

    def _admit(self, run: Run) -> None:
        """Fill free slots from ``run.waiting``: prefill what is not prefilled yet, copy into the slots."""
        import torch

        group = run.next_group(self.slots - len(run.slot_row), prefill_budget(self.dtype))
        if not group:
            return
        began = time.perf_counter()
        missing = run.unprefilled(group)
        if missing:
            self._prefill_ahead(run, missing)
        slots, tokens = place(self, run, group)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        run.stats.prefill_s += time.perf_counter() - began
        run.stats.prompt_tokens += sum(len(run.requests[i].prompt_ids) for i in group)
        self._release(run, [s for s, t in zip(slots, tokens.tolist(), strict=True) if run.finish(run.slot_row[s], t)])

    def _prefill_ahead(self, run: Run, keys: list[tuple[int, int]]) -> None:
        """Prefill the prompts of ``keys`` and, within ``prefill_budget``, the next ones in line;
        each stays in ``run.ready`` until its last sample is placed."""
        prompts = run.prefill_ahead(keys, prefill_budget(self.dtype))
        if self.device.type == "cpu":  # the heap the last prefill and decode steps freed, back before this
            release_freed_heap()       # prefill's activations (fp32 evaluation of the 0.5B: 4.01 -> 3.74 GiB)
        logits, kv = self._prefill(list(prompts.values()), [adapter for _, adapter in prompts])
        run.hold(prompts, logits, kv)

    def _release(self, run: Run, done: list[int]) -> None:
        """Free the slots in ``done``: the last active slot moves into each hole."""
        for slot in sorted(done, reverse=True):
            last = len(run.slot_row) - 1
            if slot != last:
                end = run.end[last]
                for layer in self.cache.layers:
                    layer.kv[slot, :, :end] = layer.kv[last, :, :end]
                self.valid[slot] = self.valid[last]
                self.input_ids[slot] = self.input_ids[last]
                self.positions[slot] = self.positions[last]
                self.cache.column[slot] = self.cache.column[last]
                run.chooser.move(last, slot)
                run.slot_row[slot], run.end[slot], run.start[slot] = run.slot_row[last], run.end[last], run.start[last]
            self.valid[last] = False
            run.slot_row.pop()
            run.end.pop()
            run.start.pop()
            if run.progress is not None:
                run.progress.update(1)
        run.column = max(run.end, default=0)  # the furthest live row's next column


    def _shift_left(self, run: Run, by: int) -> None:
        """Drop ``by`` leading columns that no active row uses."""
        column, rows = run.column, len(run.slot_row)
        for layer in self.cache.layers:
            layer.kv[:rows, :, :column - by] = layer.kv[:rows, :, by:column].clone()
        self.valid[:rows, :column - by] = self.valid[:rows, by:column].clone()
        self.valid[:rows, column - by:column] = False
        self.cache.column[:rows] -= by
        run.column = column - by
        run.end = [end - by for end in run.end]
        run.start = [start - by for start in run.start]
        run.stats.shifts += 1

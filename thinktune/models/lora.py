"""LoRA adapters applied unmerged, stacked by shared input, several adapters in one batch.

Why unmerged: a bf16 merge drops most of an early checkpoint's delta (``thinktune.models.host``).
Why not PEFT's layers at decode: each of PEFT's LoRA layers runs about six ops (cast the input
to fp32, ``A``, ``B``, scale, a mixed-dtype add, cast back), seven layers per decoder layer;
at one token per row those small ops cost as much as the base model's own. Here:

- **Stacked by shared input.** q, k and v read the same hidden state, as do gate and up. Their
  ``A`` matrices are concatenated, so one cast and one matrix product give every member's
  rank-r projection; one block-diagonal ``B`` then gives every member's delta, split into
  the members' parts (views), and each member adds its part to its base output in place (the
  engine's fused decode step adds the whole group's to its stacked product in one op, where
  every member is adapted and the step has more than one row). o and
  down are groups of one. Per decoder layer the top-level ops fall from 42 to 21
  (``perf.decode_ops`` counts them). A CPU prefill (many rows) adds each member's part by row
  blocks instead (``CHUNK_BYTES`` says why).
- **In PEFT's layout.** ``A`` and ``B`` are stored as PEFT's ``lora_A``/``lora_B`` weights are
  ([out, in]) and applied with ``F.linear``, as PEFT applies them: CPU BLAS picks its kernel by
  the operands' layout and, at one to three rows, ``x @ A`` on the transposed layout summed in
  another order (fp32 deltas off by a last bit, which a bf16 rounding turns into a different
  logit now and then, and a 24-layer model into different answers). At a single row the
  block-diagonal ``B``'s zero columns change the sum's order too, so one row takes one product
  per member. ``tests/test_fused_step.py`` checks every layer's fp32 delta against PEFT's, bit
  for bit, at 1-12 rows and the 0.5B's widths.
- **In fp32, rounded once, as PEFT does.** ``A`` and ``B`` stay fp32 (PEFT's
  ``autocast_adapter_dtype``, the precision they were trained in), with the scale folded into
  ``B`` (exact for the study's power-of-two ``alpha / r``); the bf16 input is cast to fp32
  once per group, and ``out.add_(delta)`` adds in fp32 and rounds once to the output's dtype,
  which is PEFT's ``(result + delta).to(result.dtype)`` in one op. So the logits equal PEFT's
  unmerged ones exactly in bf16 and within 1e-5 in fp32 (where oneDNN's linear layers sum the
  base products in another order: ``thinktune.models.packed_linear``), both tested. ``A`` and ``B`` in bf16 with fp32 accumulation (one ``addmm``
  per member) was tried first: it rounds ``x @ A`` and ``B`` to bf16 and, on the tiny model with
  an adapter trained at the study's learning rate, changed 37% of the engine's logits (by one
  bf16 step), nearly as many as a bf16 merge (58%): a test could no longer tell the two apart,
  while the fp32 path costs only two casts per decoder layer where PEFT has seven.
- **Several adapters per batch** (a run's checkpoints decode together, as vLLM serves several
  adapters at once). Every adapter's ``A`` sits side by side in the stack (member-major, then
  adapter), every adapter's ``B`` stacked below each other. Each batch row has a 0/1 mask
  over the stacked columns: ones on its own adapter's ``r`` columns. ``(x @ A) * mask`` then
  keeps only the row's own adapter, and ``@ B`` applies that adapter's ``B`` alone (the
  other terms are exact zeros). The base weights are read once per step for all rows; the
  adapters' weights, a few percent of the base, once per step each. A row may also use no
  adapter at all (the base model): an all-zero mask row. With one adapter there is no mask.

The layers are wrapped by forward hooks on the base ``nn.Linear`` modules, so parameter names,
the module tree and the base weights' values stay as loaded. The engine's fused decode step
(``thinktune.generation.fused_step``) computes q|k|v and gate|up as one product each and adds a
group's delta (:meth:`_Group.add_stacked`, the same sum) in one op instead. Which adapter each row uses is
set by :meth:`StackedLoRA.select_rows` (the decode engine does it before each forward);
:meth:`StackedLoRA.key` is what a captured CUDA graph depends on (on or off, which mask
buffers, which stacked tensors), so the engine keys its graphs with it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# Layers that read the same input tensor in Qwen2/Llama-style decoder layers: stacked together.
SHARED_INPUT = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
_PREFIX = "base_model.model."
_UNSUPPORTED = {"use_dora": "DoRA adapters", "lora_bias": "LoRA bias terms", "fan_in_fan_out": "fan_in_fan_out layers"}


def read_adapter(adapter_dir: Path) -> tuple[dict, dict]:
    """(config, {module path: (A [r, in], B [out, r], scale)}) of a saved PEFT LoRA adapter."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{adapter_dir}: a {config['peft_type']} adapter; the evaluation applies LoRA adapters")
    if config.get("modules_to_save"):
        raise ValueError(f"{adapter_dir}: adapters with modules_to_save replace whole modules; "
                         "the evaluation applies LoRA layers only")
    for key, what in _UNSUPPORTED.items():
        if config.get(key):
            raise ValueError(f"{adapter_dir}: adapter_config.json {key} is set; {what} are not supported here")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(f"{adapter_dir}: adapter_config.json rank_pattern/alpha_pattern are set; "
                         "per-layer ranks are not supported here (train with one r and alpha)")
    if config.get("bias", "none") != "none":
        raise ValueError(f"{adapter_dir}: adapter_config.json bias is {config['bias']!r}; only 'none' is supported")
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    layers = {}
    for key, a in weights.items():
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0].removeprefix(_PREFIX)
        layers[module] = (a, weights[key.replace(".lora_A.", ".lora_B.")], scale)
    if not layers:
        raise ValueError(f"{adapter_dir}: no lora_A weights in adapter_model.safetensors")
    return config, layers


# A CPU prefill adds a long fp32 delta to its bf16 output. In one mixed-dtype op over the whole
# forward (with the rank-32 product) that took 185 ms per gate|up layer of 4,096 tokens, near
# the ~200 ms of the base product itself (2-core AMD EPYC with AVX512-BF16): the fp32 delta went
# to memory and back and the mixed-dtype add is not vectorized. Cut into row blocks whose fp32
# delta stays in cache (this many bytes) and added as cast, add and round (each vectorized),
# the same sum takes 53 ms, bit for bit the same (``perf.prefill_speed``). GPUs and decode
# steps (a few rows) keep the single op.
CHUNK_BYTES = 1 << 21


def add_in_row_blocks(out, h, B) -> None:
    """``out += F.linear(h, B)`` in place, ``CHUNK_BYTES`` of fp32 delta at a time: each block's
    product in fp32, then cast, add and round once to ``out``'s dtype (what the mixed-dtype add
    computes). ``out``: a linear layer's output (a fresh contiguous tensor), ``h``: its rows
    flattened, ``B``: [out features, columns] as a linear layer stores its weight."""
    import torch.nn.functional as F

    flat = out.view(-1, out.shape[-1])
    step = max(1, CHUNK_BYTES // (4 * out.shape[-1]))
    for start in range(0, flat.shape[0], step):
        block = flat[start:start + step]
        delta = F.linear(h[start:start + step], B)
        if block.dtype == delta.dtype:
            block.add_(delta)
        else:
            block.copy_(block.to(delta.dtype).add_(delta))


class _Group:
    """Target layers reading one input, stored as linear layers store weights (PEFT's
    ``lora_A``/``lora_B`` layout): ``A`` [k*n*R, in] stacked, ``B`` [sum of outs, k*n*R]
    block-diagonal by member (fp32, the scale folded in); ``B_parts[m]``: member m's block."""

    def __init__(self, owner: StackedLoRA, members: list[str], widths: list[int]):
        self.owner, self.members = owner, members
        self.widths = widths
        self.offsets = [sum(widths[:i]) for i in range(len(widths) + 1)]
        self.A = self.B = None
        self.B_parts: list = []
        self._x = self._h = self._parts = None
        self._pending = 0

    def add_delta(self, out, x, member: int):
        """``out += scale * B(A(x))`` for member ``member``, each row with its own adapter, in fp32
        and rounded once to ``out``'s dtype. Every member's projection is computed at the first
        one's call (q, k and v receive the same tensor): one cast and one matrix product per
        group; a decode step adds every member's delta from one more product (views of it)."""
        if self._x is not x:
            h = self.project(x)
            rows = x.numel() // x.shape[-1]
            if x.device.type == "cpu" and rows * max(self.widths) * 4 > CHUNK_BYTES:
                self._h, self._parts = h.reshape(rows, h.shape[-1]), None
            else:
                self._parts, self._h = self.member_deltas(h, self.stacked_delta(h)), None
            self._x, self._pending = x, len(self.members)
        if self._parts is not None:
            out.add_(self._parts[member])  # PEFT's ``(result + delta).to(result.dtype)`` in one op
        else:
            self._add_in_blocks(out, member)
        self._pending -= 1
        if self._pending == 0:
            self._x = self._h = self._parts = None  # the last member used it: keep no activations alive
        return out

    def project(self, x):
        """``F.linear(x, A)`` in fp32, each row's other adapters' columns zeroed: every member's
        rank-r projection."""
        import torch.nn.functional as F

        x32 = x if x.dtype == self.A.dtype else x.to(self.A.dtype)
        h = F.linear(x32, self.A)
        if self.owner.masked:
            mask = self.owner.masks[len(self.members)]  # [slots, 1, columns]
            h = h * (mask if mask.shape[0] == x.shape[0] else mask[:x.shape[0]])
        return h

    def stacked_delta(self, h):
        """Every member's delta side by side, fp32, from the projection ``h``: one product with the
        block-diagonal ``B``; ``None`` for a single row of several members, which takes one
        product per member (:meth:`member_deltas`). CPU BLAS sums a single row's product (a
        matrix-vector kernel) in another order when the block-diagonal ``B`` brings the other
        members' zero columns, so that row's delta would differ from PEFT's in the last fp32 bit;
        at two rows or more the stacked product gives PEFT's bits (``tests/test_fused_step.py``
        checks both at the 0.5B's widths)."""
        import torch.nn.functional as F

        return F.linear(h, self.B) if h.numel() // h.shape[-1] > 1 or len(self.members) == 1 else None

    def member_deltas(self, h, whole) -> list:
        """Each member's delta: views of ``whole`` (:meth:`stacked_delta`), or, where it is
        ``None``, one product per member."""
        import torch.nn.functional as F

        if whole is not None:
            return list(whole.split(self.widths, dim=-1)) if len(self.members) > 1 else [whole]
        width = self.owner.n * self.owner.rank
        return [F.linear(h[..., m * width:(m + 1) * width], part) for m, part in enumerate(self.B_parts)]

    def add_stacked(self, out, x, starts: list[int]) -> None:
        """Add every member's delta to ``out``, the members' outputs side by side in one tensor
        (a fused step's stacked product), member m's from column ``starts[m]``: one add when the
        members fill ``out`` in order, as they do when every stacked layer is adapted (the
        members' views are then never made: each is a dispatched op a decode step would pay)."""
        h = self.project(x)
        whole = self.stacked_delta(h)
        if whole is not None and starts == self.offsets[:-1] and self.offsets[-1] == out.shape[-1]:
            out.add_(whole)
            return
        for start, width, part in zip(starts, self.widths, self.member_deltas(h, whole), strict=True):
            out[..., start:start + width].add_(part)

    def _add_in_blocks(self, out, member: int) -> None:
        """The same sum, multiplying only this member's block of ``B``."""
        width = self.owner.n * self.owner.rank
        add_in_row_blocks(out, self._h[:, member * width:(member + 1) * width], self.B_parts[member])

    def hook(self, member: int):
        def add_delta(module, args, out):
            if not self.owner.enabled:
                return None
            return self.add_delta(out, args[0], member)

        return add_delta


class StackedLoRA:
    """Adapters ``entries`` (``None``: the base alone) on ``model``'s layers; rows pick one by index."""

    def __init__(self, model, entries: list[Path | None]):
        import torch

        self.model = model
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.enabled = True
        self.generation = 0  # bumped whenever the stacked tensors are reallocated
        self.shape: tuple = ()
        self.groups: dict[tuple[str, tuple[str, ...]], _Group] = {}
        self.handles: list = []
        self.masks: dict[int, torch.Tensor] = {}
        self._decode_masks: dict[int, torch.Tensor] = {}
        self._decode_rows: list[int] | None = None
        self.load(entries)

    # -- weights ------------------------------------------------------------------------

    def load(self, entries: list[Path | None]) -> None:
        """Put ``entries``' weights in place: into the current tensors when the shape is unchanged
        (captured CUDA graphs stay valid), else into new ones (``key()`` changes)."""
        import torch

        if not entries or all(e is None for e in entries):
            raise ValueError("StackedLoRA needs at least one adapter; use the base model without it")
        read = [None if e is None else read_adapter(e)[1] for e in entries]
        modules = sorted({m for layers in read if layers for m in layers})
        rank = max(a.shape[0] for layers in read if layers for a, _, _ in layers.values())
        shape = (len(entries), rank, tuple(modules))
        self.n, self.rank, self.masked = len(entries), rank, len(entries) > 1
        named = dict(self.model.named_modules())
        missing = [m for m in modules if not isinstance(named.get(m), torch.nn.Linear)]
        if missing:
            raise ValueError(f"adapter layers {missing[:3]} are not linear layers of the loaded base model")
        if shape != self.shape:
            self._build(modules, named)
            self.shape = shape
            self.generation += 1
            self.masks = self._decode_masks = {}
        with torch.no_grad():
            for group in self.groups.values():
                self._fill(group, read, named)
        self._decode_rows = None  # rewritten at the next decode step, in the same buffers

    def _build(self, modules: list[str], named: dict) -> None:
        self.remove()
        by_parent: dict[str, list[str]] = {}
        for m in modules:
            by_parent.setdefault(m.rpartition(".")[0], []).append(m.rpartition(".")[2])
        for parent, children in by_parent.items():
            grouped = [[c for c in shared if c in children] for shared in SHARED_INPUT]
            grouped = [g for g in grouped if g] + [[c] for c in children if not any(c in s for s in SHARED_INPUT)]
            for members in grouped:
                paths = [f"{parent}.{c}" for c in members]
                group = _Group(self, paths, [named[p].out_features for p in paths])
                self.groups[(parent, tuple(members))] = group
                for i, path in enumerate(group.members):
                    self.handles.append(named[path].register_forward_hook(group.hook(i)))

    def _fill(self, group: _Group, read: list, named: dict) -> None:
        """Stack the entries' ``A`` (rows: member, adapter, rank) and ``B`` (columns likewise; each
        member's block feeds its own output rows only; the scale folded in)."""
        import torch

        n, rank = self.n, self.rank
        in_features = named[group.members[0]].in_features
        A = torch.zeros(len(group.members) * n * rank, in_features, dtype=torch.float32)
        B = torch.zeros(group.offsets[-1], len(group.members) * n * rank, dtype=torch.float32)
        for m, path in enumerate(group.members):
            for a, layers in enumerate(read):
                if not layers or path not in layers:
                    continue  # the base row, or an adapter without this layer: zeros
                lora_a, lora_b, scale = layers[path]
                r, start = lora_a.shape[0], (m * n + a) * rank
                A[start:start + r] = lora_a.float()
                B[group.offsets[m]:group.offsets[m + 1], start:start + r] = lora_b.float() * scale
        width = n * rank
        parts = [B[group.offsets[m]:group.offsets[m + 1], m * width:(m + 1) * width]
                 for m in range(len(group.members))]
        if group.A is None or group.A.shape != A.shape or group.B.shape != B.shape:
            group.A, group.B = A.to(self.device), B.to(self.device)
            group.B_parts = [part.contiguous().to(self.device) for part in parts]
        else:
            group.A.copy_(A)
            group.B.copy_(B)
            for kept, part in zip(group.B_parts, parts, strict=True):
                kept.copy_(part)

    def remove(self) -> None:
        """The hooks off: the model is the base again."""
        for handle in self.handles:
            handle.remove()
        self.handles, self.groups = [], {}
        self.shape = ()

    # -- which adapter each row uses -------------------------------------------------------

    def key(self):
        """What a captured forward depends on: off, or these stacked tensors with or without masks."""
        return ("lora", self.generation, self.masked, self.n, self.rank) if self.enabled else ("base",)

    def _masks_for(self, adapters, rows: int) -> dict:
        import torch

        index = torch.as_tensor(adapters, dtype=torch.long)
        onehot = torch.zeros(rows, self.n, dtype=torch.float32)
        if len(adapters):
            onehot[:len(adapters)] = torch.nn.functional.one_hot(index, self.n).float()
        per_adapter = onehot.repeat_interleave(self.rank, dim=1)
        sizes = {len(g.members) for g in self.groups.values()}
        return {k: per_adapter.repeat(1, k).unsqueeze(1).to(self.device) for k in sizes}  # [rows, 1, columns]

    def select_rows(self, adapters: list[int]) -> None:
        """Rows ``0..len-1`` of the next forward (a prefill) use these entries."""
        self._check(adapters)
        if self.masked:
            self.masks = self._masks_for(adapters, len(adapters))

    def select_decode_rows(self, adapters: list[int], slots: int) -> None:
        """The decode step's rows: written into fixed buffers of ``slots`` rows (what a CUDA
        graph reads), rewritten only when the rows' adapters changed."""
        if not self.masked:
            return
        if not self._decode_masks or next(iter(self._decode_masks.values())).shape[0] != slots:
            self._decode_masks = self._masks_for([], slots)  # new buffers: graphs captured on the old ones are stale
            self._decode_rows = None
            self.generation += 1
        if adapters != self._decode_rows:
            self._check(adapters)
            for k, fresh in self._masks_for(adapters, slots).items():
                self._decode_masks[k].copy_(fresh)
            self._decode_rows = list(adapters)
        self.masks = self._decode_masks

    def _check(self, adapters: list[int]) -> None:
        if any(not 0 <= a < self.n for a in adapters):
            raise ValueError(f"request adapter index out of range 0..{self.n - 1}: {sorted(set(adapters))}")


def attach(model, lora: StackedLoRA | None) -> None:
    """Record on ``model`` the adapters its hooks apply (``None``: none), for the decode engine."""
    model._thinktune_lora = lora


def lora_of(model) -> StackedLoRA | None:
    return getattr(model, "_thinktune_lora", None)

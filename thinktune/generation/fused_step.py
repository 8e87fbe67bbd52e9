"""One decode step of a Qwen2 model in half the ops of transformers' modules,
with the same arithmetic.

At one new token per row every op of a decode step is small, and transformers' modules run
about 65 per decoder layer (views, rotary halves and concatenations, a cache write each for
keys and values, three q/k/v products, two gate/up products), the stacked LoRA layers 21 more.
On a GPU each is a kernel launch; on a CPU each costs its dispatch. This step runs the same
layers in fewer ops, each change exact:

- **q|k|v and gate|up as one product each.** Their weights are copied once into one stacked
  tensor per group, and the modules' own weights become views of it (same values, no second
  copy). Each output column is the same dot product over the same inputs, so the stacked
  product gives the three (two) outputs side by side, bit for bit on this project's CPUs
  (oneDNN and MKL; tested). The stacked LoRA delta of the group then lands in one add
  (``thinktune.models.lora``: the group's ``B`` is laid out in the same column order).
- **RMSNorm's fp32 part in one op.** ``F.rms_norm`` on the fp32 upcast computes what
  ``Qwen2RMSNorm`` does (``x * rsqrt(mean(x²) + eps)`` in fp32), then the same
  rounding to the model's dtype and product with the weight. (``F.rms_norm`` with the weight
  applies it before rounding: not the same bits, so the weight stays outside.)
- **Rotary on q and k at once, with a roll.** ``rotate_half(x) * sin`` equals ``roll(x, d/2) *
  sin'`` where ``sin'`` is ``sin`` with its first half negated (a sign flip is exact), so q and k,
  adjacent in the stacked output, rotate in four ops, written back into it.
- **Keys and values in one write.** The slot cache keeps a layer's keys and values in one
  tensor (``thinktune.generation.slot_cache``), and the rotated keys sit next to the values in
  the stacked output, so one scatter writes both.
- **Attention as transformers' SDPA path runs it for one query token:** each key/value head's
  query heads folded into the query length, the engine's boolean mask, the model's scale.

The step reads the model's own modules (embedding, rotary embedding, norms' weights and
epsilons, linear layers), so adapters swapped in place and packed linear layers
(``thinktune.models.packed_linear``) apply to it as to the model. It is used only where it
computes what the model's forward computes: :func:`fusable` names what stands in the way
(another architecture, biases where a stacked layer has none, hooks other than the stacked
LoRA's, PEFT's layers in place); then the engine runs the model's forward and says why.
Prefill keeps the model's forward (its ops are large).
"""

from __future__ import annotations

from thinktune.generation.slot_cache import head_dim
from thinktune.models.hardware import release_freed_heap
from thinktune.models.lora import StackedLoRA

# The module classes whose forward this step re-computes, by model type: a subclass or another
# class of the same shape (a Gemma-style ``(1 + w)`` norm, say) computes something else. Qwen2
# only, the family the study uses and the tests check the step on.
CLASSES = {"qwen2": ("Qwen2DecoderLayer", "Qwen2Attention", "Qwen2MLP", "Qwen2RMSNorm")}
STACKS = (("self_attn", ("q_proj", "k_proj", "v_proj")), ("mlp", ("gate_proj", "up_proj")))
SINGLES = (("self_attn", "o_proj"), ("mlp", "down_proj"))


def _plain_linear(module, lora: StackedLoRA | None) -> bool:
    """A plain ``nn.Linear`` whose only hooks are the stacked LoRA's (which this step applies itself)."""
    import torch

    ours = {h.id for h in lora.handles} if lora is not None else set()
    return (type(module) is torch.nn.Linear and not module._forward_pre_hooks
            and set(module._forward_hooks) <= ours)


def _hooked(module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def fusable(model, lora: StackedLoRA | None = None) -> str | None:
    """Why :class:`FusedStep` cannot run ``model`` (``None``: it can)."""
    import os

    import torch

    config = model.config
    inner = getattr(model, "model", None)
    if not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return f"{type(model).__name__} is not a causal LM of decoder layers (a wrapper, such as PEFT's?)"
    if config.model_type not in CLASSES:
        return f"model type {config.model_type!r} (the fused step knows {', '.join(CLASSES)})"
    if model.training:
        return "the model is in training mode (attention dropout)"
    if config._attn_implementation != "sdpa" or os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA") == "1":
        return f"attention implementation {config._attn_implementation!r} (the fused step runs transformers' SDPA path)"
    if getattr(config, "hidden_act", None) != "silu" or getattr(config, "pretraining_tp", 1) != 1:
        return "an activation other than SiLU, or pretraining_tp > 1"
    layer_class, attention_class, mlp_class, norm_class = CLASSES[config.model_type]
    for layer in inner.layers:
        parts = ((layer, layer_class), (layer.self_attn, attention_class), (layer.mlp, mlp_class),
                 (layer.input_layernorm, norm_class), (layer.post_attention_layernorm, norm_class))
        if any(type(module).__name__ != name or _hooked(module) for module, name in parts):
            return "decoder layers, attention, MLP or norms of other classes, or with hooks"
        if type(layer.mlp.act_fn).__name__ not in ("SiLUActivation", "SiLU"):
            return "an MLP activation other than SiLU"
        for parent, names in STACKS:
            modules = [getattr(getattr(layer, parent), n) for n in names]
            if not all(_plain_linear(m, lora) for m in modules):
                return f"{parent} projections that are not plain linear layers (PEFT's layers, or other hooks)"
            if len({m.bias is None for m in modules}) > 1:
                return f"{parent} projections with and without bias"
        for parent, name in SINGLES:
            if not _plain_linear(getattr(getattr(layer, parent), name), lora):
                return f"{parent}.{name} is not a plain linear layer"
        if getattr(layer.self_attn, "sliding_window", None):
            return "sliding-window attention"
    if type(inner.norm).__name__ != norm_class or _hooked(inner.norm) or type(model.lm_head) is not torch.nn.Linear:
        return "a final norm of another class, or an lm_head that is not a plain linear layer"
    return None


def _rms_norm(hidden, norm):
    """``norm(hidden)`` for Qwen2RMSNorm, its fp32 part as one op."""
    import torch
    import torch.nn.functional as F

    normed = F.rms_norm(hidden.to(torch.float32), hidden.shape[-1:], eps=norm.variance_epsilon)
    return norm.weight * normed.to(hidden.dtype)


def _stack(modules):
    """One ``nn.Linear`` over ``modules``' stacked weights (and biases); each module's weight and
    bias become views of the stack, so no second copy stays. Built outside inference mode (an
    inference tensor could not be updated in place later, as a merge does)."""
    import torch

    with torch.inference_mode(False), torch.no_grad():
        weight = torch.cat([m.weight for m in modules])
        bias = None if modules[0].bias is None else torch.cat([m.bias for m in modules])
        stacked = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        stacked.weight = torch.nn.Parameter(weight, requires_grad=False)
        if bias is not None:
            stacked.bias = torch.nn.Parameter(bias, requires_grad=False)
        start = 0
        for m in modules:
            end = start + m.out_features
            m.weight.data = weight[start:end]
            if bias is not None:
                m.bias.data = bias[start:end]
            start = end
    return stacked.eval()


class FusedStep:
    """The decode step of ``model`` (check :func:`fusable` first). Built once per model: building
    moves the q|k|v and gate|up weights into their stacks (:func:`fused_step` keeps the one)."""

    def __init__(self, model):
        self.model = model
        self.layers = []  # per decoder layer: (the layer, {"self_attn": q|k|v stack, "mlp": gate|up stack})
        for layer in model.model.layers:
            self.layers.append((layer, {parent: _stack([getattr(getattr(layer, parent), n) for n in names])
                                        for parent, names in STACKS}))
            if model.device.type == "cpu":  # the unstacked weights' pages back to the OS now: glibc keeps
                release_freed_heap(above_bytes=0)  # freed heap, and all layers' would add their size to the peak
        # each stacked member -> (decoder layer index, its group's name, its first column in the stack)
        self.member_at = {}
        for index, (layer, _) in enumerate(self.layers):
            for parent, names in STACKS:
                start = 0
                for name in names:
                    member = getattr(getattr(layer, parent), name)
                    self.member_at[member] = (index, parent, start)
                    start += member.out_features
        config = model.config
        self.head_dim = head_dim(config)
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self._groups_of: tuple = (None, {})  # (the LoRA state it was built for, its stacked groups)

    def in_place(self) -> bool:
        """Whether every stacked module's weight and bias are still the views of its stack (a
        module given a new tensor, or a model moved to another device, breaks them)."""
        for member, (index, parent, start) in self.member_at.items():
            stack = self.layers[index][1][parent]
            pairs = [(member.weight, stack.weight, start * stack.weight.shape[1])]
            if stack.bias is not None:
                pairs.append((member.bias, stack.bias, start))
            if any(part.untyped_storage().data_ptr() != whole.untyped_storage().data_ptr()
                   or part.storage_offset() != whole.storage_offset() + offset for part, whole, offset in pairs):
                return False
        return True

    def stacked_linears(self) -> list:
        """The stacked layers this step calls (to run on oneDNN as the model's layers do)."""
        return [stack for _, stacks in self.layers for stack in stacks.values()]

    def unstacked_members(self) -> set:
        """The model's layers whose products this step takes from a stack (only prefills call them)."""
        return set(self.member_at)

    def _stacked_groups(self, lora: StackedLoRA | None) -> dict:
        """{(decoder layer index, "self_attn" or "mlp"): [(LoRA group, each member's first column
        in the stack)]}: the adapters of stacked layers, which this step adds itself (o_proj's and
        down_proj's ride on their hooks). Built once per LoRA state."""
        if lora is None:
            return {}
        state = (id(lora), lora.key())
        if self._groups_of[0] != state:
            named = dict(self.model.named_modules())
            found: dict = {}
            for (_, members), group in lora.groups.items():
                placed = [self.member_at.get(named[path]) for path in group.members]
                if all(p is None for p in placed):
                    continue  # a layer the step calls as a module
                if any(p is None for p in placed) or len({p[:2] for p in placed}) > 1:
                    raise RuntimeError(f"LoRA group {members} spans stacks unlike the fused step's")
                found.setdefault(placed[0][:2], []).append((group, [p[2] for p in placed]))
            self._groups_of = (state, found)
        return self._groups_of[1]

    def __call__(self, input_ids, position_ids, mask, cache, lora: StackedLoRA | None):
        """Logits [rows, vocab] of one token per row: ``mask`` [rows, 1, 1, window] (bool),
        ``cache`` the engine's slot cache (rows write at ``cache.column``)."""
        import torch
        import torch.nn.functional as F

        rows, d = input_ids.shape[0], self.head_dim
        heads, kv_heads = self.heads, self.kv_heads
        stacked_groups = self._stacked_groups(lora if lora is not None and lora.enabled else None)
        base = self.model.model
        hidden = base.embed_tokens(input_ids)  # [rows, 1, hidden]
        cos, sin = base.rotary_emb(hidden, position_ids)  # [rows, 1, d] in the model's dtype
        sin = torch.cat((-sin[..., :d // 2], sin[..., d // 2:]), dim=-1)
        # SDPA turns a boolean mask into this additive one in every call; once per step here
        mask = torch.zeros(mask.shape, dtype=hidden.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
        write_at = cache.column[:rows].view(rows, 1, 1, 1).expand(rows, 2 * kv_heads, 1, d)
        window = cache.window
        for index, (layer, stacks) in enumerate(self.layers):
            attn, mlp = layer.self_attn, layer.mlp
            x = _rms_norm(hidden, layer.input_layernorm)
            qkv = stacks["self_attn"](x)
            for group, starts in stacked_groups.get((index, "self_attn"), ()):
                group.add_stacked(qkv, x, starts)
            qkv = qkv.view(rows, heads + 2 * kv_heads, d)
            qk = qkv[:, :heads + kv_heads]
            torch.add(qk * cos, qk.roll(d // 2, dims=-1) * sin, out=qk)  # rotary, in place
            query, new_kv = qkv.split((heads, 2 * kv_heads), dim=1)
            cached = cache.layers[index].kv[:rows]
            cached.scatter_(2, write_at, new_kv.unsqueeze(2))  # each row's keys and values at its column
            keys, values = cached[:, :, :window].split(kv_heads, dim=1)
            attended = F.scaled_dot_product_attention(query.view(rows, kv_heads, heads // kv_heads, d), keys, values,
                                                      attn_mask=mask, scale=attn.scaling)
            hidden = hidden + attn.o_proj(attended.reshape(rows, 1, heads * d))
            x = _rms_norm(hidden, layer.post_attention_layernorm)
            gate_up = stacks["mlp"](x)
            for group, starts in stacked_groups.get((index, "mlp"), ()):
                group.add_stacked(gate_up, x, starts)
            gate, up = gate_up.chunk(2, dim=-1)
            hidden = hidden + mlp.down_proj(F.silu(gate) * up)
        hidden = _rms_norm(hidden, base.norm)
        return self.model.lm_head(hidden)[:, -1, :]


def fused_step(model) -> FusedStep:
    """The model's fused step, built (and its weights stacked) on first use, and again if a stacked
    module's weights were replaced since."""
    step = getattr(model, "_thinktune_fused_step", None)
    if step is None or not step.in_place():
        step = FusedStep(model)
        model._thinktune_fused_step = step
    return step

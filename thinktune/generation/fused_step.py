"""One decode step of a Qwen2- or Llama-style model in half the ops of transformers' modules,
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
  ``Qwen2RMSNorm``/``LlamaRMSNorm`` do (``x * rsqrt(mean(x²) + eps)`` in fp32), then the same
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

from thinktune.models.hardware import release_freed_heap
from thinktune.models.lora import StackedLoRA

SUPPORTED = ("qwen2", "llama")
STACKS = (("self_attn", ("q_proj", "k_proj", "v_proj")), ("mlp", ("gate_proj", "up_proj")))
SINGLES = (("self_attn", "o_proj"), ("mlp", "down_proj"))


def _plain_linear(module, lora: StackedLoRA | None) -> bool:
    """A plain ``nn.Linear`` whose only hooks are the stacked LoRA's (which this step applies itself)."""
    import torch

    ours = {h.id for h in lora.handles} if lora is not None else set()
    return (type(module) is torch.nn.Linear and not module._forward_pre_hooks
            and set(module._forward_hooks) <= ours)


def fusable(model, lora: StackedLoRA | None = None) -> str | None:
    """Why :class:`FusedStep` cannot run ``model`` (``None``: it can)."""
    import torch

    config = model.config
    inner = getattr(model, "model", None)
    if not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return f"{type(model).__name__} is not a causal LM of decoder layers (a wrapper, such as PEFT's?)"
    if config.model_type not in SUPPORTED:
        return f"model type {config.model_type!r} (the fused step knows {', '.join(SUPPORTED)})"
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "pretraining_tp", 1) != 1:
        return "an activation other than SiLU, or pretraining_tp > 1"
    for layer in inner.layers:
        for parent, names in STACKS:
            modules = [getattr(getattr(layer, parent), n) for n in names]
            if not all(_plain_linear(m, lora) for m in modules):
                return f"{parent} projections that are not plain linear layers (PEFT's layers, or other hooks)"
            if len({m.bias is None for m in modules}) > 1:
                return f"{parent} projections with and without bias"
        for parent, name in SINGLES:
            if not _plain_linear(getattr(getattr(layer, parent), name), lora):
                return f"{parent}.{name} is not a plain linear layer"
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            if not hasattr(norm, "variance_epsilon") or norm._forward_hooks or norm._forward_pre_hooks:
                return "norms without variance_epsilon, or with hooks"
        attn = layer.self_attn
        if any(hasattr(attn, n) for n in ("q_norm", "k_norm")) or getattr(attn, "sliding_window", None):
            return "query/key norms or sliding-window attention"
        if layer._forward_hooks or layer._forward_pre_hooks or attn._forward_hooks or layer.mlp._forward_hooks:
            return "hooks on decoder layers"
    if not hasattr(inner.norm, "variance_epsilon") or type(model.lm_head) is not torch.nn.Linear:
        return "a final norm without variance_epsilon, or an lm_head that is not a plain linear layer"
    if model.config._attn_implementation not in ("sdpa", "eager"):
        return f"attention implementation {model.config._attn_implementation!r}"
    return None


def _rms_norm(hidden, norm):
    """``norm(hidden)`` for Qwen2RMSNorm/LlamaRMSNorm, its fp32 part as one op."""
    import torch
    import torch.nn.functional as F

    normed = F.rms_norm(hidden.to(torch.float32), hidden.shape[-1:], eps=norm.variance_epsilon)
    return norm.weight * normed.to(hidden.dtype)


def _stack(modules):
    """One ``nn.Linear`` over ``modules``' stacked weights (and biases); each module's weight and
    bias become views of the stack, so no second copy stays."""
    import torch

    with torch.no_grad():
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
        self.layers = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append((layer, _stack([attn.q_proj, attn.k_proj, attn.v_proj]),
                                _stack([mlp.gate_proj, mlp.up_proj])))
        if model.device.type == "cpu":  # the unstacked weights' pages back to the OS: glibc keeps freed
            release_freed_heap(above_bytes=0)  # heap (0.5B in bf16: 447 MB more RSS without this)
        config = model.config
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads

    def in_place(self) -> bool:
        """Whether every stacked module's weight and bias are still the views of its stack (a
        module given a new tensor, or a model moved to another device, breaks them)."""
        for layer, qkv, gate_up in self.layers:
            for stack, modules in ((qkv, (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)),
                                   (gate_up, (layer.mlp.gate_proj, layer.mlp.up_proj))):
                start = 0
                for m in modules:
                    pairs = [(m.weight, stack.weight, start * stack.weight.shape[1])]
                    if stack.bias is not None:
                        pairs.append((m.bias, stack.bias, start))
                    if any(part.untyped_storage().data_ptr() != whole.untyped_storage().data_ptr()
                           or part.storage_offset() != whole.storage_offset() + offset
                           for part, whole, offset in pairs):
                        return False
                    start += m.out_features
        return True

    def stacked_linears(self) -> list:
        """The stacked layers this step calls (to run packed where the model's layers are)."""
        return [m for _, qkv, gate_up in self.layers for m in (qkv, gate_up)]

    def unstacked_members(self) -> set:
        """The model's layers whose products this step takes from a stack (only prefills call them)."""
        return {getattr(getattr(layer, parent), n) for layer, _, _ in self.layers for parent, names in STACKS
                for n in names}

    def _stacked_groups(self, lora: StackedLoRA | None) -> dict:
        """{(layer path, "self_attn" or "mlp"): [(LoRA group, each member's first column in the
        stacked output)]}: the groups of q|k|v and gate|up layers (not o_proj's or down_proj's)."""
        found: dict = {}
        if lora is None:
            return found
        for (parent, members), group in lora.groups.items():
            layer_path, _, kind = parent.rpartition(".")
            names = dict(STACKS).get(kind, ())
            if members[0] in names:
                module = self.model.get_submodule(parent)
                starts = {n: sum(getattr(module, m).out_features for m in names[:i]) for i, n in enumerate(names)}
                found.setdefault((layer_path, kind), []).append((group, [starts[m] for m in members]))
        return found

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
        for index, (layer, qkv_linear, gate_up_linear) in enumerate(self.layers):
            path = f"model.layers.{index}"
            attn, mlp = layer.self_attn, layer.mlp
            x = _rms_norm(hidden, layer.input_layernorm)
            qkv = qkv_linear(x)
            for group, starts in stacked_groups.get((path, "self_attn"), ()):
                group.add_stacked(qkv, x, starts)
            qkv = qkv.view(rows, heads + 2 * kv_heads, d)
            qk = qkv[:, :heads + kv_heads]
            torch.add(qk * cos, qk.roll(d // 2, dims=-1) * sin, out=qk)  # rotary, in place
            query, new_kv = qkv.split((heads, 2 * kv_heads), dim=1)
            cached = cache.layers[index].kv[:rows, :, :window]
            cached.scatter_(2, write_at, new_kv.unsqueeze(2))  # each row's keys and values at its column
            keys, values = cached.split(kv_heads, dim=1)
            attended = F.scaled_dot_product_attention(query.view(rows, kv_heads, heads // kv_heads, d), keys, values,
                                                      attn_mask=mask, scale=attn.scaling)
            hidden = hidden + attn.o_proj(attended.reshape(rows, 1, heads * d))
            x = _rms_norm(hidden, layer.post_attention_layernorm)
            gate_up = gate_up_linear(x)
            for group, starts in stacked_groups.get((path, "mlp"), ()):
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

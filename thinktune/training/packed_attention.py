"""SDPA over each chat of a padding-free micro-batch, instead of one dense block-diagonal mask.

A micro-batch packs several chats into one row (``thinktune.training.batching``). With SDPA,
transformers attends over that row through a dense [tokens x tokens] mask that is causal inside
each chat and false across chats: the kernel then computes every query against every key of
the row, and expands the two key/value heads to all fourteen query heads, because a mask rules
out SDPA's grouped-query mode. On a CPU, where SDPA is what training runs, attention took
17% of a bf16 step of the 0.5B with about three chats per 1,024-token micro-batch
(``torch.profiler``), most of it spent on pairs the mask then discards.

``sdpa_per_sequence`` runs transformers' own SDPA attention once per chat, causal, with no mask
(training on a CPU, models whose layers all attend fully: ``applies``):
the same attention (each query attends to its chat's earlier tokens), a fraction of the work.
It is registered with transformers' attention interface (and SDPA's mask function, used
whenever a forward does not say where its chats start), and
:class:`thinktune.training.loss.CausalLMLoss` passes ``cu_seq_lens_q`` (each chat's first
token, then the row's length: the argument FlashAttention 2 takes for the same layout) when
its model attends this way. ``tests/test_training_equivalence.py`` compares the packed
micro-batch with a padded batch under transformers' own SDPA; ``python -m perf.training_step``
times a training step both ways.
"""

from __future__ import annotations

import torch

NAME = "sdpa_per_sequence"


def sequence_starts(position_ids: torch.Tensor) -> torch.Tensor:
    """``cu_seq_lens_q`` of one packed row: where positions restart at 0, then the row's length."""
    positions = position_ids.reshape(-1)
    starts = torch.nonzero(positions == 0).reshape(-1)
    if starts.numel() == 0 or int(starts[0]) != 0:
        starts = torch.cat([starts.new_zeros(1), starts])
    return torch.cat([starts, starts.new_tensor([positions.numel()])]).to(torch.int32)


def sdpa_per_sequence(module, query, key, value, attention_mask, cu_seq_lens_q=None, **kwargs):
    """transformers' SDPA attention, once per sequence of a packed row when ``cu_seq_lens_q``
    says where they start; else as transformers runs it, with the mask it was given."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs = {k: v for k, v in kwargs.items()
              if k not in ("cu_seq_lens_k", "max_length_q", "max_length_k", "is_causal")}
    bounds = cu_seq_lens_q.tolist()
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        part = slice(start, end)
        out, _ = sdpa_attention_forward(module, query[:, :, part], key[:, :, part], value[:, :, part], None,
                                        is_causal=True, **kwargs)
        outputs.append(out)
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)), None


def register() -> str:
    """Make ``NAME`` an attention implementation transformers models accept; returns it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_per_sequence)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def applies(model, device) -> bool:
    """Whether a model training on ``device`` attends chat by chat: SDPA on a CPU, every layer full
    attention (a sliding window lived in the mask). On a GPU, where SDPA is the last fallback, the
    chat boundaries would cost a host sync in every layer; flex attention and FlashAttention 2
    already attend chat by chat there."""
    config = model.config
    full = all(t == "full_attention" for t in getattr(config, "layer_types", None) or ["full_attention"])
    return (device.type == "cpu" and getattr(config, "_attn_implementation", None) == "sdpa" and full
            and not getattr(config, "use_sliding_window", False))


def attends_per_sequence(model) -> bool:
    return getattr(model.config, "_attn_implementation", None) == NAME

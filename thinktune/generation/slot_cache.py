"""The decode engine's KV cache: one preallocated tensor per layer, a row per batch slot.

Each slot's row writes its next token's keys and values at its own column (``column[r]``) and
attention reads columns ``[0, window)``: rows that entered the batch at different times share
one step. A layer's keys and values are the two halves of one tensor [slots, 2 x kv_heads,
capacity, head_dim] (``keys``, ``values``: views), so the fused decode step writes both in one op
(``thinktune.generation.fused_step``). The classes plug into transformers' ``Cache`` interface, so the model's own attention
code reads and writes them; they are built on first use because importing transformers is slow.
"""

from __future__ import annotations


def head_dim(config) -> int:
    """The model's attention head width."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def slot_cache_class():
    """The KV cache classes, built on first use (importing transformers is slow)."""
    from transformers.cache_utils import Cache, CacheLayerMixin

    class SlotLayer(CacheLayerMixin):
        is_compileable = True

        def __init__(self, owner, kv, heads: int):
            super().__init__()
            self.owner, self.kv, self.is_initialized = owner, kv, True
            self.keys, self.values = kv[:, :heads], kv[:, heads:]  # views: one write can fill both

        def lazy_initialization(self, key_states, value_states) -> None:  # allocated up front
            pass

        def update(self, key_states, value_states, *args, **kwargs):
            rows, window = key_states.shape[0], self.owner.window
            at = self.owner.column[:rows].view(rows, 1, 1, 1).expand_as(key_states)  # each row's own column
            self.keys[:rows].scatter_(2, at, key_states)
            self.values[:rows].scatter_(2, at, value_states)
            return self.keys[:rows, :, :window], self.values[:rows, :, :window]

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.owner.window, 0

        def get_seq_length(self) -> int:
            return self.owner.window

        def get_max_length(self) -> int:
            return self.keys.shape[2]

    class SlotCache(Cache):
        """``layers`` of keys and values [slots, kv_heads, capacity, head_dim] each; row r writes at
        ``column[r]``, reads ``[:window]``."""

        def __init__(self, config, slots: int, capacity: int, dtype, device):
            import torch

            heads = config.num_key_value_heads
            self.column = torch.zeros(slots, dtype=torch.long, device=device)
            self.window = 1
            shape = (slots, 2 * heads, capacity, head_dim(config))
            super().__init__(layers=[SlotLayer(self, torch.zeros(shape, dtype=dtype, device=device), heads)
                                     for _ in range(config.num_hidden_layers)])

    return SlotCache

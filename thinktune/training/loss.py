"""The language-model loss without the full logits tensor.

A Qwen2.5 vocabulary has 151,936 tokens: the logits of one 8k-token chat in fp32 take 5 GB,
more than the 1.5B model's weights. The loss here needs only the final hidden states of the
tokens that carry a label (the answer; the prompt's logits are never computed) and then either

- Liger's fused linear + cross-entropy (``liger_kernel``, Triton, CUDA only) where it imports, or
- an exact chunked version: the hidden states are cut into chunks of ``chunk_tokens`` rows, each
  chunk's logits computed, upcast to fp32 and reduced to its cross-entropy sum inside an
  activation checkpoint, so only one chunk's logits exist at a time, in the forward pass and
  when the backward pass recomputes them.

Both compute what transformers' own ``ForCausalLMLoss`` does (logits in the compute dtype,
cross-entropy in fp32), summed rather than averaged: the caller divides by the number of
answer tokens of the whole optimizer step, across micro-batches and processes.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from thinktune.training.data import IGNORE
from thinktune.training.packed_attention import attends_per_sequence, sequence_starts

LossImpl = Literal["auto", "liger", "chunked"]


def liger_available() -> bool:
    try:
        import liger_kernel.transformers  # noqa: F401
    except (ImportError, RuntimeError):  # not installed, or Triton finding no GPU
        return False
    return True


def resolve_loss_impl(requested: LossImpl, on_cuda: bool) -> Literal["liger", "chunked"]:
    if requested == "auto":
        return "liger" if on_cuda and liger_available() else "chunked"
    if requested == "liger" and not (on_cuda and liger_available()):
        raise ValueError("the Liger loss needs CUDA and `pip install liger-kernel`")
    return requested


def loss_fallback(requested: LossImpl, on_cuda: bool, impl: str) -> str | None:
    """Why a CUDA run asking for ``auto`` got the chunked loss rather than Liger's, or None."""
    if requested == "auto" and on_cuda and impl == "chunked":
        return "liger-kernel is not importable (pip install liger-kernel): the exact chunked loss, slower"
    return None


def _chunk_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="sum")


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 chunk_tokens: int) -> torch.Tensor:
    """Sum over rows of cross_entropy(hidden @ weight.T, targets), one checkpointed chunk at a time."""
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_tokens):
        part = slice(start, start + chunk_tokens)
        total = total + checkpoint(_chunk_cross_entropy, hidden[part], weight, targets[part], use_reentrant=False)
    return total


# On CPU a chunk's logits exist about four times over in the backward (logits, log-softmax,
# their gradients): 256 MiB chunks added ~0.6 GiB to fp32 training's peak RSS of the 0.5B, and
# 32 MiB chunks (55 rows) train as fast there. GPUs keep the larger chunks (fewer launches).
CPU_MAX_LOGIT_ELEMENTS = 1 << 23


def default_chunk_tokens(vocab_size: int, max_logit_elements: int = 1 << 26) -> int:
    """Rows per chunk so that one chunk's fp32 logits stay near 256 MiB (441 rows for Qwen2.5)
    or ``max_logit_elements`` * 4 bytes."""
    return max(16, max_logit_elements // vocab_size)


class CausalLMLoss(nn.Module):
    """A causal LM (plain or PEFT-wrapped) whose forward returns ``(loss sum, tokens with a target)``.

    ``forward(input_ids, position_ids, targets)`` takes the flattened rows of
    :func:`thinktune.training.batching.flatten`: ``targets`` are already the next-token labels,
    ``IGNORE`` where no loss applies. Data-parallel wrappers (DDP, FSDP) wrap this module, so the
    decoder, the LoRA layers and the loss run inside their forward.
    """

    def __init__(self, model: nn.Module, impl: Literal["liger", "chunked"] = "chunked",
                 chunk_tokens: int | None = None):
        super().__init__()
        self.model = model  # the only submodule: state_dict keys are "model." + the model's own
        if getattr(self._causal_lm.get_output_embeddings(), "bias", None) is not None:
            raise ValueError("a language-model head with a bias is not supported")
        self.impl = impl
        self.chunk_tokens = chunk_tokens or default_chunk_tokens(self._causal_lm.config.vocab_size)
        self._liger = None
        if impl == "liger":
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            self._liger = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum")

    @property
    def _causal_lm(self) -> nn.Module:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, targets: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        causal_lm = self._causal_lm
        packed = {}
        if attention_mask is None and input_ids.shape[0] == 1 and attends_per_sequence(causal_lm):
            packed["cu_seq_lens_q"] = sequence_starts(position_ids)  # where each chat of the row starts
        hidden = causal_lm.get_decoder()(input_ids=input_ids, position_ids=position_ids,
                                         attention_mask=attention_mask, use_cache=False, **packed).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1])
        targets = targets.reshape(-1).to(hidden.device)
        keep = targets != IGNORE
        n_targets = keep.sum()
        if not bool(n_targets):
            # An empty micro-batch (a process with fewer chats than the others): a zero loss that
            # still reaches every trainable weight, so data-parallel gradient hooks all fire.
            return hidden.sum().float() * 0.0, n_targets
        hidden, targets = hidden[keep], targets[keep]  # only answer tokens need logits
        weight = causal_lm.get_output_embeddings().weight
        if self._liger is not None:
            loss = self._liger(weight, hidden, targets).float()
        else:
            loss = chunked_linear_cross_entropy(hidden, weight, targets, self.chunk_tokens)
        return loss, n_targets

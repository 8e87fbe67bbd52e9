"""LoRA dropout as PEFT computes it, with masks a CPU draws four times faster and no fp32 copies.

PEFT runs each LoRA layer as ``lora_B(lora_A(dropout(x.to(fp32))))``. Two things in that cost
a CPU training step more than they need to, and this module replaces both, keeping PEFT's
arithmetic:

- **The masks.** torch draws a CPU dropout mask one element at a time from its Mersenne
  Twister (``bernoulli_``): about 5 ns per element, 18% of a bf16 training step of the 0.5B on a
  2-core AMD EPYC with AVX512-BF16 (``torch.profiler``; seven masks per decoder layer, drawn
  again in the activation checkpoint's recompute). :func:`keep_mask` draws the same Bernoulli
  masks from numpy's PCG64 instead, 32 random bits per element against a threshold: each
  element is kept with probability ``round((1 - p) * 2**32) / 2**32`` (within 2**-33 of
  ``1 - p``; torch's own draw compares a 24-bit uniform), independently. The generator is
  seeded by one draw from torch's CPU generator, so ``torch.manual_seed``, a resumed run's
  restored RNG state and the checkpoint's recompute (which replays torch's RNG state) all give
  the same masks. ``python -m perf.training_step`` times both draws. On a GPU torch's own
  draw is already fast and is kept.
- **The fp32 copy.** Under mixed-precision autocast (which training always runs bf16/fp16
  in) PEFT casts each input to the fp32 adapter and drops out that copy: an fp32 copy of the
  layer's input and an fp32 dropout output, written and read in every forward, recompute and
  backward. ``lora_A``'s matmul casts its operands to the compute dtype anyway, and a
  bf16 -> fp32 -> bf16 round trip is exact, so :func:`prepare_lora_layers` turns the cast off.
  :class:`LoraDropout` then keeps PEFT's numbers on the bf16 input: ``x * keep * scale`` with
  ``scale`` fp32's ``1 / (1 - p)`` multiplied in the kernel's fp32 arithmetic and rounded once,
  as PEFT's fp32 product is rounded by autocast. (``F.dropout`` of the bf16 input itself
  differs on a CPU: it divides its bf16 mask by ``1 - p`` in bf16, a scale of 1.0547 for
  p = 0.05, not 1.0526.) In fp32 the same product is ``F.dropout``'s, bit for bit.

Given the same mask, the loss and gradients equal PEFT's own forward (tested); what differs
from PEFT's default is which elements the random masks drop.
"""

from __future__ import annotations

import numpy as np
import torch

_BITS = 32
# The bit pattern of 1.0 in each dtype: a numpy 0/1 mask becomes the dtype's 0.0/1.0 in place.
_ONE_BITS = {torch.bfloat16: (np.uint16, 0x3F80), torch.float16: (np.uint16, 0x3C00),
             torch.float32: (np.uint32, 0x3F800000)}


def torch_keep_mask(like: torch.Tensor, keep_probability: float) -> torch.Tensor:
    """The same mask drawn by torch's ``bernoulli_``, as PEFT's and torch's dropout draw it."""
    return torch.empty_like(like).bernoulli_(keep_probability)


def keep_mask(like: torch.Tensor, keep_probability: float) -> torch.Tensor:
    """A dropout mask for ``like``: 1 where an element is kept (probability ``keep_probability``),
    else 0, in ``like``'s dtype, shape and device; drawn from torch's generators (see the module)."""
    if like.device.type != "cpu" or like.dtype not in _ONE_BITS:
        return torch_keep_mask(like, keep_probability)
    threshold = round(keep_probability * 2 ** _BITS)
    if threshold >= 2 ** _BITS:
        return torch.ones_like(like)
    n = like.numel()
    seed = int(torch.randint(0, 2 ** 62, (1,)))  # torch's CPU generator: seeds, resumes and recomputes replay it
    bits = np.random.PCG64([seed, process_rank()]).random_raw((n + 1) // 2).view(np.uint32)[:n]
    unsigned, one = _ONE_BITS[like.dtype]
    keep = (bits < np.uint32(threshold)).view(np.uint8).astype(unsigned)
    keep *= unsigned(one)
    return torch.from_numpy(keep).view(like.dtype).view(like.shape)


def process_rank() -> int:
    """This process's rank among data-parallel processes (0 when it is the only one)."""
    distributed = torch.distributed
    return distributed.get_rank() if distributed.is_available() and distributed.is_initialized() else 0


class LoraDropout(torch.nn.Module):
    """Dropout of a LoRA layer's input, in the input's own dtype, with PEFT's fp32 numbers."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.scale = float(torch.ones(1).div_(1 - p))  # fp32's 1 / (1 - p), as torch's dropout computes it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * keep_mask(x, 1 - self.p) * self.scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


def prepare_lora_layers(peft_model, autocast: bool) -> int:
    """Give every LoRA layer of ``peft_model`` a :class:`LoraDropout`, and under ``autocast``
    (bf16/fp16 training) stop PEFT casting its input to fp32; the number of layers changed.
    Without autocast the cast stays (a bf16 input against an fp32 weight is an error there)."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
    for layer in layers:
        if autocast:
            layer.cast_input_dtype_enabled = False
        for name, dropout in layer.lora_dropout.items():
            if isinstance(dropout, torch.nn.Dropout):
                layer.lora_dropout[name] = LoraDropout(dropout.p)
    return len(layers)

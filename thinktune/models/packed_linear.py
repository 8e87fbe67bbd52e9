"""bf16 linear layers on a CPU with their weights packed once for oneDNN, while decoding.

torch's CPU ``F.linear`` in bf16 hands the weight to oneDNN in PyTorch's plain layout at every
call, and oneDNN reorders it into its blocked layout each time: at a decode step's few rows that
reorder costs as much as the product. Packing each weight once
(``torch.ops.mkldnn._reorder_linear_weight``, what inductor's freezing pass does for CPU bf16
linears) and calling oneDNN's linear on the packed weight (``_linear_pointwise``) computes the
same products: the outputs are bit-identical (checked for every layer at packing time, and by
``tests/test_packed_linear.py``), in about half the time at 12 rows (1.8 ms against 0.8 ms for
gate|up's weight, 29 against 15 ms for the LM head; 2-core AMD EPYC with AVX512-BF16,
``python -m perf.packed_linear``). The packed copies cost the linear weights' bytes again
(about 1 GB for the 0.5B) for as long as the block lasts.

Only plain ``nn.Linear`` layers with bf16 weights on a CPU whose oneDNN has bf16 kernels are
packed, inside ``torch.inference_mode`` (the packed op has no backward); fp32 models, GPUs and
training never see it. The weights stay as loaded: the layers' ``forward`` is replaced on the
instance for the block and restored after it.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

from thinktune.logs import get_logger

log = get_logger("packed_linear")


def _packed_forward(packed, bias, x):
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def packable_layers(model) -> list:
    """The model's plain linear layers that packing applies to (bf16 weights on a CPU)."""
    import torch

    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return []
    return [m for m in model.modules() if type(m) is torch.nn.Linear
            and m.weight.dtype == torch.bfloat16 and m.weight.device.type == "cpu"]


def _same_as_plain(layer, packed, rows: int) -> bool:
    import torch

    probe = torch.randn(rows, layer.in_features, generator=torch.Generator().manual_seed(0)).to(layer.weight.dtype)
    return torch.equal(_packed_forward(packed, layer.bias, probe), torch.nn.functional.linear(probe, layer.weight, layer.bias))


@contextmanager
def packed_linears(model, rows: int):
    """Within the block, ``model``'s bf16 CPU linear layers run on weights packed once for
    ``rows``-row inputs (any row count works). Yields the number of layers packed: 0 where
    nothing applies, or where a probe's output differs from ``F.linear``'s (then a warning)."""
    import torch

    layers = packable_layers(model)
    if layers:
        with torch.inference_mode():
            packed = [torch.ops.mkldnn._reorder_linear_weight(layer.weight, rows) for layer in layers]
            if not all(_same_as_plain(layer, p, rows) for layer, p in zip(layers, packed, strict=True)):
                log.warning("oneDNN's packed bf16 linear differs from F.linear on this machine: not used")
                layers, packed = [], []
        for layer, weight in zip(layers, packed, strict=True):
            layer.forward = partial(_packed_forward, weight, layer.bias)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            del layer.forward  # the class's forward again

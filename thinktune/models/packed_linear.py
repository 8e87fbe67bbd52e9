"""Linear layers on a CPU run by oneDNN while decoding: bf16 on weights packed once, fp32 on the
weights as stored.

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

torch's CPU ``F.linear`` in fp32 goes to MKL's sgemm, which at a decode step's few rows is far
from the memory bandwidth the product needs: the 0.5B's LM head took 92 ms at 12 rows where
oneDNN's linear on the same plain fp32 weight took 36 (gate|up's weight 1.7 against 1.0 ms; the
same machine, ``python -m perf.packed_linear --precision fp32``). fp32 weights are not packed:
a second copy of the 0.5B's 2 GB would take the fp32 evaluation past its 4 GiB. oneDNN sums
in another order than MKL, so fp32 outputs are not MKL's bits but within fp32 rounding of them
(checked for every layer against ``TOLERANCE`` at the block's start; measured at most 1.7e-6 of
the largest output), as the engine's fp32 logits already are of PEFT's (1e-5, tested).

Only plain ``nn.Linear`` layers on a CPU are run this way, bf16 ones where oneDNN has bf16
kernels, inside ``torch.inference_mode`` (the op has no backward); GPUs and training never see
it. The weights stay as loaded: the layers' ``forward`` is replaced on the instance for the block
and restored after it.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

from thinktune.logs import get_logger

log = get_logger("packed_linear")


def _packed_forward(packed, bias, x):
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


# How far an fp32 layer's oneDNN output may be from F.linear's, as a share of the largest output
# entry: fp32 rounding of another summation order is ~1e-6 of it; a wrong product is of order 1.
TOLERANCE = 1e-5


def packable_layers(modules) -> list:
    """The plain linear layers among ``modules`` (a model: all of its modules) on a CPU that oneDNN
    runs here: fp32 ones, and bf16 ones where oneDNN has bf16 kernels (AVX512-BF16, or AVX-512
    BW/VL/DQ, or AVX-NE-CONVERT)."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return []
    if isinstance(modules, torch.nn.Module):
        modules = modules.modules()
    dtypes = {torch.float32} | ({torch.bfloat16} if torch.ops.mkldnn._is_mkldnn_bf16_supported() else set())
    return [m for m in modules if type(m) is torch.nn.Linear
            and m.weight.dtype in dtypes and m.weight.device.type == "cpu"]


def _same_as_plain(layer, weight, rows: int) -> bool:
    """bf16: the same bits as ``F.linear``; fp32: within ``TOLERANCE`` of it."""
    import torch

    probe = torch.randn(rows, layer.in_features, generator=torch.Generator().manual_seed(0)).to(layer.weight.dtype)
    ours = _packed_forward(weight, layer.bias, probe)
    plain = torch.nn.functional.linear(probe, layer.weight, layer.bias)
    if layer.weight.dtype == torch.bfloat16:
        return torch.equal(ours, plain)
    return bool((ours - plain).abs().max() <= TOLERANCE * plain.abs().max())


@contextmanager
def packed_linears(modules, rows: int):
    """Within the block, the CPU linear layers among ``modules`` (a model: all of its own) run on
    oneDNN: bf16 ones on weights packed once for ``rows``-row inputs (any row count works), fp32
    ones on their weights as stored. Yields the number of layers so run: 0 where nothing applies,
    or where a probe's output differs from ``F.linear``'s (bf16: by a bit; fp32: beyond
    ``TOLERANCE``; then a warning)."""
    import torch

    layers = packable_layers(modules)
    if layers:
        with torch.inference_mode():
            packed = [torch.ops.mkldnn._reorder_linear_weight(layer.weight, rows)
                      if layer.weight.dtype == torch.bfloat16 else layer.weight for layer in layers]
            if not all(_same_as_plain(layer, p, rows) for layer, p in zip(layers, packed, strict=True)):
                log.warning("oneDNN's linear differs from F.linear on this machine: not used")
                layers, packed = [], []
        for layer, weight in zip(layers, packed, strict=True):
            layer.forward = partial(_packed_forward, weight, layer.bias)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            del layer.forward  # the class's forward again

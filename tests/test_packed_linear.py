"""bf16 linear layers on weights packed once for oneDNN (``thinktune.models.packed_linear``): the same
bits as ``F.linear``, the same answers from the decode engine, and the layers restored after.

Packing needs oneDNN's bf16 kernels (AVX512-BF16, or AVX-512 BW/VL/DQ, or AVX-NE-CONVERT); on a CPU
without them nothing is packed, and these tests check that instead."""

from __future__ import annotations

import pytest

from thinktune.generation.chats import generate_tokens
from thinktune.generation.settings import DecodingSettings
from thinktune.models import packed_linear
from thinktune.models.host import ModelHost

pytestmark = pytest.mark.usefixtures("one_thread")


def bf16_packing_supported() -> bool:
    import torch

    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def prompts():
    import torch

    generator = torch.Generator().manual_seed(5)
    return [torch.randint(0, 300, (n,), generator=generator).tolist() for n in (7, 12, 19, 30)]


def test_packed_layers_compute_what_f_linear_computes(tiny_model_dir):
    """Every packed layer of the tiny model, at decode and prefill row counts and with 3-d inputs:
    bit-identical to torch's own F.linear on the same weight and bias (the reference)."""
    import torch

    model = ModelHost(tiny_model_dir, "bf16").model
    layers = packed_linear.packable_layers(model)
    if not bf16_packing_supported():
        assert layers == []
        with packed_linear.packed_linears(model, rows=4) as packed:
            assert packed == 0
        return
    assert {type(m) for m in layers} == {torch.nn.Linear} and len(layers) >= 7  # the LM head and each projection
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the tiny model's biases are zeros: give q, k and v real ones
        for layer in layers:
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
    assert any(layer.bias is not None for layer in layers)
    inputs = {layer: [torch.randn(*shape, layer.in_features, generator=generator).to(torch.bfloat16)
                      for shape in ((1,), (4,), (24,), (3, 1), (2, 37))] for layer in layers}
    with torch.inference_mode():
        expected = {layer: [torch.nn.functional.linear(x, layer.weight, layer.bias) for x in xs]
                    for layer, xs in inputs.items()}
        with packed_linear.packed_linears(model, rows=4) as packed:
            assert packed == len(layers)
            for layer, xs in inputs.items():
                assert "forward" in layer.__dict__  # the packed forward is what the layer runs
                for x, want in zip(xs, expected[layer], strict=True):
                    assert torch.equal(layer(x), want), (layer, tuple(x.shape))
    assert not any("forward" in layer.__dict__ for layer in layers)  # the class's forward again


def test_engine_answers_the_same_with_packed_layers(tiny_model_dir, adapters_for_packing):
    """The decode engine packs a bf16 model's layers for its run (recorded in its stats): greedy
    answers of the base and of two adapters in one batch equal those with packing turned off."""
    from unittest import mock

    host = ModelHost(tiny_model_dir, "bf16")
    settings = DecodingSettings(max_new_tokens=12, batch_size=8)

    def answers(model, adapters):
        run = generate_tokens(model, prompts(), settings, set(), progress=False, mode="eager", adapters=adapters)
        return [[c[0].token_ids for c in per] for per in run.by_adapter], run.stats

    for context, adapters in ((host.adapted(None), 1), (host.adapted_set(adapters_for_packing), 2)):
        with context as model:
            packed, stats = answers(model, adapters)
            with mock.patch.object(packed_linear, "packable_layers", return_value=[]):
                plain, plain_stats = answers(model, adapters)
        assert plain_stats.packed_linears == 0
        assert stats.packed_linears == (len(packed_linear.packable_layers(host.model)) if bf16_packing_supported() else 0)
        assert packed == plain


@pytest.mark.skipif(not bf16_packing_supported(), reason="oneDNN has no bf16 kernels on this CPU: nothing is packed")
def test_a_packed_layer_that_differs_is_not_used(tiny_model_dir, monkeypatch):
    """The check at packing time: if oneDNN's packed product differed from F.linear by a single bit,
    nothing is packed (a warning), and the layers are restored after an error in the block."""
    import torch

    model = ModelHost(tiny_model_dir, "bf16").model
    real = packed_linear._packed_forward
    monkeypatch.setattr(packed_linear, "_packed_forward",
                        lambda packed, bias, x: torch.nextafter(real(packed, bias, x), torch.tensor(1e9, dtype=x.dtype)))
    with packed_linear.packed_linears(model, rows=4) as packed:
        assert packed == 0
    monkeypatch.setattr(packed_linear, "_packed_forward", real)
    layers = packed_linear.packable_layers(model)
    with pytest.raises(RuntimeError, match="inside"):
        with packed_linear.packed_linears(model, rows=4):
            raise RuntimeError("inside")
    assert not any("forward" in layer.__dict__ for layer in layers)


@pytest.fixture(scope="module")
def adapters_for_packing(tiny_model_dir, tmp_path_factory):
    from test_modelhost import random_adapter

    out = tmp_path_factory.mktemp("packing-adapters")
    return [random_adapter(tiny_model_dir, out / f"a{i}", seed=i) for i in range(2)]

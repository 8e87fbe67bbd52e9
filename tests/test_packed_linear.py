"""Linear layers run by oneDNN while decoding (``thinktune.models.packed_linear``): bf16 on weights
packed once, the same bits as ``F.linear``; fp32 on the weights as stored, within fp32 rounding of
``F.linear`` (another summation order: measured at most 1.7e-6 of the largest output on the 0.5B's
layers, natively and with AVX-512 hidden, so ``TOLERANCE`` = 1e-5 leaves 5x); the same answers from
the decode engine, and the layers restored after.

bf16 packing needs oneDNN's bf16 kernels (AVX512-BF16, or AVX-512 BW/VL/DQ, or AVX-NE-CONVERT); on
a CPU without them no bf16 layer is packed, and these tests check that instead."""

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


def test_fp32_layers_run_on_onednn_within_fp32_rounding_of_f_linear(tiny_model_dir):
    """Every fp32 layer of the tiny model, unpacked (no second copy of the weights), at decode and
    prefill row counts and with 3-d inputs: within ``TOLERANCE`` of the largest entry of torch's own
    F.linear (the reference); a product off by a whole term would be of order one."""
    import torch

    model = ModelHost(tiny_model_dir, "fp32").model
    layers = packed_linear.packable_layers(model)
    assert len(layers) >= 7 and all(layer.weight.dtype == torch.float32 for layer in layers)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in layers:
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
    inputs = {layer: [torch.randn(*shape, layer.in_features, generator=generator)
                      for shape in ((1,), (4,), (24,), (3, 1), (2, 37))] for layer in layers}
    with torch.inference_mode():
        expected = {layer: [torch.nn.functional.linear(x, layer.weight, layer.bias) for x in xs]
                    for layer, xs in inputs.items()}
        weights = [layer.weight.data_ptr() for layer in layers]
        with packed_linear.packed_linears(model, rows=4) as packed:
            assert packed == len(layers)
            assert [layer.weight.data_ptr() for layer in layers] == weights  # run on the weights as stored
            for layer, xs in inputs.items():
                assert "forward" in layer.__dict__
                for x, want in zip(xs, expected[layer], strict=True):
                    got = layer(x)
                    assert (got - want).abs().max() <= packed_linear.TOLERANCE * want.abs().max(), (layer, x.shape)
    assert not any("forward" in layer.__dict__ for layer in layers)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_engine_answers_the_same_with_packed_layers(tiny_model_dir, adapters_for_packing, precision):
    """The decode engine runs a model's layers on oneDNN for its run (recorded in its stats):
    greedy answers of the base and of two adapters in one batch equal those with it turned off
    (fp32: oneDNN's sums are within rounding of MKL's, and no answer of the tiny model sits on a
    tie that rounding could flip)."""
    from unittest import mock

    host = ModelHost(tiny_model_dir, precision)
    settings = DecodingSettings(max_new_tokens=12, batch_size=8)

    def answers(model, adapters):
        run = generate_tokens(model, prompts(), settings, set(), progress=False, mode="eager", adapters=adapters)
        return [[c[0].token_ids for c in per] for per in run.by_adapter], run.stats, run.engine

    for context, adapters in ((host.adapted(None), 1), (host.adapted_set(adapters_for_packing), 2)):
        with context as model:
            packed, stats, engine = answers(model, adapters)
            with mock.patch.object(packed_linear, "packable_layers", return_value=[]):
                plain, plain_stats, _ = answers(model, adapters)
        assert plain_stats.packed_linears == 0
        runs_on_onednn = precision == "fp32" or bf16_packing_supported()
        # every linear layer the run calls: the model's, with the fused decode step's stacks in
        # place of q, k, v, gate and up
        assert stats.decode_forward == "fused"
        layers, stacks = engine.linear_layers(), engine.fused.stacked_linears()
        members = engine.fused.unstacked_members()
        assert len(stacks) == 2 * len(host.model.model.layers) and all(s in layers for s in stacks)
        assert all((m in layers) == (precision == "fp32") for m in members)  # bf16: packed once, as stacks
        assert stats.packed_linears == (len(packed_linear.packable_layers(engine.linear_layers())) if runs_on_onednn else 0)
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


def test_an_fp32_layer_beyond_rounding_is_not_used(tiny_model_dir, monkeypatch):
    """fp32: an output one step of float rounding away is accepted; one 1e-3 of the largest entry
    away (a hundred times ``TOLERANCE``) is not, and then no layer runs on oneDNN."""
    import torch

    model = ModelHost(tiny_model_dir, "fp32").model
    real = packed_linear._packed_forward
    monkeypatch.setattr(packed_linear, "_packed_forward",
                        lambda weight, bias, x: torch.nextafter(real(weight, bias, x), torch.tensor(1e9)))
    with packed_linear.packed_linears(model, rows=4) as packed:
        assert packed == len(packed_linear.packable_layers(model))
    monkeypatch.setattr(packed_linear, "_packed_forward",
                        lambda weight, bias, x: (out := real(weight, bias, x)) + 1e-3 * out.abs().max())
    with packed_linear.packed_linears(model, rows=4) as packed:
        assert packed == 0


@pytest.fixture(scope="module")
def adapters_for_packing(tiny_model_dir, tmp_path_factory):
    from test_modelhost import random_adapter

    out = tmp_path_factory.mktemp("packing-adapters")
    return [random_adapter(tiny_model_dir, out / f"a{i}", seed=i) for i in range(2)]

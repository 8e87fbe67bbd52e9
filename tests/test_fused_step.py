"""thinktune.generation.fused_step: a decode step in half the ops, computing what the model's forward does.

The reference is transformers' own forward of the same model (the engine's other path), run on
the same requests: rows entering at different times (different columns and windows), the base
alone, one adapter, two adapters in one batch, and an adapter on some of a stack's members only.
bf16: the same bits. fp32: the same bits on the CPUs measured (the stacked product's sums are
the separate products' sums); the test allows 1e-6 of the largest logit, fp32 rounding of
another summation order, should a BLAS block a stacked product differently.
"""

from __future__ import annotations

from unittest import mock

import pytest

from perf._gpu_checks import RecordingChooser  # greedy, keeping the logits of every new token
from test_modelhost import TARGETS, random_adapter
from thinktune.generation import engine as engine_module
from thinktune.generation.engine import DecodeEngine, Request
from thinktune.generation.fused_step import fusable, fused_step
from thinktune.models.host import ModelHost

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPTS = [[3, 5, 7, 9, 11, 2, 4], [6, 8], [10, 12, 14, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [7, 7, 7]]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """Two adapters on the study's seven targets, and one on q, v and up only (stacks half adapted)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    import torch

    root = tmp_path_factory.mktemp("fused-adapters")
    full = [random_adapter(tiny_model_dir, root / f"full-{i}", seed=i) for i in (1, 2)]
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    partial = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                                               init_lora_weights=False))
    partial.save_pretrained(root / "partial")
    return {"full": full, "partial": root / "partial"}


def decode(model, adapters_per_request: list[int], fused: bool):
    """(tokens, logits [steps, vocab] per request, stats): 3 slots for 5 requests, so rows enter
    as others leave and decode at different columns in one step."""
    import torch

    engine = DecodeEngine(model, slots=3, capacity=40, mode="eager")
    chooser = RecordingChooser()
    requests = [Request(p, key=i, adapter=a) for i, (p, a) in enumerate(zip(PROMPTS, adapters_per_request, strict=True))]
    off = mock.patch.object(engine_module, "fusable", return_value="turned off by the test")
    with off if not fused else mock.MagicMock():
        done, stats = engine.run(requests, chooser, stop_ids=set(), max_new_tokens=9)
    return [c.token_ids for c in done], [torch.stack(chooser.seen[i]).float() for i in range(len(PROMPTS))], stats


def assert_same(fused_run, reference_run, precision: str) -> None:
    import torch

    tokens, logits, stats = fused_run
    ref_tokens, ref_logits, ref_stats = reference_run
    assert stats.decode_forward == "fused"
    assert ref_stats.decode_forward == "the model's own: turned off by the test"
    assert tokens == ref_tokens
    for got, want in zip(logits, ref_logits, strict=True):
        if precision == "bf16":
            assert torch.equal(got, want)
        else:
            assert (got - want).abs().max() <= 1e-6 * want.abs().max()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("case", ["base", "one adapter", "two adapters in one batch", "adapter on some members"])
def test_fused_step_computes_what_the_models_forward_does(tiny_model_dir, adapters, precision, case):
    host = ModelHost(tiny_model_dir, precision)
    entries, rows = {"base": ([None], [0] * 5), "one adapter": (adapters["full"][:1], [0] * 5),
                     "two adapters in one batch": (adapters["full"], [0, 1, 1, 0, 1]),
                     "adapter on some members": ([adapters["partial"]], [0] * 5)}[case]
    with host.adapted_set(entries) as model:
        reference = decode(model, rows, fused=False)
        assert_same(decode(model, rows, fused=True), reference, precision)


@pytest.fixture(scope="module")
def wide_model(tiny_model_dir, tmp_path_factory):
    """One decoder layer at the 0.5B's widths (hidden 896, 14 query and 2 key/value heads,
    intermediate 4,864) and an r-16 adapter on the study's seven targets: where CPU BLAS picks
    its kernels by shape, as the tiny model's 32-wide layers never show."""
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("wide")
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.update({"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 1, "num_attention_heads": 14,
                   "num_key_value_heads": 2, "head_dim": 64, "layer_types": ["full_attention"]})
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(root / "base")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, root / "base" / name)
    model = Qwen2ForCausalLM.from_pretrained(root / "base", dtype=torch.float32)
    adapted = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, init_lora_weights=False))
    adapted.save_pretrained(root / "adapter")
    return root / "base", root / "adapter"


@pytest.mark.parametrize("rows", [1, 2, 3, 5])
def test_bf16_engine_equals_peft_at_the_05bs_widths_for_few_rows(wide_model, rows):
    """PEFT's unmerged model and the fused step with stacked adapters, decoded by the same engine:
    the same bits at every decode step, also at one to three rows, where a CPU product of another
    layout (``x @ A.T`` instead of ``F.linear(x, A)``) or a block-diagonal ``B`` at one row sums
    in another order."""
    import torch
    from peft import PeftModel

    base_dir, adapter = wide_model
    prompts = [[(7 * i + 3 * j) % 300 + 5 for j in range(6)] for i in range(rows)]  # one length: the same prefill

    def run(model):
        engine = DecodeEngine(model, slots=rows, capacity=32, mode="eager")
        chooser = RecordingChooser()
        done, stats = engine.run([Request(p, key=i) for i, p in enumerate(prompts)], chooser, stop_ids=set(),
                                 max_new_tokens=8)
        return [c.token_ids for c in done], [torch.stack(chooser.seen[i]) for i in range(rows)], stats

    host = ModelHost(base_dir, "bf16")
    with host.adapted(adapter) as model:
        tokens, logits, stats = run(model)
    assert stats.decode_forward == "fused"
    reference = PeftModel.from_pretrained(ModelHost(base_dir, "bf16").model, adapter).eval()
    ref_tokens, ref_logits, ref_stats = run(reference)
    assert ref_stats.decode_forward.startswith("the model's own")
    assert tokens == ref_tokens
    for got, want in zip(logits, ref_logits, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 12])
def test_stacked_deltas_are_pefts_bits_at_the_05bs_widths(wide_model, rows):
    """Each layer's fp32 LoRA delta from the stacked adapters equals PEFT's own ``lora_B(lora_A(x))
    * scaling`` bit for bit, before any rounding to bf16 could hide a difference (one flipped
    bf16 rounding in a 24-layer model changes most later logits), at the row counts of a decode
    step's tail."""
    import torch
    from peft import PeftModel

    from thinktune.models.lora import lora_of

    base_dir, adapter = wide_model
    host = ModelHost(base_dir, "bf16")
    reference = PeftModel.from_pretrained(ModelHost(base_dir, "bf16").model, adapter).eval()
    generator = torch.Generator().manual_seed(rows)
    with host.adapted(adapter) as model, torch.inference_mode():
        for (parent, members), group in lora_of(model).groups.items():
            x = torch.randn(rows, 1, model.get_submodule(f"{parent}.{members[0]}").in_features,
                            generator=generator).to(torch.bfloat16)
            whole, parts = group.deltas(group.project(x))
            for member, part in zip(members, parts, strict=True):
                layer = reference.base_model.model.get_submodule(f"{parent}.{member}")
                want = layer.lora_B["default"](layer.lora_A["default"](x.float())) * layer.scaling["default"]
                assert torch.equal(part, want), (parent, member, rows, float((part - want).abs().max()))


def test_stacked_weights_are_the_modules_own_and_restacked_when_replaced(tiny_model_dir):
    """The stacks hold the modules' weights (views, no second copy); a module given a new weight
    gets a new stack, so the fused step never decodes with weights the model no longer has."""
    import torch

    host = ModelHost(tiny_model_dir, "fp32")
    model = host.model
    step = fused_step(model)
    attn = model.model.layers[0].self_attn
    stack = step.layers[0][1]
    assert attn.k_proj.weight.untyped_storage().data_ptr() == stack.weight.untyped_storage().data_ptr()
    assert torch.equal(stack.weight[attn.q_proj.out_features:][:attn.k_proj.out_features], attn.k_proj.weight)
    assert fused_step(model) is step

    attn.k_proj.weight = torch.nn.Parameter(attn.k_proj.weight.detach() * 2, requires_grad=False)
    restacked = fused_step(model)
    assert restacked is not step
    assert torch.equal(restacked.layers[0][1].weight[attn.q_proj.out_features:][:attn.k_proj.out_features],
                       attn.k_proj.weight)
    with host.adapted(None):
        assert_same(decode(model, [0] * 5, fused=True), decode(model, [0] * 5, fused=False), "fp32")


def test_the_engine_runs_the_models_forward_where_the_step_would_differ(tiny_model_dir, adapters):
    """PEFT's layers in place, a hook of someone else's, or another architecture: the engine runs
    the model's own forward and records why."""
    import torch
    from peft import PeftModel

    host = ModelHost(tiny_model_dir, "fp32")
    model = host.model
    assert fusable(model) is None

    seen = []
    handle = model.model.layers[1].mlp.up_proj.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    assert "not plain linear layers" in fusable(model)
    tokens, _, stats = decode(model, [0] * 5, fused=True)
    assert stats.decode_forward.startswith("the model's own: mlp projections")
    assert len(seen) > len(PROMPTS)  # the hook ran at every decode step
    handle.remove()

    wrapped = PeftModel.from_pretrained(model, adapters["full"][0], is_trainable=False).eval()
    assert "PEFT" in fusable(wrapped) and "not plain linear layers" in fusable(model)
    with torch.inference_mode():
        _, _, stats = decode(model, [0] * 5, fused=True)
    assert stats.decode_forward.startswith("the model's own")
    wrapped.unload()
    assert fusable(model) is None

    with mock.patch.object(model.config, "model_type", "gemma"):
        assert "model type 'gemma'" in fusable(model)


def test_the_study_targets_are_what_the_stacks_cover():
    """The stacks are the LoRA groups of shared input: q|k|v and gate|up, the study's targets."""
    from thinktune.generation.fused_step import SINGLES, STACKS
    from thinktune.models.lora import SHARED_INPUT

    assert [names for _, names in STACKS] == [tuple(g) for g in SHARED_INPUT]
    assert sorted([n for _, names in STACKS for n in names] + [n for _, n in SINGLES]) == sorted(TARGETS)

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


def decode(model, adapters_per_request: list[int], fused: bool, slots: int = 3, mode: str = "eager",
           prompts: list[list[int]] = PROMPTS, new_tokens: int = 9, capacity: int = 40, columns: set | None = None,
           stop_ids: frozenset = frozenset()):
    """(tokens, logits [steps, vocab] per request, stats): by default 3 slots for 5 requests, the
    cache as tight as the longest prompt allows, so rows enter as others leave and decode at
    different columns in one step (``columns`` collects how many distinct ones each step had)."""
    import torch

    from thinktune.generation.fused_step import FusedStep

    engine = DecodeEngine(model, slots=slots, capacity=capacity, mode=mode)
    chooser = RecordingChooser()
    requests = [Request(p, key=i, adapter=a) for i, (p, a) in enumerate(zip(prompts, adapters_per_request, strict=True))]
    off = mock.patch.object(engine_module, "fusable", return_value="turned off by the test")
    step = FusedStep.__call__

    def counting(self, input_ids, position_ids, mask, cache, lora):
        columns.add(int(cache.column[:input_ids.shape[0]].unique().numel()))
        return step(self, input_ids, position_ids, mask, cache, lora)

    spy = mock.patch.object(FusedStep, "__call__", counting) if columns is not None else mock.MagicMock()
    with (off if not fused else mock.MagicMock()), spy:
        done, stats = engine.run(requests, chooser, stop_ids=set(stop_ids), max_new_tokens=new_tokens)
    return [c.token_ids for c in done], [torch.stack(chooser.seen[i]).float() for i in range(len(prompts))], stats


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
        # a stop token that ends the first answer early: its slot refills while the others run on
        stop = frozenset({decode(model, rows, fused=False)[0][0][2]})
        tight = max(map(len, PROMPTS)) + 9  # a late prompt goes left of the running rows' columns
        reference = decode(model, rows, fused=False, stop_ids=stop, capacity=tight)
        columns: set = set()
        assert_same(decode(model, rows, fused=True, columns=columns, stop_ids=stop, capacity=tight), reference,
                    precision)
        assert max(columns) > 1  # some steps decoded rows at different columns
        if case == "adapter on some members":  # one row: one product per stacked member
            assert_same(decode(model, rows, fused=True, slots=1), decode(model, rows, fused=False, slots=1), precision)


def test_fused_step_in_padded_buckets_past_the_first_window(tiny_model_dir):
    """The padded step a CUDA graph captures (``buckets``, run eagerly on a CPU): its padded rows
    keep the columns of rows that left, which can lie past the attended window's bucket once the
    batch refills; their writes stay inside the cache, as the model's own forward keeps them."""
    host = ModelHost(tiny_model_dir, "fp32")
    prompts = [[3 + i, 5, 7 + i] for i in range(7)]
    with host.adapted(None) as model:
        args = dict(slots=4, mode="buckets", prompts=prompts, new_tokens=600, capacity=620)
        assert_same(decode(model, [0] * 7, fused=True, **args), decode(model, [0] * 7, fused=False, **args), "fp32")


@pytest.mark.parametrize("variant", [{"num_key_value_heads": 4, "head_dim": 16}, {"tie_word_embeddings": True}])
def test_fused_step_on_other_qwen2_shapes(tiny_model_dir, tmp_path, variant):
    """One key/value head per query head with a head width other than hidden / heads, and tied
    embeddings: the same bits as the model's own forward."""
    import shutil

    import torch
    from transformers import AutoConfig, Qwen2ForCausalLM

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.update(variant)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, tmp_path / name)
    host = ModelHost(tmp_path, "bf16")
    assert fusable(host.model) is None
    with host.adapted(None) as model:
        assert_same(decode(model, [0] * 5, fused=True), decode(model, [0] * 5, fused=False), "bf16")


def test_stacked_weights_are_the_modules_own_and_restacked_when_replaced(tiny_model_dir):
    """The stacks hold the modules' weights (views, no second copy); a module given a new weight
    gets a new stack, so the fused step never decodes with weights the model no longer has."""
    import torch

    host = ModelHost(tiny_model_dir, "fp32")
    model = host.model
    step = fused_step(model)
    attn = model.model.layers[0].self_attn
    stack = step.layers[0][1]["self_attn"]
    assert attn.k_proj.weight.untyped_storage().data_ptr() == stack.weight.untyped_storage().data_ptr()
    assert torch.equal(stack.weight[attn.q_proj.out_features:][:attn.k_proj.out_features], attn.k_proj.weight)
    assert fused_step(model) is step

    attn.k_proj.weight = torch.nn.Parameter(attn.k_proj.weight.detach() * 2, requires_grad=False)
    restacked = fused_step(model)
    assert restacked is not step
    assert torch.equal(restacked.layers[0][1]["self_attn"].weight[attn.q_proj.out_features:][:attn.k_proj.out_features],
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
    model.set_attn_implementation("eager")
    assert "attention implementation 'eager'" in fusable(model)
    model.set_attn_implementation("sdpa")
    model.train()
    assert "training mode" in fusable(model)
    model.eval()
    norm = model.model.layers[0].input_layernorm
    norm.__class__ = type("OneMinusWeightRMSNorm", (type(norm),), {})  # a subclass computes its own way
    assert "other classes" in fusable(model)
    norm.__class__ = type(norm).__mro__[1]
    assert fusable(model) is None


def test_the_study_targets_are_what_the_stacks_cover():
    """The stacks are the LoRA groups of shared input: q|k|v and gate|up, the study's targets."""
    from thinktune.generation.fused_step import SINGLES, STACKS
    from thinktune.models.lora import SHARED_INPUT

    assert [names for _, names in STACKS] == [tuple(g) for g in SHARED_INPUT]
    assert sorted([n for _, names in STACKS for n in names] + [n for _, n in SINGLES]) == sorted(TARGETS)

"""thinktune.models.host: each checkpoint is evaluated as trained.

The host applies a LoRA adapter unmerged (PEFT's layers add ``scale * B(A(x))`` at run time),
which is the function the training optimised. The references are PEFT's own unmerged
forward, loaded separately, and a plain fp32 calculation of the delta; the negative control
is what the evaluation did before: a bf16 merge, which drops much of an adapter trained at
the study's learning rate.
"""

from __future__ import annotations

import json

import pytest

from perf._gpu_checks import RecordingChooser  # greedy, keeping the logits of every new token
from thinktune.models.host import ModelHost

pytestmark = pytest.mark.usefixtures("one_thread")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_adapter(base_dir, out_dir, seed: int, r: int = 4):
    """A LoRA adapter of the study's targets whose B matrices are not zero (a fresh one is a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS,
                                                  init_lora_weights=False))
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return [random_adapter(tiny_model_dir, root / f"checkpoint-{i}", seed=i) for i in (1, 2)]


@pytest.fixture(scope="module")
def paper_lr_adapter(tiny_model_dir, tmp_path_factory):
    """An adapter really trained in bf16 at the study's lr (5e-5), r 16, its 7 targets: 16 steps."""
    from test_training_run import write_chats

    from thinktune.config.params import LoraParams, TrainParams
    from thinktune.training import list_checkpoints, train_lora

    root = tmp_path_factory.mktemp("paper-lr")
    train_file, valid_file = write_chats(root / "data", n=32)
    lora = LoraParams(r=16, alpha=32, dropout=0.05, target_modules=TARGETS)
    train = TrainParams(epochs=1, learning_rate=5e-5, lr_scheduler="linear", warmup_ratio=0.0, weight_decay=0.0,
                        effective_batch_size=2, gradient_checkpointing=False, precision="bf16", save_steps=16,
                        logging_steps=1, seeds=[0], micro_batch_tokens=512)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("THINKTUNE_CACHE", str(root / "cache"))
        train_lora(tiny_model_dir, train_file, valid_file, root / "models" / "deep", root / "dvclive", lora, train,
                   max_length=256, base_model_name="tiny-random-qwen2", run_name="deep",
                   metrics_file=root / "metrics.json")
    return list_checkpoints(root / "models" / "deep")[-1]


def logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


def peft_unmerged(base_dir, adapter, dtype):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=getattr(torch, dtype))
    return PeftModel.from_pretrained(base, adapter).eval()


def engine_logits(model, prompts, new_tokens):
    """Per prompt: (generated ids, logits [new_tokens, vocab]) from the decode engine's batch."""
    import torch

    from thinktune.generation.engine import DecodeEngine, Request

    engine = DecodeEngine(model, slots=len(prompts), capacity=128, mode="eager")
    chooser = RecordingChooser()
    done, _ = engine.run([Request(p, key=i) for i, p in enumerate(prompts)], chooser, stop_ids=set(),
                         max_new_tokens=new_tokens)
    return [(c.token_ids, torch.stack(chooser.seen[i]).float()) for i, c in enumerate(done)]


def changed_fraction(got, want) -> float:
    """The share of logits that differ at all."""
    return float((got != want).float().mean())


def same_prefix_rows(run_a, run_b):
    """Both runs' logits for the steps whose prefixes agree: up to and including the first step
    where the two chose different tokens (teacher forcing would need one of them to be right)."""
    import torch

    rows_a, rows_b = [], []
    for (tokens_a, logits_a), (tokens_b, logits_b) in zip(run_a, run_b, strict=True):
        agree = next((i for i, (x, y) in enumerate(zip(tokens_a, tokens_b, strict=True)) if x != y), len(tokens_a) - 1)
        rows_a.append(logits_a[:agree + 1])
        rows_b.append(logits_b[:agree + 1])
    return torch.cat(rows_a), torch.cat(rows_b)


def test_bf16_engine_answers_as_peft_unmerged_where_a_bf16_merge_loses_the_delta(tiny_model_dir, paper_lr_adapter,
                                                                                  cpu_kind):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    prompts = [torch.randint(0, 300, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (9, 14, 20)]
    host = ModelHost(tiny_model_dir, "bf16")
    with host.adapted(paper_lr_adapter) as model:
        produced = engine_logits(model, prompts, new_tokens=6)

    # The reference: PEFT's own unmerged model, loaded on its own and decoded by the same engine in
    # the same batch shapes, so bf16 rounds exactly as it does for the host's model on any CPU. A
    # host that applied the adapter any other way (merged, or scaled wrongly) gives other logits.
    reference = peft_unmerged(tiny_model_dir, paper_lr_adapter, "bfloat16")
    expected = engine_logits(reference, prompts, new_tokens=6)
    assert [tokens for tokens, _ in produced] == [tokens for tokens, _ in expected]
    got, want = same_prefix_rows(produced, expected)
    assert changed_fraction(got, want) == 0, (cpu_kind, changed_fraction(got, want))

    # The negative control: PEFT's bf16 merge of the same adapter, decoded the same way, changes
    # most logits. Measured over these rows: 0.578 with AVX512-BF16 (2-core AMD EPYC), 0.579 on the
    # same CPU with the AVX-512 flags hidden and torch's and oneDNN's kernels held to AVX2: nearly
    # twice the bound, which a host that merged (0.578) fails and the unmerged one (0) passes.
    merged = peft_unmerged(tiny_model_dir, paper_lr_adapter, "bfloat16").merge_and_unload()
    merged_got, merged_want = same_prefix_rows(engine_logits(merged, prompts, new_tokens=6), expected)
    assert changed_fraction(merged_got, merged_want) > 0.3, (cpu_kind, changed_fraction(merged_got, merged_want))

    # And the engine answers as PEFT's whole-sequence forward does, teacher-forced on the engine's
    # tokens (row t predicts generated token t), to within bf16 rounding: the engine decodes one
    # token at a time against a KV cache, so a few logits round differently. One bf16 step is at
    # most 2e-3 below |0.5| and 0.8% above it: a flipped last bit passes, a changed function not.
    # Measured (2-core AMD EPYC): largest difference 2e-3 (one bf16 step), using at most 0.32 of
    # the allowed difference with AVX512-BF16 and 0.47 with AVX-512 hidden (torch emulates bf16
    # and rounds more rows differently): 2.1x margin or more; the adapter moves logits by ~0.6.
    for prompt, (generated, engine_rows) in zip(prompts, produced, strict=True):
        ids = torch.tensor([prompt + generated[:-1]])
        torch.testing.assert_close(engine_rows, logits(reference, ids)[0, len(prompt) - 1:], rtol=1.6e-2, atol=2e-3)

    # Why, in weight space, by plain fp32 arithmetic: the delta B @ A * scale added to a bf16
    # weight in bf16 is not applied at all for many entries.
    config = json.loads((paper_lr_adapter / "adapter_config.json").read_text())
    weights = load_file(paper_lr_adapter / "adapter_model.safetensors")
    state = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).state_dict()
    dropped = total = 0
    for key in (k for k in weights if ".lora_A." in k):
        delta = weights[key.replace("lora_A", "lora_B")].float() @ weights[key].float() * config["lora_alpha"] / config["r"]
        weight = state[key.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")].float()
        applied = (weight + delta).to(torch.bfloat16).float() - weight
        dropped += int(((applied == 0) & (delta != 0)).sum())
        total += delta.numel()
    # Measured 10.2% after these 16 steps, on both CPU kinds (plain fp32 arithmetic and a bf16
    # cast): twice the bound, and a weight-space loss of even 5% of the delta is the defect.
    assert dropped / total > 0.05, dropped / total


def test_adapters_apply_as_peft_and_the_base_comes_back_unchanged(tiny_model_dir, adapters):
    import torch

    host = ModelHost(tiny_model_dir, "fp32")
    before = {n: p.detach().clone() for n, p in host.model.named_parameters()}
    flags = {n: p.requires_grad for n, p in host.model.named_parameters()}
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    base_logits = logits(host.model, ids)

    lora_pointers = None
    for adapter in adapters:
        reference = peft_unmerged(tiny_model_dir, adapter, "float32")
        with host.adapted(adapter) as model:
            applied = logits(model, ids)
            # PEFT freezes the base; the flags must be the loaded ones while generating (frozen
            # parameters make the CPU forward much slower).
            assert {n.replace(".base_layer", ""): p.requires_grad for n, p in model.named_parameters()
                    if "lora_" not in n} == flags
            pointers = {n: p.data_ptr() for n, p in model.named_parameters()}
        # fp32, the same layers as PEFT's: measured identical (difference 0) natively and with
        # AVX-512 hidden (2-core AMD EPYC); the adapter itself moves logits by 0.63 to 0.65, so any
        # other way of applying it is thousands of times outside 1e-5.
        torch.testing.assert_close(applied, logits(reference, ids), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(applied, base_logits, atol=1e-3)  # the adapter did change the model
        # The second checkpoint goes into the first one's tensors: CUDA graphs stay valid.
        assert lora_pointers is None or pointers == lora_pointers
        lora_pointers = pointers
        for name, param in host.model.named_parameters():
            if "lora_" not in name:
                assert torch.equal(param, before[name.replace(".base_layer", "")]), name  # never merged into

    with host.adapted(None) as model:  # the base again: every adapter switched off
        torch.testing.assert_close(logits(model, ids), base_logits, rtol=0, atol=0)


def test_an_adapter_of_another_shape_rewraps_the_base(tiny_model_dir, adapters, tmp_path):
    import torch

    other = random_adapter(tiny_model_dir, tmp_path / "r8", seed=3, r=8)
    host = ModelHost(tiny_model_dir, "fp32")
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    for adapter in (adapters[0], other, adapters[1]):  # measured identical to PEFT's (fp32), as above
        with host.adapted(adapter) as model:
            torch.testing.assert_close(logits(model, ids), logits(peft_unmerged(tiny_model_dir, adapter, "float32"), ids),
                                       rtol=1e-5, atol=1e-5)


def test_no_adapter_is_the_base_itself(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    host = ModelHost(tiny_model_dir, "fp32")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(2))
    with host.adapted(None) as model:
        assert model is host.model  # no copy: the engine's CUDA graphs read these tensors
        assert next(model.parameters()).dtype == torch.float32
        torch.testing.assert_close(logits(model, ids), logits(base, ids), rtol=0, atol=0)


@pytest.mark.parametrize("blocks", [False, True], ids=["one-op", "row-blocks"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_several_adapters_in_one_batch_each_row_as_peft_unmerged(tiny_model_dir, adapters, precision, blocks,
                                                                  cpu_kind, monkeypatch):
    """A run's checkpoints share a batch (thinktune.models.lora): row i applies only its own
    adapter, as PEFT's own unmerged model of that adapter does, and a base row none. Both ways of
    adding the delta: in one op (decode steps, GPUs) and by row blocks of each member's own part
    of ``B`` (a CPU prefill; forced here with blocks of 5 rows, which do not divide the 36)."""
    import torch
    from transformers import AutoModelForCausalLM

    from thinktune.models import lora

    dtype = {"fp32": "float32", "bf16": "bfloat16"}[precision]
    host = ModelHost(tiny_model_dir, precision)
    ids = torch.randint(0, 300, (3, 12), generator=torch.Generator().manual_seed(3))
    widths = {m.out_features for m in host.model.modules() if isinstance(m, torch.nn.Linear)}
    if blocks:  # every layer's delta above the bound: 5 rows of the widest layer
        monkeypatch.setattr(lora, "CHUNK_BYTES", 4 * 5 * max(widths))
    block_adds = []
    monkeypatch.setattr(lora._Group, "_add_in_blocks", lambda self, out, member, add=lora._Group._add_in_blocks:
                        block_adds.append(out.shape) or add(self, out, member))
    with host.adapted_set([adapters[0], None, adapters[1]]) as model:
        model._thinktune_lora.select_rows([0, 1, 2])  # what the decode engine does before a forward
        together = logits(model, ids)
    assert bool(block_adds) == blocks, len(block_adds)
    references = [peft_unmerged(tiny_model_dir, adapters[0], dtype),
                  AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=getattr(torch, dtype)).eval(),
                  peft_unmerged(tiny_model_dir, adapters[1], dtype)]
    # The bounds of the tests above: fp32 1e-5 (measured 4.6e-7 here: only the stacked products'
    # sum order differs), bf16 exact (measured identical, with and without AVX-512: the fp32
    # delta is added and rounded once, as PEFT does).
    tolerance = {"fp32": 1e-5, "bf16": 0.0}[precision]
    for row, reference in enumerate(references):
        torch.testing.assert_close(together[row:row + 1], logits(reference, ids[row:row + 1]),
                                   rtol=tolerance, atol=tolerance, msg=lambda m, row=row: f"row {row}: {m} ({cpu_kind})")
    if precision == "bf16":  # the negative control: a bf16 merge of the same adapter is outside that bound
        merged = peft_unmerged(tiny_model_dir, adapters[0], dtype).merge_and_unload()
        fraction = changed_fraction(logits(merged, ids[:1]), logits(references[0], ids[:1]))
        # Measured 0.827 of the logits changed, with and without AVX-512 (2-core AMD EPYC):
        # far outside "exact", and more than twice the 0.3 asked for.
        assert fraction > 0.3, (cpu_kind, fraction)

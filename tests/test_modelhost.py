"""thinktune.modelhost: an adapter merged into the loaded base gives PEFT's outputs, and taking
it out leaves the base exactly as loaded (weights bit for bit, flags, no PEFT attributes)."""

from __future__ import annotations

import pytest

from thinktune.modelhost import ModelHost

pytestmark = pytest.mark.usefixtures("one_thread")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_adapter(base_dir, out_dir, seed: int):
    """A LoRA adapter of the study's shape whose B matrices are not zero (a fresh one is a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS,
                                                  init_lora_weights=False))
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return [random_adapter(tiny_model_dir, root / f"checkpoint-{i}", seed=i) for i in (1, 2)]


def logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_merged_model_answers_as_peft_and_the_base_comes_back_unchanged(tiny_model_dir, adapters):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    host = ModelHost(tiny_model_dir, "fp32")
    before = {n: p.detach().clone() for n, p in host.model.named_parameters()}
    flags = {n: p.requires_grad for n, p in host.model.named_parameters()}
    pointers = {n: p.data_ptr() for n, p in host.model.named_parameters()}
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    base_logits = logits(host.model, ids)

    for adapter in adapters:
        reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir,
                                                                                  dtype=torch.float32), adapter).eval()
        with host.merged(adapter) as model:
            merged = logits(model, ids)
            # PEFT freezes the base; the flags must be the loaded ones while generating (frozen
            # parameters make the CPU forward much slower) and afterwards.
            assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
        torch.testing.assert_close(merged, logits(reference, ids), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(merged, base_logits, atol=1e-3)  # the adapter did change the model

        for name, param in host.model.named_parameters():
            assert torch.equal(param, before[name]), name  # bit for bit
            assert param.data_ptr() == pointers[name], name  # never moved: CUDA graphs stay valid
        assert {n: p.requires_grad for n, p in host.model.named_parameters()} == flags
        assert not hasattr(host.model, "peft_config")
        torch.testing.assert_close(logits(host.model, ids), base_logits, rtol=0, atol=0)


def test_no_adapter_is_the_base_itself(tiny_model_dir):
    host = ModelHost(tiny_model_dir, "fp32")
    with host.merged(None) as model:
        assert model is host.model

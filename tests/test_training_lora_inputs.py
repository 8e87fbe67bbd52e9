"""Training's LoRA layers take their input in the compute dtype: the same loss and gradients as
PEFT's own forward (which casts each input to the fp32 adapter first), without the fp32 copies.

Reference: the same trainer with PEFT's cast switched back on (``cast_input_dtype_enabled``,
PEFT's default) and torch's dropout of the fp32 copy, lora dropout 0.05 as params.yaml. The same
dropout masks on both sides: torch's ``bernoulli_`` draws after the same seed (``keep_mask`` is
pointed at torch's draw here; its own draw is tested in ``test_lora_dropout.py``). Under bf16 autocast ``lora_A``'s matmul runs in bf16 either way, a
bf16 -> fp32 -> bf16 round trip is exact and the dropout scales in fp32 as PEFT's does, so equality
is expected; the tolerance (1e-6 of the largest value) leaves room for a kernel that orders an
fp32 product differently. torch's own dropout of the bf16 input is not equal on a CPU (its scale
is rounded to bf16): loss 9e-6 relative, gradients 4.9e-3 of the largest apart. Measured on a 2-core AMD EPYC, with AVX512-BF16 and with the AVX-512
flags hidden and torch held to AVX2: loss and every gradient bit-identical on both.
"""

from __future__ import annotations

import pytest
import torch
from test_training_run import write_chats

from thinktune.config.params import LoraParams, TrainParams
from thinktune.training.batching import flatten
from thinktune.training.data import load_tokenized

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-6
LORA = LoraParams(r=4, alpha=8, dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "down_proj"])


def trainer_for(tiny_model_dir, tmp_path, precision: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thinktune.models.hardware import torch_dtype
    from thinktune.training.session import LoraTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    chats = load_tokenized(write_chats(tmp_path, n=4)[0], tokenizer, 256)
    train = TrainParams(epochs=1, learning_rate=1e-2, lr_scheduler="constant", warmup_ratio=0.0, weight_decay=0.0,
                        effective_batch_size=4,
                        gradient_checkpointing=True, precision=precision, save_steps=100, logging_steps=1, seeds=[0])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch_dtype(precision))
    trainer = LoraTrainer(model, LORA, train, total_steps=1, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():  # B != 0, so every adapter weight (A too) gets a gradient
        for name, p in trainer.peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return trainer, {k: v for k, v in flatten(chats, tokenizer.pad_token_id).items()}


def lora_layers(trainer):
    from peft.tuners.lora import LoraLayer

    return [m for m in trainer.peft_model.modules() if isinstance(m, LoraLayer)]


def restore_peft_forward(trainer) -> None:
    """PEFT's own LoRA forward: the input cast to the fp32 adapter, torch's dropout of that copy."""
    for layer in lora_layers(trainer):
        layer.cast_input_dtype_enabled = True
        for name, dropout in layer.lora_dropout.items():
            if not isinstance(dropout, torch.nn.Identity):
                layer.lora_dropout[name] = torch.nn.Dropout(dropout.p)


@pytest.fixture(autouse=True)
def torch_masks(monkeypatch):
    """LoraDropout draws its masks as torch's dropout does, so both sides drop the same elements."""
    from thinktune.training import lora_dropout

    monkeypatch.setattr(lora_dropout, "keep_mask", lora_dropout.torch_keep_mask)


def loss_and_grads(trainer, batch):
    trainer.model.train()
    torch.manual_seed(1234)  # the same dropout masks on both sides
    loss, _ = trainer.model(**batch)
    loss.backward()
    grads = {n: p.grad.float().clone() for n, p in trainer.peft_model.named_parameters() if p.requires_grad}
    trainer.optimizer.zero_grad(set_to_none=True)
    return loss.detach().float(), grads


def test_bf16_training_skips_the_fp32_input_casts_and_keeps_the_numbers(tiny_model_dir, tmp_path):
    trainer, batch = trainer_for(tiny_model_dir, tmp_path, "bf16")
    layers = lora_layers(trainer)
    assert layers and not any(layer.cast_input_dtype_enabled for layer in layers)
    loss, grads = loss_and_grads(trainer, batch)
    restore_peft_forward(trainer)
    want_loss, want_grads = loss_and_grads(trainer, batch)
    assert abs(float(loss - want_loss)) <= TOL * abs(float(want_loss))
    assert grads.keys() == want_grads.keys() and len(grads) == 2 * len(layers)
    scale = max(float(g.abs().max()) for g in want_grads.values())
    worst = max(float((grads[k] - want_grads[k]).abs().max()) for k in grads)
    assert scale > 0 and worst <= TOL * scale, (worst, scale)


def fp32_copies_of_lora_inputs(trainer, batch) -> int:
    """Elements of fp32 tensors cast from bf16 tensors as wide as a LoRA input (hidden or MLP width)
    in one forward and backward (the norms' own fp32 upcasts are counted too, on both sides)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        elements = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            source = args[0] if args else None
            if (func in (torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype) and isinstance(source, torch.Tensor)
                    and source.dtype == torch.bfloat16 and out.dtype == torch.float32 and source.dim() >= 2
                    and source.shape[-1] in widths):
                Count.elements += out.numel()
            return out

    config = trainer.peft_model.config
    widths = {config.hidden_size, config.intermediate_size}
    with Count():
        loss_and_grads(trainer, batch)
    return Count.elements


def test_the_fp32_copies_are_gone(tiny_model_dir, tmp_path):
    trainer, batch = trainer_for(tiny_model_dir, tmp_path, "bf16")
    skipped = fp32_copies_of_lora_inputs(trainer, batch)
    restore_peft_forward(trainer)
    peft_default = fp32_copies_of_lora_inputs(trainer, batch)
    tokens, config = batch["input_ids"].numel(), trainer.peft_model.config
    # PEFT copies each LoRA input to fp32 in the forward and again in the checkpoint's recompute,
    # and the backward copies its bf16 gradient to fp32 (autocast's cast of the fp32 dropout
    # output, undone): q, k and v each the layer's input (hidden wide), down_proj the MLP's
    per_layer = 3 * tokens * (3 * config.hidden_size + config.intermediate_size)
    assert peft_default - skipped == config.num_hidden_layers * per_layer, (skipped, peft_default)


def test_fp32_training_keeps_the_cast_and_the_numbers(tiny_model_dir, tmp_path):
    from thinktune.training.lora_dropout import LoraDropout

    trainer, batch = trainer_for(tiny_model_dir, tmp_path, "fp32")
    layers = lora_layers(trainer)
    assert all(layer.cast_input_dtype_enabled for layer in layers)  # no autocast: nothing to skip
    assert all(isinstance(d, LoraDropout) for layer in layers for d in layer.lora_dropout.values())
    loss, grads = loss_and_grads(trainer, batch)
    restore_peft_forward(trainer)  # torch's own F.dropout
    want_loss, want_grads = loss_and_grads(trainer, batch)
    assert torch.equal(loss, want_loss)
    assert all(torch.equal(grads[k], want_grads[k]) for k in want_grads), "fp32 dropout is F.dropout's product"

"""Padding-free micro-batches and the chunked loss compute what a padded batch does.

Tolerance: the tiny model in fp32; per-chat losses agree within 1e-5 relative and gradients
within 1e-5 of the largest gradient entry. Measured on a 2-core AMD EPYC, with AVX512-BF16 and
with the AVX-512 flags hidden and torch's kernels held to AVX2: losses 8.2e-8 relative on both,
gradients 1.1e-7 / 5.7e-8 of the largest entry (float rounding of a different summation order,
the model is fp32 on both CPU kinds): about 90x inside the tolerance. A negative control shows
the comparison can fail: the same row without restarting positions lets chats attend to each
other and moves every later chat's loss by 3.8e-4 to 1.1e-3 relative, 38x the tolerance or more.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from thinktune.data.chat import training_messages
from thinktune.training import packed_attention
from thinktune.training.batching import flatten
from thinktune.training.data import IGNORE, tokenize_chat
from thinktune.training.loss import CausalLMLoss, chunked_linear_cross_entropy

RTOL = 1e-5


@pytest.fixture(scope="module")
def chats(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return [tokenize_chat(tokenizer, training_messages("SYS", f"problem {i} " + "x " * (5 * i),
                                                       "think " * (3 + 2 * i), "print(1)"), 4096)
            for i in range(4)]


def load(tiny_model_dir, attention):
    from transformers import AutoModelForCausalLM

    if attention == packed_attention.NAME:
        packed_attention.register()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attention)


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def flattened_per_chat(model, chats, restart_positions=True):
    """Loss and gradient of each chat, computed inside one flattened row of all of them."""
    loss_module = CausalLMLoss(model)
    row = flatten(chats)
    if not restart_positions:
        row["position_ids"] = torch.arange(row["input_ids"].shape[1])[None]
    losses, gradients, offset = [], [], 0
    for chat in chats:
        model.zero_grad()
        targets = torch.full_like(row["targets"], IGNORE)
        span = slice(offset, offset + chat.n_tokens)
        targets[0, span] = row["targets"][0, span]
        loss, count = loss_module(row["input_ids"], row["position_ids"], targets)
        assert int(count) == chat.n_targets
        loss.backward()
        losses.append(loss.item())
        gradients.append(grads(model))
        offset += chat.n_tokens
    return losses, gradients


def padded_per_chat(model, chats, pad_id):
    """The reference: a right-padded batch with an attention mask, transformers' own logits."""
    width = max(c.n_tokens for c in chats)
    ids = torch.full((len(chats), width), pad_id)
    mask = torch.zeros((len(chats), width), dtype=torch.long)
    labels = torch.full((len(chats), width), IGNORE)
    for i, c in enumerate(chats):
        ids[i, :c.n_tokens], mask[i, :c.n_tokens], labels[i, :c.n_tokens] = (
            torch.tensor(c.input_ids), 1, torch.tensor(c.labels))
    losses, gradients = [], []
    for i in range(len(chats)):
        model.zero_grad()
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        loss = F.cross_entropy(logits[i, :-1].float(), labels[i, 1:], ignore_index=IGNORE, reduction="sum")
        loss.backward()
        losses.append(loss.item())
        gradients.append(grads(model))
    return losses, gradients


@pytest.mark.parametrize("attention", ["sdpa", "eager", packed_attention.NAME])
def test_flattened_batch_gives_the_padded_losses_and_gradients(tiny_model_dir, chats, attention):
    """Each attention the flattened row may run (CPU training runs ``sdpa_per_sequence``) against
    the padded batch, which even ``sdpa_per_sequence`` runs through transformers' own SDPA and mask."""
    model = load(tiny_model_dir, attention)
    flat_losses, flat_grads = flattened_per_chat(model, chats)
    pad_losses, pad_grads = padded_per_chat(model, chats, pad_id=0)
    assert flat_losses == pytest.approx(pad_losses, rel=RTOL)
    scale = max(g.abs().max() for g in pad_grads)
    for flat, pad in zip(flat_grads, pad_grads, strict=True):
        assert (flat - pad).abs().max() <= RTOL * scale

    # Chats seeing each other: every later chat's loss moves by more than 10x the tolerance
    # (measured 3.8e-4, 6.2e-4 and 1.1e-3 relative on both CPU kinds, at least 3.8x this bound).
    mixed_losses, _ = flattened_per_chat(model, chats, restart_positions=False)
    moved = [abs(m - p) / abs(p) for m, p in zip(mixed_losses[1:], pad_losses[1:], strict=True)]
    assert min(moved) > 10 * RTOL, moved


def test_chunked_loss_equals_the_full_cross_entropy():
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(50, 16)
    targets = torch.randint(0, 50, (37,))
    full = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    (full_grad,) = torch.autograd.grad(full, hidden)
    chunked = chunked_linear_cross_entropy(hidden, weight, targets, chunk_tokens=8)  # 5 chunks, the last short
    (chunked_grad,) = torch.autograd.grad(chunked, hidden)
    # fp32 on every CPU kind. Measured (2-core AMD EPYC, natively and with AVX-512 hidden, the same):
    # the loss identical; the gradient's largest difference 4.8e-7 on entries up to 4.4, 0.05 of
    # allclose's per-entry tolerance (atol 1e-6 + rtol 1e-5 x |entry|). A chunk dropped or counted
    # twice moves the sum of 37 token losses (about 10 each) by whole units.
    assert chunked.item() == pytest.approx(full.item(), rel=1e-6)
    assert torch.allclose(chunked_grad, full_grad, atol=1e-6)


def test_an_empty_micro_batch_has_zero_loss_and_reaches_every_adapter_weight(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load(tiny_model_dir, "sdpa"), LoraConfig(r=2, target_modules=["q_proj"]))
    loss, count = CausalLMLoss(model)(**flatten([]))
    loss.backward()
    assert loss.item() == 0 and int(count) == 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_sequence_starts_of_a_packed_row():
    from thinktune.training.packed_attention import sequence_starts

    row = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert sequence_starts(row).tolist() == [0, 3, 5, 9]
    assert sequence_starts(torch.arange(4)[None]).tolist() == [0, 4]


def test_cpu_training_attends_chat_by_chat(tiny_model_dir):
    """The trainer switches SDPA to the per-chat version, and its loss module tells it where chats start."""
    from transformers import AutoModelForCausalLM

    from thinktune.config.params import LoraParams, TrainParams
    from thinktune.training.session import LoraTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    train = TrainParams(epochs=1, learning_rate=1e-3, lr_scheduler="constant", warmup_ratio=0.0, weight_decay=0.0,
                        effective_batch_size=2, gradient_checkpointing=False, precision="fp32", seeds=[0],
                        save_steps=10, logging_steps=1)
    trainer = LoraTrainer(model, LoraParams(r=2, alpha=4, dropout=0.0, target_modules=["q_proj"]), train, 1)
    assert model.config._attn_implementation == packed_attention.NAME
    seen = []
    real = packed_attention.sdpa_per_sequence

    def spy(*args, cu_seq_lens_q=None, **kwargs):
        seen.append(None if cu_seq_lens_q is None else cu_seq_lens_q.tolist())
        return real(*args, cu_seq_lens_q=cu_seq_lens_q, **kwargs)

    from transformers import AttentionInterface

    AttentionInterface.register(packed_attention.NAME, spy)
    try:
        trainer.model(**flatten([_chat(5), _chat(3)]))
    finally:
        packed_attention.register()
    assert seen and all(s == [0, 5, 8] for s in seen), seen


def _chat(n: int):
    from thinktune.training.data import TokenizedChat

    return TokenizedChat(input_ids=list(range(1, n + 1)), labels=[IGNORE] + list(range(2, n + 1)))


def test_chat_by_chat_sdpa_only_where_it_is_the_same_attention(tiny_model_dir):
    """On a CPU with SDPA and full attention in every layer; not on a GPU (a host sync per layer),
    not with another attention, not where a sliding window lived in the mask."""
    model = load(tiny_model_dir, "sdpa")
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert packed_attention.applies(model, cpu) and not packed_attention.applies(model, gpu)
    assert not packed_attention.applies(load(tiny_model_dir, "eager"), cpu)
    model.config.use_sliding_window = True
    assert not packed_attention.applies(model, cpu)

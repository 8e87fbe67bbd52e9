"""The LoRA dropout's own masks (``thinktune.training.lora_dropout.keep_mask``): Bernoulli(1 - p)
draws, independent, reproducible from torch's seed, and replayed by the activation checkpoint's
recompute. Its arithmetic against PEFT's, given the same masks, is ``test_training_lora_inputs``.

The bounds are statistical: each count is tested against its binomial distribution with scipy's
exact test at a significance of 1e-6, so an unbiased generator fails one in a million runs of
one check, while a mask that keeps with probability p instead of 1 - p, or 1 - p off by 0.002
(a third of a 16-bit threshold's step would not show, 2**-17), fails every time at these sizes.
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binomtest

from thinktune.training.lora_dropout import LoraDropout, keep_mask

ALPHA = 1e-6
N = 1 << 21


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_masks_hold_zeros_and_ones_kept_with_probability_one_minus_p(dtype):
    torch.manual_seed(0)
    mask = keep_mask(torch.empty(2, N // 2, dtype=dtype), 0.95)
    assert mask.dtype == dtype and mask.shape == (2, N // 2)
    kept = int((mask == 1).sum())
    assert kept + int((mask == 0).sum()) == N
    assert binomtest(kept, N, 0.95).pvalue > ALPHA, kept / N
    assert binomtest(kept, N, 0.948).pvalue < ALPHA  # the test tells 0.2 points apart at this size


def test_elements_are_independent_within_and_across_masks():
    torch.manual_seed(1)
    like = torch.empty(N)
    first, second = keep_mask(like, 0.5).bool(), keep_mask(like, 0.5).bool()
    # Neighbours come from the same 64-bit word of the generator; a mask and the next from
    # consecutive seeds. Each pair is kept together a quarter of the time if independent.
    for a, b, what in ((first[0::2], first[1::2], "neighbours"), (first, second, "consecutive masks")):
        both = int((a & b).sum())
        assert binomtest(both, a.numel(), 0.25).pvalue > ALPHA, (what, both / a.numel())


def test_masks_follow_torch_seed():
    like = torch.empty(1000, dtype=torch.bfloat16)
    torch.manual_seed(7)
    a, b = keep_mask(like, 0.9), keep_mask(like, 0.9)
    torch.manual_seed(7)
    assert torch.equal(keep_mask(like, 0.9), a) and torch.equal(keep_mask(like, 0.9), b)
    assert not torch.equal(a, b)


def test_processes_seeded_alike_draw_masks_of_their_own(monkeypatch):
    """Data-parallel processes all run ``torch.manual_seed(train.seed)``: the rank keeps their masks apart."""
    from thinktune.training import lora_dropout

    like = torch.empty(4096)
    masks = []
    for rank in (0, 1):
        monkeypatch.setattr(lora_dropout, "process_rank", lambda rank=rank: rank)
        torch.manual_seed(11)
        masks.append(keep_mask(like, 0.5))
    assert not torch.equal(*masks)


def test_keep_probability_one_keeps_everything():
    assert torch.equal(keep_mask(torch.empty(64), 1.0), torch.ones(64))


def test_checkpoint_recompute_replays_the_mask():
    """Under non-reentrant activation checkpointing (how training runs) the backward recomputes
    the forward after restoring torch's RNG state: the gradient equals the one computed without
    checkpointing only if the recompute draws the forward's mask."""
    from torch.utils.checkpoint import checkpoint

    layer = torch.nn.Linear(64, 64)
    dropout = LoraDropout(0.3)

    def block(x):
        return layer(dropout(x)).tanh()

    x = torch.randn(512, 64)
    grads = []
    for checkpointed in (False, True):
        layer.zero_grad()
        torch.manual_seed(3)
        out = checkpoint(block, x, use_reentrant=False) if checkpointed else block(x)
        out.square().sum().backward()
        grads.append(layer.weight.grad.clone())
    assert torch.equal(grads[0], grads[1])


def test_dropout_is_off_in_eval_mode_and_scales_kept_elements():
    dropout = LoraDropout(0.05)
    x = torch.randn(4096)
    assert dropout.eval()(x) is x
    out = dropout.train()(x)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] * (1 / 0.95), rtol=1e-6, atol=0)

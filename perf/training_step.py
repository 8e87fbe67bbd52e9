"""What the CPU training step's dropout masks and per-chat attention save, each against what it replaced.

    python -m perf.training_step                       # the 0.5B's layer shapes, 4 layers, bf16
    python -m perf.training_step --precision fp32 --layers 24

Measured in the same run:

- one dropout mask for each LoRA input width of a ``--tokens`` micro-batch (the hidden size: q,
  k, v, o, gate, up; the MLP's: down), drawn and applied as :class:`LoraDropout` applies it: with
  torch's ``bernoulli_`` (what PEFT's and torch's dropout use) and with
  :func:`thinktune.training.lora_dropout.keep_mask` (median ms);
- one forward and backward of :class:`thinktune.training.LoraTrainer` (activation checkpointing,
  the preset's LoRA and dropout) on a random-initialised model of the architecture cut to
  ``--layers`` layers, over one packed row of ``--chats`` chats, three ways, their steps
  interleaved: torch's masks and one SDPA over the row's block-diagonal mask (before), then
  ``keep_mask``, then also SDPA chat by chat (``thinktune.training.packed_attention``, now).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from unittest import mock

from perf._gpu_study import preset_params, synthetic_chats
from perf.lora_input_cast import build
from thinktune.training import lora_dropout, packed_attention


def median_ms(fn, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def mask_times(hidden: int, intermediate: int, tokens: int, dtype, p: float) -> None:
    import torch

    keep_mask = lora_dropout.keep_mask

    scale = float(torch.ones(1).div_(1 - p))
    for width in (hidden, intermediate):
        x = torch.randn(1, tokens, width, dtype=dtype)
        old = median_ms(lambda: x * lora_dropout.torch_keep_mask(x, 1 - p) * scale)
        new = median_ms(lambda: x * keep_mask(x, 1 - p) * scale)
        print(f"  mask and apply, {tokens} x {width}: torch bernoulli_ {old:6.2f} ms, keep_mask {new:6.2f} ms "
              f"({old / new:.1f}x faster)")


VARIANTS = (("torch masks, one masked SDPA", True, "sdpa"), ("keep_mask, one masked SDPA", False, "sdpa"),
            ("keep_mask, SDPA chat by chat", False, packed_attention.NAME))


def step_times(args) -> None:
    from thinktune.training.batching import flatten
    from thinktune.training.session import LoraTrainer

    params = preset_params(args.preset)
    model = build(args.model, args.layers, "cpu")
    if args.precision == "fp32":
        model = model.float()
    train = params.train.model_copy(update={"precision": args.precision, "gradient_checkpointing": True})
    trainer = LoraTrainer(model, params.lora, train, total_steps=1)
    low, high = args.chat_tokens
    chats = synthetic_chats(args.chats, low, high, 0.5, model.config.vocab_size, "training-step")
    batch = flatten(chats)

    def step(torch_masks: bool, attention: str) -> float:
        model.set_attn_implementation(attention)
        with mock.patch.object(lora_dropout, "keep_mask", lora_dropout.torch_keep_mask) if torch_masks else nullcontext():
            start = time.perf_counter()
            loss, _ = trainer.model(**batch)
            loss.backward()
            seconds = time.perf_counter() - start
        trainer.optimizer.zero_grad(set_to_none=True)
        return seconds

    step(False, packed_attention.NAME)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name, *_ in VARIANTS}
    for round_ in range(args.repeats):
        for name, torch_masks, attention in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
            seconds[name].append(step(torch_masks, attention))
    print(f"  one forward + backward (checkpointed), {args.layers} layers, {len(chats)} chats, "
          f"{batch['input_ids'].shape[1]} tokens in one packed row, median of {args.repeats}:")
    first = statistics.median(seconds[VARIANTS[0][0]])
    for name, *_ in VARIANTS:
        median = statistics.median(seconds[name])
        print(f"    {name:30s} {median:6.3f} s  ({median / first:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="Qwen/Qwen2.5-Coder-0.5B")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--tokens", type=int, default=1024, help="tokens of the masks timed alone")
    p.add_argument("--chats", type=int, default=3, help="chats packed in the step's row")
    p.add_argument("--chat-tokens", type=int, nargs=2, default=(250, 400), metavar=("LOW", "HIGH"),
                   help="each chat's length, uniform in [LOW, HIGH] (the sample chats: 150 to 360)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--preset", default="cpu", help="LoRA and train params from this preset (default cpu)")
    args = p.parse_args(argv)
    import torch

    from thinktune.models.hardware import describe_environment

    print(describe_environment(args.precision))
    dropout = preset_params(args.preset).lora.dropout
    if dropout == 0:
        sys.exit(f"error: the {args.preset} preset's lora.dropout is 0: no masks to draw")
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    from perf._gpu_study import ARCHITECTURES

    shape = ARCHITECTURES[args.model]
    print(f"{args.model} shapes, lora.dropout {dropout}, {args.precision}, torch threads {torch.get_num_threads()}:")
    mask_times(shape["hidden_size"], shape["intermediate_size"], args.tokens, dtype, dropout)
    step_times(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

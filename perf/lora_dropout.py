"""What drawing the LoRA dropout masks with ``keep_mask`` saves in a CPU training step.

    python -m perf.lora_dropout                       # the 0.5B's layer shapes, 4 layers, 1,024 tokens, bf16
    python -m perf.lora_dropout --precision fp32

Two figures, each measured both ways in the same run (torch's ``bernoulli_``, which PEFT's and
torch's dropout use, against :func:`thinktune.training.lora_dropout.keep_mask`, numpy's PCG64):

- one mask for each LoRA input width of a ``--tokens`` micro-batch (the hidden size: q, k, v, o,
  gate, up; the MLP's: down), drawn and applied as :class:`LoraDropout` applies it (median ms);
- one forward and backward of :class:`thinktune.training.LoraTrainer` (activation checkpointing,
  the preset's LoRA and dropout) on a random-initialised model of the architecture cut to
  ``--layers`` layers, the two sides' steps interleaved (median s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from unittest import mock

from perf._gpu_study import preset_params, synthetic_chats
from perf.lora_input_cast import build


def torch_keep_mask(like, keep):
    return like.new_empty(like.shape).bernoulli_(keep)


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

    from thinktune.training.lora_dropout import keep_mask

    scale = float(torch.ones(1).div_(1 - p))
    for width in (hidden, intermediate):
        x = torch.randn(1, tokens, width, dtype=dtype)
        old = median_ms(lambda: x * torch_keep_mask(x, 1 - p) * scale)
        new = median_ms(lambda: x * keep_mask(x, 1 - p) * scale)
        print(f"  mask and apply, {tokens} x {width}: torch bernoulli_ {old:6.2f} ms, keep_mask {new:6.2f} ms "
              f"({old / new:.1f}x faster)")


def step_times(args, dtype_name: str) -> None:

    from thinktune.training import lora_dropout
    from thinktune.training.batching import flatten
    from thinktune.training.session import LoraTrainer

    params = preset_params(args.preset)
    model = build(args.model, args.layers, "cpu")
    if dtype_name == "fp32":
        model = model.float()
    train = params.train.model_copy(update={"precision": dtype_name, "gradient_checkpointing": True})
    trainer = LoraTrainer(model, params.lora, train, total_steps=1)
    chats = synthetic_chats(1, args.tokens, args.tokens, 0.7, model.config.vocab_size, "dropout")
    batch = flatten(chats)

    def step():
        loss, _ = trainer.model(**batch)
        loss.backward()
        trainer.optimizer.zero_grad(set_to_none=True)

    seconds = {"torch bernoulli_": [], "keep_mask": []}
    step()  # warm-up
    for _ in range(args.repeats):
        with mock.patch.object(lora_dropout, "keep_mask", torch_keep_mask):
            start = time.perf_counter()
            step()
            seconds["torch bernoulli_"].append(time.perf_counter() - start)
        start = time.perf_counter()
        step()
        seconds["keep_mask"].append(time.perf_counter() - start)
    old, new = (statistics.median(v) for v in seconds.values())
    print(f"  training step (forward + backward, checkpointed), {args.layers} layers, {args.tokens} tokens: "
          f"torch bernoulli_ {old:.3f} s, keep_mask {new:.3f} s ({new / old:.2f}x the time)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="Qwen/Qwen2.5-Coder-0.5B")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--tokens", type=int, default=1024)
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
    step_times(args, args.precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())

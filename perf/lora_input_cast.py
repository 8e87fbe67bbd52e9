"""What skipping PEFT's fp32 cast of LoRA inputs saves in a bf16 training step.

    python -m perf.lora_input_cast                      # the 0.5B's layer shapes, 4 layers, 1,024 tokens
    python -m perf.lora_input_cast --layers 24 --tokens 4096 --model Qwen/Qwen2.5-Coder-1.5B   # a GPU

One forward and backward of :class:`thinktune.training.LoraTrainer` (bf16 autocast, activation
checkpointing, the preset's LoRA targets and dropout) on a random-initialised model of the
model's architecture cut to ``--layers`` layers, twice in the same run: PEFT's own LoRA forward
(each input cast to the fp32 adapter, torch's dropout of that copy) and the trainer's (input in
bf16, :class:`thinktune.training.lora_dropout.LoraDropout`, its masks drawn as torch's dropout draws them
here, so both sides drop the same elements; ``perf.training_step`` times the masks). Printed for each: bytes written by all
ops (a ``TorchDispatchMode`` sums every op's output size: the memory traffic a GPU pays in
writes, reads are about as many), bytes of bf16 -> fp32 copies, the step's median seconds over
``--repeats`` (timed without the counting mode, the two sides' steps interleaved), CUDA peak memory on a GPU; and whether the loss
and gradients are identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from unittest import mock

from perf._gpu_study import ARCHITECTURES, TINY, preset_params, synthetic_chats


def build(model_name: str, layers: int, device: str):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    shape = (TINY if model_name == "tiny" else ARCHITECTURES[model_name]) | {"num_hidden_layers": layers}
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(Qwen2Config(**shape), dtype=torch.bfloat16).to(device)


def bytes_written(step):
    """(all bytes written by ops, bytes of bf16 -> fp32 copies) during ``step()``."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    totals = {"all": 0, "fp32_copies": 0}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    totals["all"] += t.numel() * t.element_size()
            if (func == torch.ops.aten._to_copy.default and isinstance(out, torch.Tensor) and args
                    and args[0].dtype == torch.bfloat16 and out.dtype == torch.float32):
                totals["fp32_copies"] += out.numel() * 4
            return out

    with Count():
        step()
    return totals


def setup(args, peft_forward: bool):
    """(step, device): ``step()`` runs one forward and backward and returns (loss, LoRA gradients)."""
    import torch

    from thinktune.training.batching import flatten
    from thinktune.training.session import LoraTrainer

    params = preset_params(args.preset)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build(args.model, args.layers, device)
    train = params.train.model_copy(update={"precision": "bf16", "gradient_checkpointing": True})
    trainer = LoraTrainer(model, params.lora, train, total_steps=1)
    if peft_forward:
        from peft.tuners.lora import LoraLayer

        for layer in (m for m in trainer.peft_model.modules() if isinstance(m, LoraLayer)):
            layer.cast_input_dtype_enabled = True
            for name, dropout in layer.lora_dropout.items():
                if not isinstance(dropout, torch.nn.Identity):
                    layer.lora_dropout[name] = torch.nn.Dropout(dropout.p)
    chats = synthetic_chats(1, args.tokens, args.tokens, 0.7, model.config.vocab_size, "cast")
    batch = {k: v.to(device) for k, v in flatten(chats).items()}

    def step():
        torch.manual_seed(0)
        loss, _ = trainer.model(**batch)
        loss.backward()
        grads = [p.grad.clone() for p in trainer.peft_model.parameters() if p.requires_grad]
        trainer.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), grads

    return step, device


def timed(step, device: str) -> tuple[float, int | None, tuple]:
    """(seconds, CUDA peak bytes or None, step's result) of one step."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, torch.cuda.max_memory_allocated() if device == "cuda" else None, result


def measure(args) -> tuple[dict, dict]:
    """Both forwards, their steps interleaved so that a change of the machine's load hits both alike."""

    from thinktune.training import lora_dropout

    with mock.patch.object(lora_dropout, "keep_mask", lora_dropout.torch_keep_mask):
        return _measure(args)


def _measure(args) -> tuple[dict, dict]:
    sides = {"peft": setup(args, peft_forward=True), "trainer": setup(args, peft_forward=False)}
    out = {name: {"seconds": [], "device": device} for name, (_, device) in sides.items()}
    for _ in range(args.repeats):
        for name, (step, device) in sides.items():
            seconds, peak, (loss, grads) = timed(step, device)
            out[name].update(loss=loss, grads=grads, peak=peak)
            out[name]["seconds"].append(seconds)
    for name, (step, _) in sides.items():
        out[name]["seconds"] = statistics.median(out[name]["seconds"])
        out[name].update(bytes_written(step))
    return out["peft"], out["trainer"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="Qwen/Qwen2.5-Coder-0.5B", choices=[*ARCHITECTURES, "tiny"])
    p.add_argument("--layers", type=int, default=4, help="decoder layers kept (default 4)")
    p.add_argument("--tokens", type=int, default=1024, help="tokens in the step's one chat (default 1024)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--preset", default="paper", help="LoRA and train params from this preset (default paper)")
    args = p.parse_args(argv)
    if args.layers < 1 or args.tokens < 4 or args.repeats < 1:
        sys.exit("error: --layers >= 1, --tokens >= 4 and --repeats >= 1")
    import torch

    peft, ours = measure(args)
    same = bool(torch.equal(peft["loss"], ours["loss"])) and all(
        torch.equal(a, b) for a, b in zip(peft["grads"], ours["grads"], strict=True))
    gb = 1e9
    print(f"{args.model}, {args.layers} layers, {args.tokens} tokens, bf16 autocast, activation checkpointing, "
          f"device {ours['device']}")
    for name, r in (("PEFT (fp32 cast)", peft), ("trainer (bf16 input)", ours)):
        peak = f", peak {r['peak'] / 2**30:.2f} GiB" if r["peak"] is not None else ""
        print(f"  {name:22s} written {r['all'] / gb:7.3f} GB (bf16->fp32 copies {r['fp32_copies'] / gb:6.3f} GB), "
              f"{r['seconds']:.3f} s/step{peak}")
    print(f"  saved: {(peft['all'] - ours['all']) / gb:.3f} GB written per step "
          f"({(peft['all'] - ours['all']) / peft['all']:.1%}); time {ours['seconds'] / peft['seconds']:.2f}x; "
          f"loss and gradients identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

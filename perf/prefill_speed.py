"""Prefill time of the evaluation's prompts: one padded forward with the LoRA delta added in one
mixed-dtype op (the previous path) against forwards grouped by prompt length with the delta
added by row blocks (``thinktune.generation.engine.length_groups``, ``thinktune.models.lora``),
in the same run, alternating their order each round.

    python -m perf.prefill_speed                     # models/base, eval.precision, 2 random r-16 adapters
    python -m perf.prefill_speed --precision fp32 --repeat 3

For the base model alone (12 prompts) and for a run's two checkpoints in one prefill (24 rows,
each prompt once per checkpoint), it prints the seconds of each path, the tokens the forwards
computed (padding included) and the largest logit difference between the paths, with the
machine's load average. A third line times the add alone at a prefill's shape (4,096 rows of
gate|up, 9,728 columns): one op against row blocks.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from perf import add_model_arguments, sample_chats
from perf.generation_speed import load_text, random_adapters
from thinktune.config.params import load_params
from thinktune.generation import engine as engine_module
from thinktune.generation.chats import chat_prompt_ids
from thinktune.models import lora
from thinktune.models.hardware import describe_environment
from thinktune.models.host import ModelHost


@contextmanager
def previous_path():
    """One forward however the lengths differ, and the delta always added in one op."""
    saved = engine_module.MAX_PADDING, lora.CHUNK_BYTES
    engine_module.MAX_PADDING, lora.CHUNK_BYTES = float("inf"), float("inf")
    try:
        yield
    finally:
        engine_module.MAX_PADDING, lora.CHUNK_BYTES = saved


def prefill(model, prompts: list[list[int]], adapters: list[int]):
    """(seconds, logits, tokens computed) of one engine prefill of ``prompts``."""
    import torch

    engine = engine_module.DecodeEngine(model, slots=len(prompts), capacity=max(map(len, prompts)) + 1)
    computed = []
    original = engine._prefill_padded

    def counting(batch, rows):
        computed.append(len(batch) * max(map(len, batch)))
        return original(batch, rows)

    engine._prefill_padded = counting
    with torch.inference_mode():
        began = time.perf_counter()
        logits, _ = engine._prefill(prompts, adapters)
        return time.perf_counter() - began, logits.float(), sum(computed)


def compare(name: str, model, prompts, adapters, repeat: int) -> None:
    seconds: dict[str, list[float]] = {"one forward, one-op add": [], "by length, row blocks": []}
    logits, computed = {}, {}
    for round_ in range(repeat):
        for path in (list(seconds) if round_ % 2 == 0 else list(seconds)[::-1]):
            if path.startswith("one"):
                with previous_path():
                    took, logits[path], computed[path] = prefill(model, prompts, adapters)
            else:
                took, logits[path], computed[path] = prefill(model, prompts, adapters)
            seconds[path].append(took)
    old, new = seconds
    real = sum(map(len, prompts))
    print(f"{name}: {len(prompts)} rows, {real} prompt tokens ({load_text()})")
    for path, times in seconds.items():
        print(f"  {path:<26} {min(times):6.2f} s best of {repeat} ({', '.join(f'{t:.2f}' for t in times)}); "
              f"{computed[path]} tokens computed ({computed[path] / real - 1:+.0%} padding)")
    print(f"  new / old: {min(seconds[new]) / min(seconds[old]):.2f}; largest logit difference "
          f"{float((logits[new] - logits[old]).abs().max()):.2e}")


def time_add(dtype_name: str, repeat: int) -> None:
    import torch

    dtype = getattr(torch, dtype_name)
    rows, width, rank = 4096, 9728, 32
    out = torch.randn(rows, width).to(dtype)
    h, B = torch.randn(rows, rank) * 0.01, torch.randn(rank, width) * 0.01

    def one_op():
        return out.clone().add_(h @ B)

    def blocks():
        result = out.clone()
        lora.add_in_row_blocks(result, h, B)
        return result

    timings = {}
    for name, fn in (("one op", one_op), ("row blocks", blocks)):
        fn()
        began = time.perf_counter()
        for _ in range(repeat):
            fn()
        timings[name] = (time.perf_counter() - began) / repeat
    print(f"the add alone, {rows} x {width} {dtype_name} (incl. the {rank}-rank product): "
          + ", ".join(f"{n} {t * 1000:.0f} ms" for n, t in timings.items())
          + f"; identical: {torch.equal(one_op(), blocks())}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--repeat", type=int, default=2, help="rounds, the paths' order reversed each round")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    precision = args.precision or params.eval.precision
    chats = sample_chats(params, args.problems)
    print(describe_environment(precision))
    host = ModelHost(args.base_model, precision)
    prompts = chat_prompt_ids(host.tokenizer, chats)
    with host.adapted(None) as model:
        compare("base model", model, prompts, [0] * len(prompts), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = random_adapters(args.base_model, Path(tmp), 2, precision)
        with host.adapted_set(adapters) as model:
            compare("two checkpoints", model, prompts * 2, [0] * len(prompts) + [1] * len(prompts), args.repeat)
    time_add(str(host.model.dtype).removeprefix("torch."), args.repeat)


if __name__ == "__main__":
    main()

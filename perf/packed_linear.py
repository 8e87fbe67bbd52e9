"""Linear layers run by oneDNN (``thinktune.models.packed_linear``: bf16 on packed weights, fp32 on
the weights as stored) against torch's ``F.linear``, in the same run: each distinct layer shape
of the base model at decode and prefill row counts, then the decode engine's greedy decode of the
sample prompts both ways.

    python -m perf.packed_linear                      # models/base in bf16, 12 prompts, 64 new tokens
    python -m perf.packed_linear --precision fp32
    python -m perf.packed_linear --max-new-tokens 128 --repeat 3

Per shape it prints the milliseconds of each (best of three rounds) and how far apart the
outputs are (bf16: identical or not; fp32: the largest difference as a share of the largest
output); the decode part prints ms per decode step, prefill seconds and whether the answers are
identical, alternating the order each round, with the machine's load average.
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

from perf import add_model_arguments, sample_chats
from perf.generation_speed import load_text
from thinktune.config.params import load_params
from thinktune.generation.chats import chat_prompt_ids, generate_tokens
from thinktune.generation.settings import DecodingSettings
from thinktune.models import packed_linear
from thinktune.models.hardware import describe_environment
from thinktune.models.host import ModelHost


def best_ms(fn, calls: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - began) / calls)
    return best * 1000


def layer_table(model, rows: list[int]) -> None:
    import torch

    print("per layer shape (ms, F.linear -> oneDNN; how far apart):")
    shapes = {}
    for layer in packed_linear.packable_layers(model):
        shapes.setdefault((layer.out_features, layer.in_features, layer.bias is not None), layer)
    with torch.inference_mode():
        for (out_f, in_f, bias), layer in shapes.items():
            bf16 = layer.weight.dtype == torch.bfloat16
            packed = torch.ops.mkldnn._reorder_linear_weight(layer.weight, rows[0]) if bf16 else layer.weight
            cells = []
            for n in rows:
                x = torch.randn(n, in_f).to(layer.weight.dtype)
                plain = best_ms(lambda x=x: torch.nn.functional.linear(x, layer.weight, layer.bias), 20 if n < 100 else 3)
                fast = best_ms(lambda x=x: packed_linear._packed_forward(packed, layer.bias, x), 20 if n < 100 else 3)
                ours = packed_linear._packed_forward(packed, layer.bias, x)
                want = torch.nn.functional.linear(x, layer.weight, layer.bias)
                apart = ("" if torch.equal(ours, want) else " DIFFERENT") if bf16 else \
                    f" ({float((ours - want).abs().max() / want.abs().max()):.1e} apart)"
                cells.append(f"{n} rows {plain:.2f} -> {fast:.2f}{apart}")
            print(f"  {out_f} x {in_f}{' +bias' if bias else ''}: " + "; ".join(cells))


def decode_both(model, prompts, settings: DecodingSettings, repeat: int) -> None:
    runs: dict[str, list] = {"F.linear": [], "oneDNN": []}
    for round_ in range(repeat):
        for name in (list(runs) if round_ % 2 == 0 else list(runs)[::-1]):
            off = mock.patch.object(packed_linear, "packable_layers", return_value=[]) if name == "F.linear" else None
            if off:
                off.start()
            try:
                runs[name].append(generate_tokens(model, prompts, settings, set(), progress=False))
            finally:
                if off:
                    off.stop()
    print(f"decode, {len(prompts)} prompts x {settings.max_new_tokens} new tokens, greedy ({load_text()}):")
    for name, done in runs.items():
        per_step = [1000 * r.stats.decode_s / r.stats.decode_steps for r in done]
        print(f"  {name:<9} {min(per_step):6.1f} ms per step best of {repeat} "
              f"({', '.join(f'{t:.1f}' for t in per_step)}); prefill {min(r.stats.prefill_s for r in done):.2f} s; "
              f"layers on oneDNN {done[0].stats.packed_linears}")
    same = [a[0].token_ids == b[0].token_ids for a, b in zip(runs["F.linear"][0].completions,
                                                              runs["oneDNN"][0].completions, strict=True)]
    print(f"  answers identical: {sum(same)}/{len(same)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2, help="rounds, the two paths' order reversed each round")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    precision = args.precision or "bf16"
    chats = sample_chats(params, args.problems)
    print(describe_environment(precision))
    host = ModelHost(args.base_model, precision)
    if not packed_linear.packable_layers(host.model):
        raise SystemExit("no layer to run on oneDNN: fp32 models on a CPU, or bf16 ones where oneDNN has bf16 kernels")
    prompts = chat_prompt_ids(host.tokenizer, chats)
    with host.adapted(None) as model:
        layer_table(model, [12, 24, 2000])
        decode_both(model, prompts, DecodingSettings(max_new_tokens=args.max_new_tokens, batch_size=len(prompts)),
                    args.repeat)


if __name__ == "__main__":
    main()

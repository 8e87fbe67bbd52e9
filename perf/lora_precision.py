"""What a bf16 merge loses of a LoRA adapter, and what applying it unmerged costs in decode speed.

    python -m perf.lora_precision --adapters models/deep/seed-42/checkpoint-*      # the default's checkpoints
    python -m perf.lora_precision --delta-scale 0.05 --max-new-tokens 128   # deltas the size lr 5e-5 gives

1. **Delta kept.** For each adapter and each LoRA layer, the delta ``B @ A * scale`` computed
   in fp32 against what a bf16 merge adds to the bf16 weight (``bf16(W + delta) - W``): the
   share of delta entries not applied at all, and the median relative error of the rest.
   ``--delta-scale`` multiplies every B first: the default's checkpoints are trained at lr
   1e-3 (a few steps must teach the format), the study's at 5e-5, about 20x smaller deltas.
2. **Decode speed.** The eval stage's chats answered greedily, in the eval precision, by the
   base with the adapter merged in (the evaluation before: full speed, delta rounded) and by
   the base with the adapter applied unmerged (``thinktune.models.host``: what the evaluation
   does now), in alternating order, ``--repeat`` rounds: wall and CPU time, tokens/s, and
   how many greedy answers are identical.

Without ``--adapters`` it makes a random adapter of the study's shape (r 16, seven targets).
Throughput on a shared machine is comparable only within one run; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from perf.generation_speed import alternate, load_text, random_adapters
from perf import add_model_arguments, sample_chats
from thinktune.config.params import load_params
from thinktune.generation.chats import generate_chats
from thinktune.generation.settings import DecodingSettings
from thinktune.models.hardware import describe_environment, resolve_precision
from thinktune.models.host import ModelHost, load_base


def scaled_copy(adapter: Path, out: Path, scale: float) -> Path:
    """The adapter with every B multiplied by ``scale`` (delta scaled by the same)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, out)
    weights = load_file(adapter / "adapter_model.safetensors")
    save_file({k: (v * scale if ".lora_B." in k else v).contiguous() for k, v in weights.items()},
              out / "adapter_model.safetensors")
    return out


def delta_kept(base_dir: Path, adapter: Path) -> dict:
    """Per layer: share of delta entries a bf16 merge does not apply; median relative error of the rest."""
    import torch
    from safetensors.torch import load_file

    config = json.loads((adapter / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    weights = load_file(adapter / "adapter_model.safetensors")
    base, _ = load_base(base_dir, "bf16")
    state = base.state_dict()
    dropped, errors = [], []
    for key in sorted(k for k in weights if ".lora_A." in k):
        delta = weights[key.replace("lora_A", "lora_B")].float() @ weights[key].float() * scale
        weight = state[key.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")].float()
        applied = (weight + delta).to(torch.bfloat16).float() - weight
        nonzero = delta != 0
        dropped.append(float(((applied == 0) & nonzero).sum() / nonzero.sum()))
        kept = (applied != 0) & nonzero
        errors.append(float(((applied - delta).abs() / delta.abs())[kept].median()))
    return {"layers": len(dropped), "dropped_median": statistics.median(dropped), "dropped_range": (min(dropped),
            max(dropped)), "rel_error_median": statistics.median(errors)}


def compare_speed(args, params, adapter: Path, precision: str) -> None:
    from peft import PeftModel

    chats = sample_chats(params, args.problems)
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens, batch_size=params.eval.batch_size)
    merged_model, tokenizer = load_base(args.base_model, precision)
    merged_model = PeftModel.from_pretrained(merged_model, adapter).merge_and_unload()
    for param in merged_model.parameters():
        param.requires_grad_(True)  # as loaded: frozen parameters slow torch's CPU forward
    host = ModelHost(args.base_model, precision)
    print(f"{len(chats)} prompts, greedy, {settings.max_new_tokens} new tokens, batch {settings.batch_size}, "
          f"{precision}, adapter {adapter}")
    with host.adapted(adapter) as unmerged_model:
        paths = {"merged": lambda c: generate_chats(merged_model, tokenizer, c, settings, desc="merged"),
                 "unmerged": lambda c: generate_chats(unmerged_model, tokenizer, c, settings, desc="unmerged")}
        answers, walls, cpus = alternate(paths, chats, args.repeat)
    same = sum(a[0].text == b[0].text for a, b in zip(answers["merged"], answers["unmerged"], strict=True))
    print(f"unmerged/merged wall time: {sum(walls['unmerged']) / sum(walls['merged']):.2f}, CPU time: "
          f"{sum(cpus['unmerged']) / sum(cpus['merged']):.2f}; identical greedy answers: {same}/{len(chats)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--adapters", type=Path, nargs="*", default=None)
    parser.add_argument("--delta-scale", type=float, default=1.0, help="multiply every B (0.05: lr 5e-5 vs 1e-3)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    precision = resolve_precision(args.precision or params.eval.precision)
    print(describe_environment(precision))
    print(load_text())
    with tempfile.TemporaryDirectory() as tmp:
        adapters = args.adapters or random_adapters(args.base_model, Path(tmp) / "random", 1, precision)
        if args.delta_scale != 1.0:
            adapters = [scaled_copy(a, Path(tmp) / f"scaled-{i}", args.delta_scale) for i, a in enumerate(adapters)]
        for adapter in adapters:
            kept = delta_kept(args.base_model, adapter)
            print(f"{adapter.name} (B x {args.delta_scale:g}): a bf16 merge leaves {kept['dropped_median']:.1%} of the "
                  f"delta entries unapplied (median over {kept['layers']} layers; range "
                  f"{kept['dropped_range'][0]:.1%}-{kept['dropped_range'][1]:.1%}), median relative error of the "
                  f"applied entries {kept['rel_error_median']:.1%}")
        if not args.skip_speed:
            started = time.perf_counter()
            compare_speed(args, params, adapters[-1], precision)
            print(f"speed comparison took {time.perf_counter() - started:.0f} s; {load_text()}")


if __name__ == "__main__":
    main()

"""Generation speed of the decode engine against the previous ``model.generate`` code, same run.

    python -m perf.generation_speed                       # models/base, the sample problems the eval selects, 512 tokens
    python -m perf.generation_speed --max-new-tokens 128 --repeat 2
    python -m perf.generation_speed --switch-adapters models/deep/seed-42/checkpoint-*

Both paths answer the eval stage's chats (system prompt and study prompt from params.yaml)
with greedy decoding on one loaded model, in alternating order; the script prints wall
time, new tokens per second, decode statistics and how many answers are identical. It then
times what a checkpoint switch costs: reloading the base and merging the adapter (the
previous evaluation) against loading the adapter into the loaded base's stacked LoRA tensors
(``thinktune.models.host``); without ``--switch-adapters`` it makes random LoRA adapters of
the study's shape (r 16, the seven projections). The machine's load average is printed
with each figure, and the process's CPU time beside wall time: throughput on a shared
machine is only comparable within one run (``--threads 1`` makes CPU time the steadier
measure of work).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from perf._hf_generate import hf_generate_chats
from perf import add_model_arguments
from thinktune.benchmarks.base import get_benchmark
from thinktune.config.params import QWEN2_LINEAR_MODULES, load_params
from thinktune.data.chat import eval_messages
from thinktune.generation.chats import generate_chats
from thinktune.generation.settings import DecodingSettings
from thinktune.models.hardware import describe_environment
from thinktune.models.host import ModelHost, load_base


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def time_answers(name: str, generate, chats) -> tuple[list, float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    answers = generate(chats)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    tokens = sum(g.new_tokens for a in answers for g in a)
    limit = sum(g.hit_token_limit for a in answers for g in a)
    print(f"{name:>6}: {wall:7.1f} s wall, {cpu:7.1f} s CPU  {tokens:6d} new tokens  {tokens / wall:7.1f} tokens/s "
          f"({limit} at the limit; {load_text()})")
    return answers, wall, cpu


def alternate(paths: dict, chats, repeat: int, first: int = 0) -> tuple[dict, dict, dict]:
    """Each of the two ``paths`` answers ``chats`` ``repeat`` times, the order swapped every round
    (``first``: which one starts); (answers, wall times, CPU times) per path name."""
    names = list(paths)
    answers, walls, cpus = {}, {n: [] for n in names}, {n: [] for n in names}
    for round_ in range(repeat):
        for name in (names if (round_ + first) % 2 == 0 else names[::-1]):
            answers[name], wall, cpu = time_answers(name, paths[name], chats)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return answers, walls, cpus


def random_adapters(base_dir: Path, out: Path, count: int, precision: str) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load_base(base_dir, precision)
    paths = []
    for seed in range(count):
        torch.manual_seed(seed)
        config = LoraConfig(r=16, lora_alpha=32, target_modules=list(QWEN2_LINEAR_MODULES), init_lora_weights=False,
                            task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(out / f"checkpoint-{seed + 1}")
        model = peft_model.unload()
        paths.append(out / f"checkpoint-{seed + 1}")
    return paths


def time_switches(base_dir: Path, adapters: list[Path], precision: str) -> None:
    import torch
    from peft import PeftModel

    started = time.perf_counter()
    for adapter in adapters:  # the previous evaluation: a fresh base and a merge per checkpoint
        model, _ = load_base(base_dir, precision)
        reloaded = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        del model, reloaded
    reload_s = (time.perf_counter() - started) / len(adapters)

    host = ModelHost(base_dir, precision)
    started = time.perf_counter()
    for adapter in adapters:
        with host.adapted(adapter) as adapted:
            last = {k: v.clone() for k, v in adapted.state_dict().items() if "layers.0." in k}
    swap_s = (time.perf_counter() - started) / len(adapters)
    fresh = load_base(base_dir, precision)[0].state_dict()  # unmerged: the base weights stay as loaded
    same = all(torch.equal(v, fresh[k]) for k, v in last.items())
    print(f"checkpoint switch, {len(adapters)} adapters: reload base + merge {reload_s:.2f} s each, "
          f"adapter loaded into the host's stacked LoRA tensors {swap_s:.2f} s each; base weights untouched: {same}")


def compare(args, params, precision: str, settings: DecodingSettings) -> None:
    """Old and new generation on one loaded model, alternating, answers compared."""
    benchmark = get_benchmark("livecodebench")
    problems = benchmark.load_problems(params.eval.model_copy(update={"source": "sample",
                                                                      "sample_file": str(args.problems)}))
    chats = [eval_messages(params.format.system_prompt, benchmark.user_prompt(p, "study")) for p in problems]
    model, tokenizer = load_base(args.base_model, precision)
    print(f"{len(chats)} prompts, greedy, {settings.max_new_tokens} new tokens, batch {settings.batch_size}")

    paths = {"old": lambda c: hf_generate_chats(model, tokenizer, c, settings, desc="old"),
             "new": lambda c: generate_chats(model, tokenizer, c, settings, desc="new")}
    answers, walls, cpus = alternate(paths, chats, args.repeat, first=int(args.new_first))
    same = sum(o[0].text == n[0].text for o, n in zip(answers["old"], answers["new"], strict=True))
    print(f"new/old wall time: {sum(walls['new']) / sum(walls['old']):.2f}, CPU time: "
          f"{sum(cpus['new']) / sum(cpus['old']):.2f}; identical greedy answers: {same}/{len(chats)}")
    differing = [i for i, (o, n) in enumerate(zip(answers["old"], answers["new"], strict=True))
                 if o[0].text != n[0].text]
    for i in differing:
        o, n = answers["old"][i][0].text, answers["new"][i][0].text
        first = next((k for k, (a, b) in enumerate(zip(o, n, strict=False)) if a != b), min(len(o), len(n)))
        print(f"  problem {problems[i].question_id}: answers part at character {first} of {len(o)}/{len(n)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=None, help="default: eval.batch_size")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of (old, new) or (new, old), alternating")
    parser.add_argument("--new-first", action="store_true", help="start with the engine (default: the old code)")
    parser.add_argument("--skip-switch", action="store_true", help="do not time checkpoint switches")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1: CPU time is then a measure of work that a loaded machine disturbs least)")
    parser.add_argument("--switch-adapters", type=Path, nargs="*", default=None)
    parser.add_argument("--switches", type=int, default=3, help="random adapters to time when none are given")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    precision = args.precision or params.eval.precision
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size or params.eval.batch_size)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(describe_environment(precision))
    print(f"torch threads: {__import__('torch').get_num_threads()}; {load_text()}")
    compare(args, params, precision, settings)

    if args.skip_switch:
        return
    with tempfile.TemporaryDirectory() as tmp:
        adapters = args.switch_adapters or random_adapters(args.base_model, Path(tmp), args.switches, precision)
        time_switches(args.base_model, list(adapters), precision)
    print(load_text())


if __name__ == "__main__":
    main()

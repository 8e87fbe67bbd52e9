"""Ops per decode step and decode time of the unmerged-LoRA evaluation path: PEFT's layers on
transformers' forward (the previous path) against the stacked adapters of
``thinktune.models.lora`` on the fused decode step of ``thinktune.generation.fused_step``, in the
same run.

    python -m perf.decode_ops                          # models/base, 2 random r-16 adapters, 12 sample prompts
    python -m perf.decode_ops --max-new-tokens 32 --skip-timing

Ops: torch.profiler on the CPU records every aten op a decode step dispatches (on a GPU each
is one or more kernel launches), counted with ``F.linear`` as a GPU runs it (the packed bf16
linear layers of a CPU decode are turned off for the count). The script profiles the same greedy decode for two lengths
and divides the difference by the extra steps, so the prefill and setup cancel: ops per step
for the bare base (transformers' forward, then the fused step), the base with one adapter through
PEFT's layers, the same adapter stacked (on transformers' forward, then on the fused step), and
two adapters stacked in one batch (each row its own). ``top-level`` counts the ops the model's
Python code calls; ``all`` adds the ops those run inside (e.g. ``linear`` -> ``t`` +
``addmm``); ``compute`` counts the innermost ops that are neither views (``view``, ``slice``,
``chunk``), allocations, an eval-mode dropout, nor wrappers such as ``to`` (counted by the copy
they run, if any): on a GPU, about the kernel launches, though a CPU runs some ops as several
(a mixed-dtype add, RMSNorm's fp32 part) that a GPU runs as one.

Timing: the same chats decoded greedily by (a) PEFT's unmerged layers, one checkpoint after
the other (the previous evaluation), (b) the stacked adapters one checkpoint after the other,
(c) both checkpoints in one batch on transformers' forward and (d) on the fused step (the
evaluation now), alternating the order each round,
with wall and process CPU time and the machine's load average; the answers of (b), (c) and (d)
are compared with (a)'s.
"""

from __future__ import annotations

import argparse
from unittest import mock
import tempfile
import time
from pathlib import Path

from perf.generation_speed import load_text, random_adapters
from perf import add_model_arguments, sample_chats
from thinktune.config.params import load_params
from thinktune.generation import engine
from thinktune.generation.chats import chat_prompt_ids, decode_answers, generate_tokens
from thinktune.generation.settings import DecodingSettings
from thinktune.models import packed_linear
from thinktune.models.hardware import describe_environment
from thinktune.models.host import ModelHost


def peft_model(host: ModelHost, adapter: Path):
    """The previous path: PEFT's LoRA layers around the host's base, flags as the old host left them."""
    from peft import PeftModel

    requires_grad = {id(p): p.requires_grad for p in host.model.parameters()}
    wrapped = PeftModel.from_pretrained(host.model, adapter, is_trainable=False).eval()
    for param in host.model.parameters():  # frozen parameters slow torch's CPU forward
        param.requires_grad_(requires_grad.get(id(param), False))
    return wrapped


# The op namespaces counted: torch's own, and oneDNN's packed bf16 linear, which a CPU decode in
# bf16 runs in place of ``aten::linear`` (``thinktune.models.packed_linear``): one op either way.
OP_NAMESPACES = ("aten::", "mkldnn::")

# Ops that launch no kernel of their own on a GPU: views of a tensor's memory, allocations, a
# no-op dropout, and wrappers whose work (if any) is an op they run inside (``to`` ->
# ``_to_copy`` -> ``copy_``; ``type_as`` -> ``to``; ``contiguous`` -> ``clone`` -> ``copy_``),
# counted there: a cast to the tensor's own dtype runs nothing inside and launches nothing.
NO_KERNEL_OPS = {"aten::dropout", "aten::view", "aten::reshape", "aten::_unsafe_view", "aten::slice",
                 "aten::select", "aten::t", "aten::transpose", "aten::unsqueeze", "aten::squeeze", "aten::expand",
                 "aten::as_strided", "aten::expand_as", "aten::split", "aten::split_with_sizes", "aten::chunk", "aten::narrow",
                 "aten::permute", "aten::flatten", "aten::unflatten", "aten::alias", "aten::detach",
                 "aten::lift_fresh", "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::result_type",
                 "aten::resolve_conj", "aten::resolve_neg", "aten::_reshape_alias", "aten::unbind",
                 "aten::to", "aten::type_as", "aten::contiguous"}


def launches(event) -> bool:
    """Whether an op may launch a kernel of its own (not a view, allocation or wrapper)."""
    return event.name not in NO_KERNEL_OPS


def _launch_inside(event) -> bool:
    return any(c.name.startswith(OP_NAMESPACES) and (launches(c) or _launch_inside(c)) for c in event.cpu_children)


def compute_ops(events) -> list:
    """The profiled events that are compute ops: innermost computations (no computation anywhere
    inside). An op that computes and also runs casts inside counts as its casts: a CPU's in-place
    mixed-dtype add as its two copies, which a GPU runs as one kernel."""
    aten = [e for e in events if e.name.startswith(OP_NAMESPACES)]
    return [e for e in aten if launches(e) and not _launch_inside(e)]


def count_ops(model, prompts, settings: DecodingSettings, adapters: int,
              steps: tuple[int, int]) -> tuple[float, float, float]:
    """(top-level ops, all ops, compute ops) per decode step: two profiled runs of every row in one
    batch, the difference per extra step."""
    from dataclasses import replace

    from torch.profiler import ProfilerActivity, profile

    counts = []
    for new_tokens in steps:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            generate_tokens(model, prompts, replace(settings, max_new_tokens=new_tokens), set(), progress=False,
                            mode="eager", adapters=adapters)
        aten = [e for e in prof.events() if e.name.startswith(OP_NAMESPACES)]
        top = [e for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith(OP_NAMESPACES)]
        counts.append((len(top), len(aten), len(compute_ops(aten))))
    assert len(prompts) * adapters <= settings.batch_size, "every row in one batch: one step per new token"
    extra = steps[1] - steps[0]
    return tuple((after - before) / extra for before, after in zip(*counts, strict=True))


def ops_table(host: ModelHost, adapters: list[Path], prompts, settings: DecodingSettings, steps) -> None:
    rows = len(prompts)
    print(f"ops per decode step ({rows} rows per adapter, batch of every row; torch.profiler, CPU):")
    unfused = mock.patch.object(engine, "fusable", return_value="counting transformers' forward")
    with host.adapted(None) as model, unfused:
        base_unfused = count_ops(model, prompts, settings, 1, steps)
    with host.adapted(None) as model:
        base = count_ops(model, prompts, settings, 1, steps)
    with host.adapted(None):  # the stacked adapters off while PEFT's layers run
        wrapped = peft_model(host, adapters[0])
        old = count_ops(host.model, prompts, settings, 1, steps)
        wrapped.unload()
    with host.adapted(adapters[0]) as model, unfused:
        stacked_unfused = count_ops(model, prompts, settings, 1, steps)
    with host.adapted(adapters[0]) as model:
        new = count_ops(model, prompts, settings, 1, steps)
    with host.adapted_set(adapters) as model:
        both = count_ops(model, prompts, settings, len(adapters), steps)
    kinds = ("top-level", "all", "compute")
    for name, counted in (("base alone, transformers' forward", base_unfused), ("base alone, fused step", base),
                          ("1 adapter, PEFT layers (before)", old),
                          ("1 adapter stacked, transformers' forward", stacked_unfused),
                          ("1 adapter stacked, fused step (after)", new),
                          (f"{len(adapters)} adapters in one batch, fused step", both)):
        print(f"  {name:<42} " + "  ".join(f"{k} {c:6.0f}" for k, c in zip(kinds, counted, strict=True)))
    print("  after/before, whole step: " + ", ".join(f"{k} {n / o:.2f}" for k, n, o in zip(kinds, new, old, strict=True))
          + "; LoRA's own ops (on transformers' forward, stacked/PEFT): "
          + ", ".join(f"{k} {(n - b) / (o - b):.2f}" for k, n, o, b in zip(kinds, stacked_unfused, old, base_unfused,
                                                                               strict=True)))


def timed(name: str, run) -> tuple[list, float, float]:
    """(answers, decode seconds, CPU seconds) of one path; ``run`` returns (answers, engine stats list)."""
    started, cpu = time.perf_counter(), time.process_time()
    answers, stats = run()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    tokens = sum(g.new_tokens for per in answers for a in per for g in a)
    decode_s, prefill_s = sum(s.decode_s for s in stats), sum(s.prefill_s for s in stats)
    steps = sum(s.decode_steps for s in stats)
    print(f"  {name:<34} decode {decode_s:6.1f} s ({steps} steps, {tokens / decode_s:5.1f} tokens/s), prefill "
          f"{prefill_s:6.1f} s; {wall:6.1f} s wall, {cpu:6.1f} s CPU ({load_text()})")
    return answers, decode_s, cpu


def time_paths(host: ModelHost, adapters: list[Path], prompts, settings: DecodingSettings, repeat: int) -> None:
    import torch

    tokenizer = host.tokenizer

    def peft_one_by_one():
        answers, stats = [], []
        for adapter in adapters:
            with host.adapted(None):  # the stacked adapters off while PEFT's layers run
                wrapped = peft_model(host, adapter)
                run = generate_tokens(host.model, prompts, settings, set(), progress=False)
                wrapped.unload()
            answers.append(decode_answers(tokenizer, run))
            stats.append(run.stats)
        return answers, stats

    def stacked_one_by_one():
        answers, stats = [], []
        for adapter in adapters:
            with host.adapted(adapter) as model:
                run = generate_tokens(model, prompts, settings, set(), progress=False)
            answers.append(decode_answers(tokenizer, run))
            stats.append(run.stats)
        return answers, stats

    def stacked_together():
        with host.adapted_set(adapters) as model:
            run = generate_tokens(model, prompts, settings, set(), progress=False, adapters=len(adapters))
        return [decode_answers(tokenizer, run, a) for a in range(len(adapters))], [run.stats]

    def stacked_together_unfused():
        with mock.patch.object(engine, "fusable", return_value="timing transformers' forward"):
            return stacked_together()

    paths = {"PEFT, one checkpoint at a time": peft_one_by_one, "stacked, one at a time": stacked_one_by_one,
             "together, transformers' forward": stacked_together_unfused,
             "stacked, checkpoints together": stacked_together}
    together = settings.batch_size if len(prompts) * len(adapters) > settings.batch_size else "all"
    print(f"decode time (torch threads {torch.get_num_threads()}), {len(adapters)} checkpoints x {len(prompts)} prompts, greedy, {settings.max_new_tokens} "
          f"new tokens each (no stop), batch {settings.batch_size} rows one at a time, {together} together:")
    decodes: dict[str, list[float]] = {n: [] for n in paths}
    cpus: dict[str, list[float]] = {n: [] for n in paths}
    answers = {}
    for round_ in range(repeat):
        order = list(paths) if round_ % 2 == 0 else list(paths)[::-1]
        for name in order:
            answers[name], decode_s, cpu = timed(name, paths[name])
            decodes[name].append(decode_s)
            cpus[name].append(cpu)
    old = "PEFT, one checkpoint at a time"
    for name in paths:
        same = sum(a[0].text == b[0].text for x, y in zip(answers[name], answers[old], strict=True)
                   for a, b in zip(x, y, strict=True))
        print(f"  {name:<34} decode time {sum(decodes[name]) / sum(decodes[old]):.2f} x PEFT's, CPU time "
              f"(prefill included) {sum(cpus[name]) / sum(cpus[old]):.2f} x; answers identical to PEFT's: "
              f"{same}/{len(prompts) * len(adapters)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--checkpoints", type=int, default=2, help="random adapters (r 16, the seven projections)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=None, help="default: eval.batch_size")
    parser.add_argument("--repeat", type=int, default=2, help="rounds, the paths' order reversed each round")
    parser.add_argument("--prompts", type=int, default=None, help="the first N sample prompts (default: all)")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-ops", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: a loaded 2-core machine's threads otherwise wait on each other)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    precision = args.precision or params.eval.precision
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size or params.eval.batch_size)
    chats = sample_chats(params, args.problems)
    import torch

    torch.set_num_threads(args.threads)
    print(describe_environment(precision))
    print(load_text())
    host = ModelHost(args.base_model, precision)
    prompts = chat_prompt_ids(host.tokenizer, chats)[:args.prompts]
    with tempfile.TemporaryDirectory() as tmp:
        adapters = random_adapters(args.base_model, Path(tmp), args.checkpoints, precision)
        if not args.skip_ops:
            ops_settings = DecodingSettings(max_new_tokens=1, batch_size=len(prompts) * len(adapters))
            short = [p[:32] for p in prompts[:4]]  # ops per step do not depend on the prompts' length
            with mock.patch.object(packed_linear, "packable_layers", return_value=[]):  # as a GPU runs: F.linear
                ops_table(host, adapters, short, ops_settings, steps=(2, 6))
        if not args.skip_timing:
            time_paths(host, adapters, prompts, settings, args.repeat)


if __name__ == "__main__":
    main()

"""Training speed, this loop against the TRL trainer it replaced, on the same model and chats.

    python -m perf.training_cpu [--strategy deep] [--precision auto] [--batch N]
                                      [--micro-batch-tokens 4096] [--old-rev a9c571f]

Both paths train the offline default's LoRA (params.yaml) for the whole run on
``data/formatted/<strategy>/train.jsonl`` with ``models/base`` (run ``dvc repro format_think``
first), each in its own fresh process, one after the other: the TRL ``SFTTrainer`` path is
``thinktune/training.py`` as it was at ``--old-rev`` (batch 1 x accumulation, as the study ran
it), the new one is :class:`thinktune.training.LoraTrainer` (padding-free micro-batches under
a token budget, chunked loss). Every epoch trains on every chat once, so over whole epochs
both paths train the same tokens. Printed per path: optimizer steps, seconds per step (the
optimizer steps only: model loading, tokenization and saving excluded), trained tokens per
second, peak resident memory. Timing is only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _train_params(args):
    from thinktune.config.params import load_params

    params = load_params(REPO / "params.yaml")
    train = params.train.model_copy(update={
        "precision": args.precision, "effective_batch_size": args.batch,
        "micro_batch_tokens": max(args.micro_batch_tokens, params.format.max_length),
        "save_steps": 10_000, "logging_steps": 10_000})
    return params, train


def run_old(args, out: Path) -> dict:
    """thinktune/training.py at ``--old-rev``, its SFTTrainer timed step by step."""
    import trl
    from transformers import TrainerCallback

    source = subprocess.run(["git", "show", f"{args.old_rev}:thinktune/training.py"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    module_file = out / "old_training.py"
    module_file.write_text(source)
    # The old module imports the library's modules by the names they had before the package
    # layout (thinktune.chat, thinktune.hardware, thinktune.params): give it those names.
    import thinktune.config.params
    import thinktune.data.chat
    import thinktune.models.hardware

    for old_name, module in {"thinktune.chat": thinktune.data.chat, "thinktune.hardware": thinktune.models.hardware,
                             "thinktune.params": thinktune.config.params}.items():
        sys.modules.setdefault(old_name, module)
    spec = importlib.util.spec_from_file_location("old_training", module_file)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)

    record = {"step_seconds": [], "tokens": 0}

    class Timer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            record["step_seconds"].append(time.perf_counter() - self.start)

    class TimedSFTTrainer(trl.SFTTrainer):
        def __init__(self, *a, callbacks=None, **kw):
            super().__init__(*a, callbacks=[*(callbacks or []), Timer()], **kw)

        def training_step(self, model, inputs, *a, **kw):
            record["tokens"] += int(inputs["attention_mask"].sum()) if "attention_mask" in inputs \
                else int(inputs["input_ids"].numel())
            return super().training_step(model, inputs, *a, **kw)

    trl.SFTTrainer = TimedSFTTrainer  # old.train_lora imports it at call time
    params, train = _train_params(args)
    # The old code read the effective batch as per-device batch x accumulation.
    train = types.SimpleNamespace(**train.model_dump(), per_device_batch_size=1,
                                  gradient_accumulation_steps=train.effective_batch_size)
    old.train_lora(REPO / "models/base", REPO / f"data/formatted/{args.strategy}/train.jsonl", None,
                   out / "adapters", out / "live", params.lora, train, params.format.max_length)
    return {"step_seconds": record["step_seconds"], "tokens": record["tokens"]}


def run_new(args, out: Path) -> dict:
    """LoraTrainer on the same chats, every step of the run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thinktune.models.hardware import resolve_precision, torch_dtype
    from thinktune.training import LoraTrainer
    from thinktune.training.batching import step_chat_ids, total_steps
    from thinktune.training.data import load_tokenized
    from thinktune.training.session import choose_attention

    params, train = _train_params(args)
    tokenizer = AutoTokenizer.from_pretrained(REPO / "models/base")
    chats = load_tokenized(REPO / f"data/formatted/{args.strategy}/train.jsonl", tokenizer, params.format.max_length)
    steps = total_steps(len(chats), train.effective_batch_size, train.epochs, train.max_steps)
    model = AutoModelForCausalLM.from_pretrained(REPO / "models/base", dtype=torch_dtype(resolve_precision(train.precision)),
                                                 attn_implementation=choose_attention(train.attn_implementation, "cpu")[0])
    trainer = LoraTrainer(model, params.lora, train, steps, pad_token_id=tokenizer.pad_token_id or 0)
    record = {"step_seconds": [], "tokens": 0, "micro_batches": []}
    for step in range(1, steps + 1):
        stats = trainer.train_step([chats[i] for i in step_chat_ids(step, len(chats), train.effective_batch_size,
                                                                     train.seed)])
        record["step_seconds"].append(stats.seconds)
        record["tokens"] += stats.tokens
        record["micro_batches"].append(stats.micro_batches)
    return record


def child(args) -> None:
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        record = (run_old if args.child == "old" else run_new)(args, Path(tmp))
    record["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print("RESULT " + json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", default="deep", choices=["deep", "diverse"])
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--batch", type=int, default=None,
                        help="chats per optimizer step (default: train.effective_batch_size of params.yaml)")
    parser.add_argument("--micro-batch-tokens", type=int, default=4096)
    parser.add_argument("--old-rev", default="a9c571f", help="git revision whose thinktune/training.py is the TRL path")
    parser.add_argument("--only", choices=["old", "new"])
    parser.add_argument("--concurrent", action="store_true",
                        help="run both paths at the same time, one thread each: on a busy machine both then "
                             "see the same load, which sequential runs do not")
    parser.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch is None:
        from thinktune.config.params import load_params

        args.batch = load_params(REPO / "params.yaml").train.effective_batch_size
    if args.child:
        child(args)
        return

    from thinktune.models.hardware import describe_environment

    env = describe_environment(args.precision)
    print(f"{env['device_name']}, {os.cpu_count()} cores, precision {env['precision']}, torch {env['torch']}; "
          f"{args.strategy} chats, {args.batch} per step, micro-batch budget {args.micro_batch_tokens} tokens; "
          f"load average {os.getloadavg()[0]:.2f}" + ("; both paths at once, one thread each" if args.concurrent else ""))
    results = {}
    paths = ["old", "new"] if not args.only else [args.only]
    env = os.environ | ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if args.concurrent else {})
    running, outputs = {}, {}
    for path in paths:
        cmd = [sys.executable, "-m", "perf.training_cpu", "--child", path, "--strategy", args.strategy,
               "--precision", args.precision, "--batch", str(args.batch),
               "--micro-batch-tokens", str(args.micro_batch_tokens), "--old-rev", args.old_rev]
        running[path] = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
        if not args.concurrent:
            outputs[path] = running[path].communicate()
    for path, process in running.items():
        stdout, stderr = outputs.get(path) or process.communicate()
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        if process.returncode or not lines:
            sys.exit(f"{path} path failed:\n{stderr[-4000:]}")
        results[path] = r = json.loads(lines[-1][len("RESULT "):])
        seconds = sum(r["step_seconds"])
        later = r["step_seconds"][1:] or r["step_seconds"]
        extra = f", micro-batches per step {sorted(set(r['micro_batches']))}" if "micro_batches" in r else ""
        print(f"{path:>3}: {len(r['step_seconds'])} steps, {seconds / len(r['step_seconds']):.2f} s/step "
              f"(after the first: {sum(later) / len(later):.2f}), {r['tokens']} tokens, "
              f"{r['tokens'] / seconds:.1f} tokens/s, peak RSS {r['peak_rss_gb']:.1f} GB{extra}")
    if len(results) == 2:
        old, new = (sum(results[k]["step_seconds"]) for k in ("old", "new"))
        print(f"new/old step time: {new / old:.2f} (below 1: the new loop is faster)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

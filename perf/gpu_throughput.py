"""GPU throughput of the study's own training and generation code, and the full study's hours.

    python -m perf.gpu_throughput --json gpu_throughput.json          # preset paper, this machine
    python -m perf.gpu_throughput --preset cpu --warmup-steps 1 --train-steps 2 --gen-prompts 12 \
        --gen-prompt-tokens 200 400 --gen-new-tokens 128      # ~8 minutes on a loaded 2-core CPU
    python -m perf.gpu_throughput --tiny --json /tmp/tiny.json        # seconds on a CPU (CI)

The study's GPU figures (those the MFU and decoding targets are stated in), through the real code
paths on a random-initialised model of the preset's architecture (a random model costs exactly
the compute of the trained one, and nothing but the repository must travel to a GPU box: token
ids are synthetic, so no weights and no tokenizer):

- **training**: :meth:`thinktune.training.LoraTrainer.train_step` with the preset's LoRA and
  train params (effective batch, micro-batch token budget, activation checkpointing, attention
  and loss as ``train_lora`` chooses them, precision from ``thinktune.models.hardware``) on synthetic
  chats of a stated length distribution (default: uniform over the paper's 1,500-8,000 tokens,
  scaled to the preset's ``format.max_length``; the answer is the last 70% and carries the
  loss). Warm-up steps are run and not counted. Printed: tokens/s (all tokens and answer
  tokens), s/step, peak memory, MFU = 6 N tokens/s (x 4/3 with activation checkpointing) over
  the GPU's dense bf16/fp16 peak.
- **generation**: :func:`thinktune.generation.chats.generate_tokens` (the decode engine the eval
  stage runs) on P synthetic prompts of 400-900 tokens x T new tokens, no stop tokens (every
  answer runs to T), the preset's decoding and ``eval.batch_size``; one untimed warm-up run,
  then a timed run reusing the engine (its cache and CUDA graphs). Printed: new tokens/s
  (prefill and decode), ms per decode step, whether CUDA graphs were used; the JSON adds
  decode-only tokens/s and both runs' details.
- **projection** of the full study on this machine, from the study preset's schedule
  (``--study-preset``, default paper): training = both datasets' tokens per epoch (5,000 chats
  x ``--mean-chat-tokens``) x epochs / training tokens/s; evaluation = models (base + every
  checkpoint of both strategies) x problems x samples x ``--mean-answer-tokens`` / generation
  tokens/s. Grading time is not included.

Each phase has a budget (``--max-seconds``): no new step starts that would pass it, and a
step still running at the budget is interrupted, so one phase cannot eat a GPU lease. The
JSON (``--json``) is rewritten after every step and run, so a killed run keeps what it
measured. The GPU runbook (carrying the project to a box without network) is in
perf/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from perf._gpu_study import (
    SHAPE_KEYS,
    build_model,
    chat_range,
    mfu,
    model_config,
    peak_flops_for,
    preset_params,
    projection,
    synthetic_chats,
    synthetic_prompts,
)
from thinktune.atomic import write_json
from thinktune.config.params import Params, ParamsError
from thinktune.logs import get_logger
from thinktune.models.hardware import resolve_precision

log = get_logger("gpu_throughput")

# --tiny: the whole benchmark in seconds on a CPU (CI). Flags given explicitly still win.
TINY_SCALE = {"train_steps": 2, "warmup_steps": 1, "chat_tokens": (16, 96), "gen_prompts": 4,
              "gen_prompt_tokens": (8, 24), "gen_new_tokens": 8}
FULL_SCALE = {"train_steps": 5, "warmup_steps": 2, "chat_tokens": None, "gen_prompts": 41,
              "gen_prompt_tokens": (400, 900), "gen_new_tokens": 1024}


class PhaseBudget(BaseException):
    """The phase's time is up (a BaseException: library code catching Exception must not swallow it)."""


# --- budgets -------------------------------------------------------------------------------

@contextlib.contextmanager
def hard_limit(seconds: float | None):
    """Raise :class:`PhaseBudget` in this (main) thread after ``seconds``, and again every second
    until the block is left (should library code turn the first into another error and carry
    on); SIGALRM, so a no-op off the main thread or off POSIX."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise PhaseBudget(f"phase budget of {seconds:g} s reached")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_steps(step: Callable[[int, bool], float], warmup: int, steps: int, budget: float | None,
              started: float) -> str:
    """``step(i, is_warmup) -> seconds`` for warm-up then timed steps; none starts that the last
    one's duration says would pass ``budget`` seconds after ``started``. Returns the status."""
    last = 0.0
    for i in range(1, warmup + steps + 1):
        if budget and i > 1 and time.perf_counter() - started + last > budget:
            return f"stopped by the phase budget ({budget:g} s) after {i - 1} of {warmup + steps} steps"
        last = step(i, i <= warmup)
    return "measured"


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def free_device_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- phases --------------------------------------------------------------------------------

class Bench:
    """The resolved settings of one run, its report (JSON) and the phases that fill it."""

    def __init__(self, args, params: Params, study: Params, config, config_source: str):
        import torch

        self.args, self.params, self.study, self.config = args, params, study, config
        self.on_cuda = torch.cuda.is_available()
        self.device = "cuda" if self.on_cuda else "cpu"
        self.device_name = torch.cuda.get_device_name(0) if self.on_cuda else None
        self.peak_flops, self.peak_flops_source = peak_flops_for(self.device_name, args.peak_flops)
        self.train = params.train.model_copy(update={k: v for k, v in {
            "precision": args.precision, "attn_implementation": args.attn}.items() if v})
        self.n_params: int | None = None
        self.report: dict = {"benchmark": "gpu_throughput", "command": " ".join(["python -m perf.gpu_throughput",
                                                                                 *args.argv]),
                             "preset": args.preset, "tiny": args.tiny,
                             "model": {"name": params.model.name, "architecture_from": config_source,
                                       "weights": "random-initialised (same compute as the trained model)",
                                       **{k: getattr(config, k) for k in SHAPE_KEYS},
                                       "tie_word_embeddings": config.tie_word_embeddings}}

    def count_parameters(self, model) -> None:
        """N of the MFU formula: the base model's parameters (tied embeddings once, no adapter)."""
        self.n_params = sum(p.numel() for p in model.parameters())
        self.report["model"]["parameters"] = self.n_params

    def update_projection(self) -> None:
        args, report = self.args, self.report
        report["projection"] = projection(
            self.study, args.study_preset, args.study_chats, args.mean_chat_tokens, args.study_problems,
            args.mean_answer_tokens, report.get("train", {}).get("tokens_per_s"),
            report.get("generate", {}).get("tokens_per_s"))
        if self.params.model.name != self.study.model.name or args.tiny:
            measured = "a tiny model" if args.tiny else self.params.model.name
            report["projection"]["caveat"] = (f"measured with {measured}; the study trains {self.study.model.name}: "
                                              "this is the study's schedule at the measured model's speed")

    def save(self) -> None:
        if self.args.json:
            write_json(self.args.json, self.report)

    def run_phase(self, name: str, phase: Callable[[dict, float], str]) -> None:
        """``phase(section, started) -> status``; a budget stop or a failure is recorded, not raised."""
        section = self.report[name] = {"status": "running"}
        self.save()
        started = time.perf_counter()
        budget = self.args.max_seconds or None
        log.info("%s: starting (budget %s)", name, f"{budget:g} s" if budget else "none")
        try:
            with hard_limit(budget):
                section["status"] = phase(section, started)
        except PhaseBudget:
            section["status"] = f"interrupted by the phase budget ({budget:g} s); figures are those measured before"
        except Exception as exc:  # the next phase still runs; the report says what failed
            log.exception("%s failed", name)
            section["status"] = "failed"
            section["error"] = f"{type(exc).__name__}: {exc}"
        section["phase_seconds"] = time.perf_counter() - started
        free_device_memory()
        log.info("%s: %s after %.1f s", name, section["status"], section["phase_seconds"])
        self.update_projection()
        self.save()

    # -- training ---------------------------------------------------------------------

    def train_phase(self, section: dict, started: float) -> str:
        from tqdm.auto import tqdm

        from thinktune.training.session import LoraTrainer, choose_attention

        args, train = self.args, self.train
        precision = resolve_precision(train.precision)
        attention, attention_fallback = choose_attention(train.attn_implementation, self.device)
        low, high = args.chat_tokens
        batch = train.effective_batch_size
        model = build_model(self.config, precision, attention, self.device, train.seed)
        self.count_parameters(model)
        trainer = LoraTrainer(model, self.params.lora, train, total_steps=args.warmup_steps + args.train_steps,
                              loss_impl=args.loss)
        trainable, _ = trainer.trainable_parameters()
        section.update({
            "chats": f"uniform {low:,}-{high:,} tokens per chat, the answer (loss) the last {args.answer_fraction:.0%}, "
                     f"random token ids, seed {train.seed}",
            "chats_per_step": batch, "micro_batch_tokens": train.micro_batch_tokens,
            "activation_checkpointing": train.gradient_checkpointing, "precision": precision, "attention": attention,
            "loss": trainer.loss_impl, "fallbacks": [
                *([{"what": "attention", "used": attention, "why": attention_fallback}] if attention_fallback else []),
                *([{"what": "loss", "used": trainer.loss_impl, "why": trainer.loss_fallback}]
                  if trainer.loss_fallback else [])],
            "lora": self.params.lora.model_dump(), "parameters": self.n_params,
            "trainable_parameters": trainable, "warmup_steps": args.warmup_steps, "steps": []})
        log.info("training: %d+%d steps of %d chats (%s), micro-batches <= %d tokens, %s, attention %s, loss %s, "
                 "activation checkpointing %s", args.warmup_steps, args.train_steps, batch, section["chats"],
                 train.micro_batch_tokens, precision, attention, trainer.loss_impl, train.gradient_checkpointing)
        bar = tqdm(total=args.warmup_steps + args.train_steps, desc="train", unit="step")

        def step(i: int, warmup: bool) -> float:
            chats = synthetic_chats(batch, low, high, args.answer_fraction, self.config.vocab_size, f"{train.seed}-{i}")
            stats = trainer.train_step(chats)
            section["steps"].append({
                "step": i, "warmup": warmup, "chats": stats.chats, "tokens": stats.tokens,
                "answer_tokens": stats.target_tokens, "micro_batches": stats.micro_batches, "seconds": stats.seconds,
                "loss": stats.loss, "peak_memory_bytes": stats.peak_memory_bytes, "skipped": stats.skipped})
            section.update(self.training_figures(section["steps"]))
            self.save()
            bar.update(1)
            bar.set_postfix_str(f"{stats.tokens_per_s:.0f} tok/s{' (warm-up)' if warmup else ''}")
            return stats.seconds

        try:
            return run_steps(step, args.warmup_steps, args.train_steps, args.max_seconds or None, started)
        finally:
            bar.close()
            trainer.accelerator.free_memory()

    def training_figures(self, records: list[dict]) -> dict:
        """Figures over the timed steps (over the warm-up steps only if no timed step finished)."""
        timed = [r for r in records if not r["warmup"]]
        used = timed or records
        tokens, answer = sum(r["tokens"] for r in used), sum(r["answer_tokens"] for r in used)
        seconds = sum(r["seconds"] for r in used)
        tokens_per_s = tokens / seconds
        peaks = [r["peak_memory_bytes"] for r in records if r["peak_memory_bytes"] is not None]
        return {
            "timed_steps": len(used), "figures_include_warmup": not timed, "tokens": tokens, "answer_tokens": answer,
            "seconds": seconds, "tokens_per_s": tokens_per_s, "answer_tokens_per_s": answer / seconds,
            "seconds_per_step": seconds / len(used),
            "micro_batches_per_step": sorted({r["micro_batches"] for r in used}),
            "peak_memory_bytes": max(peaks) if peaks else peak_rss_bytes(),
            "peak_memory_measure": "torch.cuda.max_memory_allocated" if peaks else "peak RSS of the process (CPU)",
            "mfu": mfu(self.n_params, tokens_per_s, self.train.gradient_checkpointing, self.peak_flops),
            "mfu_formula": "6 * parameters * tokens/s" + (" * 4/3" if self.train.gradient_checkpointing else "")
                           + " / peak FLOP/s",
            "peak_flops": self.peak_flops, "peak_flops_source": self.peak_flops_source,
        }

    # -- generation -------------------------------------------------------------------

    def generate_phase(self, section: dict, started: float) -> str:
        import torch

        from thinktune.generation.chats import generate_tokens
        from thinktune.generation.settings import DecodingSettings

        args, evaluation = self.args, self.params.eval
        precision = resolve_precision(args.precision or evaluation.precision)
        settings = replace(DecodingSettings.from_params(evaluation), max_new_tokens=args.gen_new_tokens,
                           batch_size=args.gen_batch or evaluation.batch_size)
        mode = args.decode_mode or ("auto" if evaluation.cuda_graphs else "eager")
        low, high = args.gen_prompt_tokens
        prompts = synthetic_prompts(args.gen_prompts, low, high, self.config.vocab_size, evaluation.seed)
        # sdpa: what the eval stage's from_pretrained gives and the decode engine is written for.
        model = build_model(self.config, precision, "sdpa", self.device, evaluation.seed).eval()
        self.count_parameters(model)
        if self.on_cuda:
            torch.cuda.reset_peak_memory_stats()
        section.update({
            "prompts": f"{args.gen_prompts} prompts of {low:,}-{high:,} tokens (uniform, random ids, seed "
                       f"{evaluation.seed})",
            "new_tokens_per_answer": args.gen_new_tokens, "stop_tokens": "none (every answer runs to the limit)",
            "decoding": settings.describe(), "batch_size": settings.batch_size, "decode_mode": mode,
            "precision": precision, "attention": "sdpa"})
        log.info("generation: %s x %d new tokens, %s, batch %d, decode mode %s, %s", section["prompts"],
                 args.gen_new_tokens, settings.describe()["strategy"], settings.batch_size, mode, precision)

        def timed_run(engine, desc: str):
            began = time.perf_counter()
            run = generate_tokens(model, prompts, settings, stop_ids=set(), engine=engine, desc=desc, mode=mode)
            return run, self.generation_figures(run, time.perf_counter() - began)

        warm, section["warmup_run"] = timed_run(None, "generate (warm-up)")
        section.update(section["warmup_run"], figures_from="warm-up run (engine built, graphs captured)")
        self.save()
        elapsed = time.perf_counter() - started
        status = "measured"
        if args.max_seconds and elapsed + section["warmup_run"]["wall_s"] > args.max_seconds:
            status = f"the timed run would pass the phase budget ({args.max_seconds:g} s): figures are the warm-up's"
        else:
            _, section["timed_run"] = timed_run(warm.engine, "generate (timed)")
            section.update(section["timed_run"], figures_from="timed run (engine reused)")
        section["peak_memory_bytes"] = torch.cuda.max_memory_allocated() if self.on_cuda else peak_rss_bytes()
        section["peak_memory_measure"] = "torch.cuda.max_memory_allocated" if self.on_cuda \
            else "peak RSS of the process (CPU)"
        return status

    @staticmethod
    def generation_figures(run, wall_s: float) -> dict:
        stats = run.stats
        seconds = stats.prefill_s + stats.decode_s
        return {
            "answers": sum(len(c) for c in run.completions),
            "answers_at_limit": sum(s.hit_token_limit for c in run.completions for s in c),
            "prompt_tokens": stats.prompt_tokens, "new_tokens": stats.new_tokens,
            "prefill_s": stats.prefill_s, "decode_s": stats.decode_s, "seconds": seconds, "wall_s": wall_s,
            "tokens_per_s": stats.new_tokens / seconds,
            "decode_tokens_per_s": stats.decode_tokens / stats.decode_s if stats.decode_s else None,
            "decode_steps": stats.decode_steps,
            "ms_per_decode_step": 1000 * stats.decode_s / stats.decode_steps if stats.decode_steps else None,
            "engine_slots": run.engine.slots, "max_active": stats.max_active, "cuda_graphs": stats.cuda_graphs,
            "graphs_captured": stats.graphs_captured,
        }


# --- command line --------------------------------------------------------------------------

def parse_args(argv: list[str] | None):
    from thinktune.generation.engine import MODES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", help="conf/presets/<name>.yaml applied onto params.yaml (default paper)")
    p.add_argument("--tiny", action="store_true", help="a tiny model of the same family, short chats, few tokens: "
                   "the whole run in seconds on a CPU (CI)")
    p.add_argument("--json", type=Path, help="write the figures here (rewritten after every step and run)")
    p.add_argument("--phases", nargs="+", choices=["train", "generate"], default=["train", "generate"])
    p.add_argument("--max-seconds", type=float, default=300, help="time budget of each phase, model build "
                   "included (default 300; 0: none)")
    g = p.add_argument_group("training")
    g.add_argument("--train-steps", type=int, help="timed optimizer steps (default 5; tiny 2)")
    g.add_argument("--warmup-steps", type=int, help="untimed optimizer steps first (default 2; tiny 1)")
    g.add_argument("--chat-tokens", type=int, nargs=2, metavar=("LOW", "HIGH"),
                   help="chat length range (default 1500-8000 scaled to format.max_length/8192; tiny 16-96)")
    g.add_argument("--answer-fraction", type=float, default=0.7, help="share of each chat that is the answer")
    g.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], help="default: the preset's")
    g.add_argument("--attn", choices=["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"],
                   help="training attention (default: train.attn_implementation)")
    g.add_argument("--loss", choices=["auto", "liger", "chunked"], default="auto")
    g.add_argument("--peak-flops", type=float, help="the device's peak FLOP/s for MFU (default: a table of GPUs)")
    g = p.add_argument_group("generation")
    g.add_argument("--gen-prompts", type=int, help="prompts (default 41; tiny 4)")
    g.add_argument("--gen-prompt-tokens", type=int, nargs=2, metavar=("LOW", "HIGH"), help="default 400 900")
    g.add_argument("--gen-new-tokens", type=int, help="new tokens per answer (default 1024; tiny 8)")
    g.add_argument("--gen-batch", type=int, help="answers decoded at once (default eval.batch_size)")
    g.add_argument("--decode-mode", choices=MODES, help="default: auto (CUDA graphs on CUDA) unless eval.cuda_graphs "
                   "is false")
    g = p.add_argument_group("projection")
    g.add_argument("--study-preset", default="paper", help="the preset whose schedule is the full study")
    g.add_argument("--study-chats", type=int, default=5000, help="chats per dataset")
    g.add_argument("--mean-chat-tokens", type=int, default=4000)
    g.add_argument("--study-problems", type=int, default=41)
    g.add_argument("--mean-answer-tokens", type=int, default=2000)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for key, value in (TINY_SCALE if args.tiny else FULL_SCALE).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def check_args(args, params: Params) -> None:
    """Bad flags stop the run before any model is built, naming the flag."""
    if args.chat_tokens is None:
        args.chat_tokens = chat_range(params.format.max_length)
    positive = {"--train-steps": args.train_steps, "--gen-prompts": args.gen_prompts,
                "--gen-new-tokens": args.gen_new_tokens, "--gen-batch": args.gen_batch or 1,
                "--study-chats": args.study_chats, "--mean-chat-tokens": args.mean_chat_tokens,
                "--study-problems": args.study_problems, "--mean-answer-tokens": args.mean_answer_tokens}
    problems = [f"{flag} must be positive, got {value}" for flag, value in positive.items() if value <= 0]
    if args.warmup_steps < 0 or args.max_seconds < 0:
        problems.append("--warmup-steps and --max-seconds cannot be negative")
    if not 0 < args.answer_fraction < 1:
        problems.append(f"--answer-fraction must be between 0 and 1, got {args.answer_fraction}")
    low, high = args.chat_tokens
    if not 2 <= low <= high:
        problems.append(f"--chat-tokens {low} {high}: need 2 <= LOW <= HIGH")
    if high > params.format.max_length:
        problems.append(f"--chat-tokens HIGH {high} is above the preset's format.max_length "
                        f"({params.format.max_length}): such chats never reach training")
    if not 1 <= args.gen_prompt_tokens[0] <= args.gen_prompt_tokens[1]:
        problems.append(f"--gen-prompt-tokens {args.gen_prompt_tokens}: need 1 <= LOW <= HIGH")
    if problems:
        raise ParamsError("; ".join(problems))


def machine(report: dict, bench: Bench) -> str:
    import torch

    from thinktune.models.hardware import describe_environment

    env = describe_environment(bench.args.precision or bench.params.train.precision)
    report["machine"] = env | {
        "is_cpu": not bench.on_cuda, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda, "load_average_before": os.getloadavg(),
        "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory if bench.on_cuda else None}
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    if bench.on_cuda:
        return f"machine: GPU {env['device_name']} (x{env['device_count']}), CUDA {torch.version.cuda}, {load}"
    return (f"machine: a CPU, no GPU ({env['device_name']}, {os.cpu_count()} cores, {load}): "
            "every figure below is a CPU figure, not a GPU's")


def gib(n: int | None) -> str:
    return f"{n / 2**30:.2f} GiB" if n is not None else "?"


def num(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "n/a"


def summary(report: dict) -> list[str]:
    lines = []
    train, gen, proj = report.get("train"), report.get("generate"), report.get("projection")
    if train and "tokens_per_s" in train:
        use = "MFU " + (f"{train['mfu']:.1%}" if train["mfu"] is not None else f"n/a ({train['peak_flops_source']})")
        lines.append(f"training [{train['status']}]: {train['timed_steps']} step(s) of {train['chats_per_step']} "
                     f"chats ({train['chats']}), micro-batches <= {train['micro_batch_tokens']} tokens, activation "
                     f"checkpointing {train['activation_checkpointing']}, {train['precision']}, attention "
                     f"{train['attention']}, loss {train['loss']}")
        lines.append(f"  {train['tokens_per_s']:,.0f} tokens/s ({train['answer_tokens_per_s']:,.0f} answer tokens/s), "
                     f"{train['seconds_per_step']:.2f} s/step, peak {gib(train['peak_memory_bytes'])} "
                     f"({train['peak_memory_measure']}), {use}")
    elif train:
        lines.append(f"training [{train['status']}]: no step measured {train.get('error', '')}")
    if gen and "tokens_per_s" in gen:
        lines.append(f"generation [{gen['status']}]: {gen['prompts']} x {gen['new_tokens_per_answer']} new tokens, "
                     f"{gen['decoding']['strategy']}, batch {gen['batch_size']}, {gen['precision']}; figures of the "
                     f"{gen['figures_from']}")
        lines.append(f"  {gen['tokens_per_s']:,.1f} tokens/s ({gen['new_tokens']:,} new tokens in {gen['seconds']:.1f} "
                     f"s: prefill {gen['prefill_s']:.1f} s, decode {gen['decode_s']:.1f} s, "
                     f"{num(gen['ms_per_decode_step'], '.1f')} ms/step), CUDA graphs {gen['cuda_graphs']}, "
                     f"peak {gib(gen['peak_memory_bytes'])}")
    elif gen:
        lines.append(f"generation [{gen['status']}]: no run measured {gen.get('error', '')}")
    if proj:
        hours = {k: f"{proj[k]:,.1f} h" if proj[k] is not None else "not measured"
                 for k in ("training_hours", "evaluation_hours", "total_hours")}
        lines.append(f"projected full study on this machine ({proj['schedule']}; mean chat "
                     f"{proj['assumptions']['mean_chat_tokens']:,} tokens, mean answer "
                     f"{proj['assumptions']['mean_answer_tokens']:,} tokens; {proj['models_evaluated']} models):")
        lines.append(f"  training {hours['training_hours']} + evaluation {hours['evaluation_hours']} = "
                     f"{hours['total_hours']} (grading excluded)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        params, study = preset_params(args.preset), preset_params(args.study_preset)
        check_args(args, params)
        config, source = model_config(params.model.name, args.tiny)
    except (ParamsError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    bench = Bench(args, params, study, config, source)
    report = bench.report
    banner = machine(report, bench)
    print(banner, flush=True)
    for name in args.phases:
        bench.run_phase(name, bench.train_phase if name == "train" else bench.generate_phase)
    report["machine"]["load_average_after"] = os.getloadavg()
    bench.update_projection()
    bench.save()
    size = f"{bench.n_params / 1e6:,.1f} M parameters" if bench.n_params else "not built"
    print("\n".join([f"model: random-initialised, {source}, {size}", *summary(report)]
                    + ([f"  caveat: {report['projection']['caveat']}"] if "caveat" in report["projection"] else [])
                    + [f"load average after: {'{:.2f} {:.2f} {:.2f}'.format(*os.getloadavg())}"]
                    + ([f"figures written to {args.json}"] if args.json else [])))
    return 0 if all(report[name]["status"] != "failed" for name in args.phases) else 1


if __name__ == "__main__":
    sys.exit(main())

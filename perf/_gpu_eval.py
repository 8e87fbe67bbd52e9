"""``perf.gpu_check``'s preflight and its measure of the evaluation as the stages run it.

- :func:`preflight` (about 30 s on a GPU): every import the check needs and the carried wheels'
  requirements (``perf.gpu_wheels``), a tiny flex-attention compile checked against sdpa, a
  tiny CUDA-graph capture and replay, the FlashAttention 2 probe and the Liger import. Each
  failure names its fix; a slower path the study would take is recorded as a fallback.
- :func:`eval_decode`: decode tokens/s through the evaluation's public entry,
  :class:`thinktune.generation.parallel.LocalGenerator` (the base model loaded by ``ModelHost``,
  a checkpoint's adapter applied unmerged, the decode engine, its CUDA graphs), so it measures
  whatever path the stages run: n = 1 greedy at batch 41 with graphs on and off and with the
  adapter merged (reference), and n = 16 sampled; peak memory of each.

A random-initialised model of the scale's architecture is saved with a word-level tokenizer
over its whole vocabulary (``t0`` ... ``tN``, a ChatML template), so the prompts' token ids are
synthetic and nothing has to be downloaded.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from perf._gpu_checks import Scale, config_for
from perf._gpu_study import build_model, synthetic_prompts
from perf.gpu_throughput import free_device_memory

IMPORTS = ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "huggingface_hub", "regex",
           "yaml", "tqdm", "pydantic", "thinktune.training.session", "thinktune.generation.parallel")
FLEX_TOL = 2e-2  # tiny flex attention vs sdpa, bf16: max |difference| over max |sdpa|
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0-2 of the word-level tokenizer; prompts avoid them
WHEELS_FIX = "carry the wheel in .gpu-wheels (python -m perf.gpu_wheels lists them; perf/README.md runbook)"


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def preflight(record: dict, device: str) -> str:
    """Fill ``record`` (steps, problems with their fixes, fallbacks); ``passed`` or ``FAILED``."""
    from perf.gpu_wheels import installed_unmet

    problems, fallbacks, steps = [], [], {}
    record.update(steps=steps, problems=problems, fallbacks=fallbacks)
    began = time.perf_counter()
    for name in IMPORTS:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - every import failure is reported with its fix
            problems.append(f"import {name}: {_first_line(exc)}; fix: {WHEELS_FIX}")
    problems += [f"{p}; fix: {WHEELS_FIX}" for p in installed_unmet()]
    steps["imports"] = {"modules": list(IMPORTS), "seconds": time.perf_counter() - began}
    record["imports_ok"] = not problems
    if problems:
        return "FAILED"
    on_cuda = device == "cuda"
    steps["flex_attention"] = _flex(device, problems, fallbacks)
    steps["cuda_graph"] = _graph(device, problems, fallbacks) if on_cuda else {"status": "not run: no CUDA here"}
    if on_cuda:
        from thinktune.training.loss import liger_available
        from thinktune.training.session import flash_attention_problem

        flash = flash_attention_problem(device)
        steps["flash_attention_2"] = {"problem": flash}
        if flash:
            fallbacks.append({"what": "attention", "used": "flex_attention", "why": flash})
        steps["liger"] = {"available": liger_available()}
        if not steps["liger"]["available"]:
            fallbacks.append({"what": "loss", "used": "chunked", "why": "liger-kernel is not importable; fix: carry "
                              "its wheel (pure Python, Triton comes with torch)"})
    record["seconds"] = time.perf_counter() - began
    return "FAILED" if problems else "passed"


def _flex(device: str, problems: list, fallbacks: list) -> dict:
    """A tiny causal flex attention (compiled on CUDA; eager on a CPU, standing in) against sdpa."""
    import torch
    import torch.nn.functional as F

    began = time.perf_counter()
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        q = torch.randn(1, 2, 256, 64, device=device, dtype=torch.bfloat16, generator=None)
        block = create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 1, 1, 256, 256, device=device)
        run = torch.compile(flex_attention) if device == "cuda" else flex_attention
        got = run(q, q, q, block_mask=block)
        want = F.scaled_dot_product_attention(q, q, q, is_causal=True)
        error = float((got.float() - want.float()).abs().max() / want.float().abs().max())
    except Exception as exc:  # noqa: BLE001 - recorded with its fix
        problem = _first_line(exc)
        problems.append(f"flex attention: {problem}; fix: install a torch whose Triton and inductor run here, or "
                        "set train.attn_implementation=sdpa (a dense mask per packed row: slower, more memory)")
        fallbacks.append({"what": "attention", "used": "sdpa", "why": f"flex attention failed: {problem}"})
        return {"status": "failed", "error": problem, "seconds": time.perf_counter() - began}
    from transformers.integrations.flex_attention import WrappedFlexAttention

    from thinktune.training.session import compile_flex_attention_once

    compile_flex_attention_once()  # as LoraTrainer does: one compiled callable for train and eval
    compiled_once = WrappedFlexAttention(True)() is WrappedFlexAttention(False)()
    if not compiled_once:
        problems.append("transformers recompiles flex attention at each train/eval switch; fix: update "
                        "compile_flex_attention_once (thinktune/training/session.py) for this transformers")
    if error > FLEX_TOL:
        problems.append(f"flex attention differs from sdpa by {error:.2e} of the largest value (> {FLEX_TOL}); fix: "
                        "set train.attn_implementation=sdpa until torch is upgraded")
    return {"status": "compiled" if device == "cuda" else "eager on a CPU (stands in for the compile)",
            "max_rel_diff_vs_sdpa": error, "compiled_once_for_train_and_eval": compiled_once,
            "seconds": time.perf_counter() - began}


def _graph(device: str, problems: list, fallbacks: list) -> dict:
    """A tiny CUDA graph: capture a matmul, replay it on new input, compare with eager."""
    import torch

    began = time.perf_counter()
    try:
        x = torch.randn(64, 64, device=device)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            (x @ x).sum()  # warm-up on a side stream, as capture requires
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            y = x @ x
        x.copy_(torch.randn(64, 64, device=device))
        graph.replay()
        torch.cuda.synchronize()
        ok = bool(torch.allclose(y, x @ x))
    except Exception as exc:  # noqa: BLE001 - recorded with its fix
        problem = _first_line(exc)
        problems.append(f"CUDA graph capture: {problem}; fix: a driver and torch build that capture, or set "
                        "eval.cuda_graphs=false (eager decode, slower)")
        fallbacks.append({"what": "cuda_graphs", "used": "eager decode", "why": problem})
        return {"status": "failed", "error": problem, "seconds": time.perf_counter() - began}
    if not ok:
        problems.append("CUDA graph replay differs from eager; fix: set eval.cuda_graphs=false")
    return {"status": "captured and replayed" if ok else "replay differs", "seconds": time.perf_counter() - began}


# --- the evaluation's decode -------------------------------------------------------------

def word_tokenizer(vocab_size: int):
    """A fast tokenizer over ``vocab_size`` ids: three ChatML specials, then ``t3`` ... (one word, one id)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)} | {f"t{i}": i for i in range(len(SPECIALS), vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=list(SPECIALS))
    fast.chat_template = ("{% for m in messages %}{{ '<|im_start|> ' + m['content'] + ' <|im_end|> ' }}{% endfor %}"
                          "{% if add_generation_prompt %}{{ '<|im_start|> ' }}{% endif %}")
    return fast


def save_models(scale: Scale, device: str, lora, work: Path) -> tuple[Path, Path, Path, str, object]:
    """(base dir, adapter dir, merged dir, description, tokenizer): a random base with a random
    adapter (B != 0). ``AutoTokenizer`` loads a Qwen2 model's folder as a BPE ``Qwen2Tokenizer``
    whatever tokenizer was saved there, so the caller hands the word-level one to the generator."""
    import copy

    import torch
    from peft import get_peft_model

    from thinktune.training.session import lora_config

    config, source = config_for(scale)
    tokenizer = word_tokenizer(config.vocab_size)
    config.eos_token_id, config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    base = build_model(config, "bf16", "sdpa", device, scale.seed).eval()
    base.generation_config.eos_token_id = tokenizer.eos_token_id
    dirs = work / "base", work / "adapter", work / "merged"
    base.save_pretrained(dirs[0])
    tokenizer.save_pretrained(dirs[0])
    adapter = lora_config(lora)
    adapter.init_lora_weights = False  # random A and B: the adapter changes the answers
    torch.manual_seed(scale.seed)
    peft_model = get_peft_model(copy.deepcopy(base), adapter)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.05)  # an effect of the size a trained adapter has, not one that swamps the base
    peft_model.save_pretrained(dirs[1])
    peft_model.merge_and_unload().save_pretrained(dirs[2])
    tokenizer.save_pretrained(dirs[2])
    del base, peft_model
    return *dirs, source, tokenizer


EVAL_RUNS = (  # (name, which model, CUDA graphs, sampled n = 16); one generator (model) loaded at a time
    ("greedy_unmerged_graphs", "adapter", True, False),
    ("sampled_n16_unmerged_graphs", "adapter", True, True),
    ("greedy_unmerged_no_graphs", "adapter", False, False),
    ("greedy_merged_graphs", "merged", True, False),
)


def _timed_generate(generator, adapter, chats, settings, label: str) -> tuple[dict, float, int]:
    """(the engine's figures, wall seconds, answers) of one ``LocalGenerator.generate``."""
    began = time.perf_counter()
    answers = generator.generate(adapter, chats, settings, label=label)
    return dict(generator.last_stats), time.perf_counter() - began, sum(len(a) for a in answers)


def eval_decode(record: dict, scale: Scale, device: str, lora, evaluation, work: Path) -> str:
    """Decode tokens/s of the evaluation path (see the module docstring); ``measured`` or ``FAILED``."""
    import resource
    from dataclasses import replace

    import torch

    from thinktune.generation.parallel import LocalGenerator
    from thinktune.generation.settings import DecodingSettings

    on_cuda = device == "cuda"
    base_dir, adapter_dir, merged_dir, source, tokenizer = save_models(scale, device, lora, work)
    config, _ = config_for(scale)
    prompts = synthetic_prompts(scale.eval_prompts, *scale.eval_prompt_tokens, config.vocab_size, scale.seed + 2)
    chats = [[{"role": "user", "content": " ".join(f"t{max(i, len(SPECIALS))}" for i in ids)}] for ids in prompts]
    greedy = DecodingSettings(max_new_tokens=scale.eval_new_tokens, batch_size=len(chats), seed=evaluation.seed)
    sampled = replace(greedy, temperature=evaluation.temperature or 0.2, top_p=evaluation.top_p, n_samples=16,
                      max_new_tokens=scale.eval_sampled_new_tokens, batch_size=16 * scale.eval_sampled_prompts)
    record.update({"model": source, "precision": "bf16", "entry": "thinktune.generation.parallel.LocalGenerator",
                   "prompts": len(chats), "prompt_tokens": list(scale.eval_prompt_tokens),
                   "greedy": greedy.describe() | {"batch_size": greedy.batch_size},
                   "sampled": sampled.describe() | {"batch_size": sampled.batch_size,
                                                    "prompts": scale.eval_sampled_prompts},
                   "adapter": f"random LoRA (B scaled 0.05), r {lora.r}, targets {list(lora.target_modules)}",
                   "runs": {}, "fallbacks": []})
    loaded, generator = None, None
    for name, which, graphs, is_sampled in EVAL_RUNS:
        if loaded != (which, graphs):
            del generator
            free_device_memory()
            generator = LocalGenerator(merged_dir if which == "merged" else base_dir, "bf16", device, graphs)
            generator.host.tokenizer = tokenizer  # see save_models
            loaded = which, graphs
        settings = sampled if is_sampled else greedy
        use = chats[:scale.eval_sampled_prompts] if is_sampled else chats
        adapter = adapter_dir if which == "adapter" else None
        if on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        generator.generate(adapter, use[:1], replace(settings, max_new_tokens=4, n_samples=1), label=f"{name} warm-up")
        first = None
        if graphs:  # the first run captures the graphs of its shapes (on CUDA): timed apart, then run again
            first = dict(_timed_generate(generator, adapter, use, settings, name + " (captures)")[0])
        stats, wall_s, answers = _timed_generate(generator, adapter, use, settings, name)
        run = {**stats, "wall_s": wall_s, "answers": answers, "cuda_graphs_requested": graphs and on_cuda,
               "first_run_with_captures": None if first is None else
               {k: first.get(k) for k in ("tokens_per_s", "decode_tokens_per_s", "graphs_captured")},
               "peak_memory_bytes": torch.cuda.max_memory_allocated() if on_cuda
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               "peak_memory_measure": "torch.cuda.max_memory_allocated" if on_cuda else "peak RSS (CPU)"}
        record["runs"][name] = run
        if run["cuda_graphs_requested"] and not stats.get("cuda_graphs"):
            record["fallbacks"].append({"what": "cuda_graphs", "used": f"eager decode in {name}",
                                        "why": stats.get("graphs_off_reason")})
    runs = record["runs"]
    record["unmerged_vs_merged"] = (runs["greedy_unmerged_graphs"]["tokens_per_s"]
                                    / runs["greedy_merged_graphs"]["tokens_per_s"])
    record["graphs_speedup"] = (runs["greedy_unmerged_graphs"]["tokens_per_s"]
                                / runs["greedy_unmerged_no_graphs"]["tokens_per_s"])
    ok = all(r["answers"] and r["tokens_per_s"] for r in runs.values())
    return "measured" if ok else "FAILED"

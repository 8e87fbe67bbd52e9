"""Evaluate one model (the base, or the base plus one LoRA checkpoint) on the eval problems.

For each problem: ask with the chat template (batched), take the code after the
reasoning, run it against every test in the sandbox, and keep a per-problem record
(raw answer, graded code, verdicts, reasoning length, whether the token limit cut it).

Graded answers are cached outside the repository, keyed by everything that decides the
outcome (weights, problems, decoding and grading settings), so re-running the stage after
adding a checkpoint grades only the new one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from thinktune.atomic import read_jsonl, write_jsonl
from thinktune.benchmark import Problem, get_benchmark
from thinktune.chat import eval_messages
from thinktune.extract import extract_code, split_reasoning
from thinktune.generation import DecodingSettings, generate_chats
from thinktune.grading import grade_many
from thinktune.hardware import resolve_precision, torch_dtype
from thinktune.logs import get_logger
from thinktune.modelsource import cache_dir
from thinktune.params import EvalParams
from thinktune.sandbox import Limits
from thinktune.stats import mean_pass_at_k, wilson_interval

log = get_logger("evaluation")

# Bump when the record format changes. The code that decides a record's content (prompt,
# generation, extraction, grading, sandbox) is hashed into the cache key as well, so a
# change there never reuses answers graded the old way.
RECORD_VERSION = 2
_RECORD_CODE = [Path(__file__).parent / f"{name}.py" for name in (
    "benchmark", "livecodebench", "humaneval", "chat", "generation", "extract", "grading", "sandbox", "evaluation")]

# pass@k reported beside Pass@1 when every problem has at least k samples (eval.n_samples).
PASS_AT_K = (5, 10)


def load_model(base_dir: Path, adapter_dir: Path | None, precision: str):
    """The base model, with the adapter merged in when given (merged: generation runs at base speed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch_dtype(resolve_precision(precision))
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval(), tokenizer


def limits_from(params: EvalParams) -> Limits:
    return Limits(timeout_s=params.timeout_s, memory_mb=params.memory_mb)


def grade_answers(problems: list[Problem], answers: list[list], params: EvalParams) -> list[dict]:
    """Per-problem records for generated answers (``answers[i]`` holds problem i's samples)."""
    samples = [(p, g) for p, gens in zip(problems, answers, strict=True) for g in gens]
    benchmark = get_benchmark(params.benchmark)
    codes = [extract_code(g.text) for _, g in samples]
    jobs = [(benchmark.program_to_grade(p, code), benchmark.tests(p), p.func_name)
            for code, (p, _) in zip(codes, samples)]
    grades = grade_many(jobs, limits_from(params), workers=params.workers,
                        stop_at_first_failure=True, progress=True)

    by_problem: dict[str, list[dict]] = {p.question_id: [] for p in problems}
    for (problem, gen), code, grade in zip(samples, codes, grades, strict=True):
        reasoning, _ = split_reasoning(gen.text)
        by_problem[problem.question_id].append({
            "raw_output": gen.text,
            "code": code,
            "reasoning_chars": len(reasoning),
            "new_tokens": gen.new_tokens,
            "hit_token_limit": gen.hit_token_limit,
            "verdicts": [str(v.value) for v in grade.verdicts],
            "first_failure": grade.first_failure,
            "passed": grade.passed,
        })
    records = []
    for problem in problems:
        samples_of = by_problem[problem.question_id]
        n_correct = sum(s["passed"] for s in samples_of)
        records.append({
            "question_id": problem.question_id,
            "difficulty": problem.difficulty,
            "n_samples": len(samples_of),
            "n_correct": n_correct,
            "pass_at_1": n_correct / len(samples_of),
            "samples": samples_of,
        })
    return records


def summarize(records: list[dict], step: int) -> dict:
    """The metrics of one checkpoint: Pass@1 with a 95% interval, solved/total, answer shape.

    ``solved`` counts problems with at least one passing sample; with n_samples > 1 the
    unbiased pass@k for k in ``PASS_AT_K`` (k <= n) is added.
    """
    total = len(records)
    pass_at_1 = mean_pass_at_k([(r["n_samples"], r["n_correct"]) for r in records], 1)
    low, high = wilson_interval(pass_at_1 * total, total)
    samples = [s for r in records for s in r["samples"]]
    summary = {
        "step": step,
        "pass_at_1": round(pass_at_1, 6),
        "solved": sum(r["n_correct"] > 0 for r in records),
        "total": total,
        "ci95_low": round(low, 6),
        "ci95_high": round(high, 6),
        "mean_reasoning_chars": round(sum(s["reasoning_chars"] for s in samples) / max(len(samples), 1), 1),
        "hit_token_limit": sum(s["hit_token_limit"] for s in samples),
        "no_code": sum(s["code"] is None for s in samples),
    }
    n_min = min((r["n_samples"] for r in records), default=0)
    for k in PASS_AT_K:
        if 1 < k <= n_min:
            summary[f"pass_at_{k}"] = round(mean_pass_at_k([(r["n_samples"], r["n_correct"]) for r in records], k), 6)
    return summary


def _hash_files(paths: list[Path], digest) -> None:
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                digest.update(chunk)


def fingerprint(base_dir: Path, adapter_dir: Path | None, problems_file: Path, params: EvalParams,
                system_prompt: str) -> str:
    """Everything that decides a checkpoint's records, hashed."""
    digest = hashlib.sha256(f"v{RECORD_VERSION}".encode())
    digest.update(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(system_prompt.encode())
    _hash_files(_RECORD_CODE, digest)
    _hash_files([problems_file, *base_dir.glob("*.json"), *base_dir.glob("*.safetensors")], digest)
    if adapter_dir is not None:
        _hash_files([adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"], digest)
    return digest.hexdigest()


def evaluate_checkpoint(
    base_dir: Path,
    adapter_dir: Path | None,
    problems: list[Problem],
    problems_file: Path,
    params: EvalParams,
    system_prompt: str,
    label: str,
) -> list[dict]:
    """Records for one model, from the cache when this exact evaluation was done before."""
    key = fingerprint(base_dir, adapter_dir, problems_file, params, system_prompt)
    cached = cache_dir() / "eval" / f"{key}.jsonl"
    if cached.is_file():
        log.info("%s: reusing graded answers from %s", label, cached)
        return read_jsonl(cached)

    log.info("%s: loading %s%s", label, base_dir, f" + {adapter_dir}" if adapter_dir else "")
    model, tokenizer = load_model(base_dir, adapter_dir, params.precision)
    benchmark = get_benchmark(params.benchmark)
    chats = [eval_messages(system_prompt, benchmark.user_prompt(p, params.prompt_style)) for p in problems]
    settings = DecodingSettings(max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                                top_p=params.top_p, n_samples=params.n_samples,
                                batch_size=params.batch_size)
    answers = generate_chats(model, tokenizer, chats, settings, desc=f"{label}: generating")
    del model
    records = grade_answers(problems, answers, params)
    write_jsonl(cached, records)
    return records

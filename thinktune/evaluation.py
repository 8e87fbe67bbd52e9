"""Evaluate a set of models (the base, or every checkpoint of one strategy) on the eval problems.

For each problem: ask with the chat template, take the code after the reasoning, run the
benchmark's program against its tests in the sandbox, and keep a per-problem record (raw
answer, graded code, verdicts, reasoning length in characters and tokens, whether the token
limit cut it).

Graded answers are cached per checkpoint outside the repository, keyed by everything that
decides them (weights, problems, eval params with the precision *resolved*, the device
kind, the prompting/generation/grading code). A checkpoint's records enter the cache as
soon as it is graded, so an evaluation that is killed and run again evaluates only the
checkpoints it had not finished, and adding a checkpoint grades only the new one. The
model is loaded only when some checkpoint is not cached, once for the whole set.

Results of a target: ``results/<target>/<checkpoint>.jsonl`` and ``summary.json`` (see
:func:`write_results`, read back with :func:`read_summary`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from thinktune.atomic import atomic_dir, read_jsonl, write_json, write_jsonl
from thinktune.benchmark import Benchmark, Problem, get_benchmark
from thinktune.chat import eval_messages
from thinktune.extract import extract_code, split_reasoning
from thinktune.generation import DecodingSettings, Generation
from thinktune.grading import grade_many
from thinktune.hardware import describe_environment, device, resolve_precision
from thinktune.logs import get_logger
from thinktune.modelsource import cache_dir
from thinktune.params import EvalParams
from thinktune.sandbox import Limits
from thinktune.stats import mean_pass_at_k, wilson_interval

log = get_logger("evaluation")

# Bump when the record format changes. The code that decides a record's content (prompt,
# generation, extraction, grading, sandbox) is hashed into the cache key as well, so a
# change there never reuses answers graded the old way.
RECORD_VERSION = 3
_RECORD_CODE = [Path(__file__).parent / f"{name}.py" for name in (
    "benchmark", "livecodebench", "humaneval", "chat", "generation", "engine", "sampling", "modelhost",
    "extract", "grading", "evaluation")] + sorted((Path(__file__).parent / "sandbox").glob("*.py"))

# pass@k reported beside Pass@1 when every problem has at least k samples (eval.n_samples).
PASS_AT_K = (5, 10)
SUMMARY = "summary.json"


def limits_from(params: EvalParams) -> Limits:
    return Limits(timeout_s=params.timeout_s, memory_mb=params.memory_mb)


def grade_answers(benchmark: Benchmark, problems: list[Problem], answers: list[list[Generation]],
                  params: EvalParams, count_tokens) -> list[dict]:
    """Per-problem records for generated answers (``answers[i]`` holds problem i's samples).

    ``count_tokens(text) -> int``: the tokenizer's length of a text (the reasoning's tokens).
    """
    samples = [(p, g) for p, gens in zip(problems, answers, strict=True) for g in gens]
    codes = [extract_code(g.text) for _, g in samples]
    jobs = [(benchmark.program_to_grade(p, code), benchmark.tests(p), p.func_name)
            for code, (p, _) in zip(codes, samples, strict=True)]
    grades = grade_many(jobs, limits_from(params), workers=params.workers,
                        stop_at_first_failure=True, progress=True)

    by_problem: dict[str, list[dict]] = {p.question_id: [] for p in problems}
    for (problem, gen), code, grade in zip(samples, codes, grades, strict=True):
        reasoning, _ = split_reasoning(gen.text)
        by_problem[problem.question_id].append({
            "raw_output": gen.text,
            "code": code,
            "reasoning_chars": len(reasoning),
            "reasoning_tokens": count_tokens(reasoning) if reasoning else 0,
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
    unbiased pass@k for k in ``PASS_AT_K`` (k <= n) is added. Shares are over all samples.
    """
    total = len(records)
    pass_at_1 = mean_pass_at_k([(r["n_samples"], r["n_correct"]) for r in records], 1)
    low, high = wilson_interval(pass_at_1 * total, total)
    samples = [s for r in records for s in r["samples"]]
    n = max(len(samples), 1)
    truncated = sum(s["hit_token_limit"] for s in samples)
    no_code = sum(s["code"] is None for s in samples)
    summary = {
        "step": step,
        "pass_at_1": round(pass_at_1, 6),
        "solved": sum(r["n_correct"] > 0 for r in records),
        "total": total,
        "ci95_low": round(low, 6),
        "ci95_high": round(high, 6),
        "mean_reasoning_chars": round(sum(s["reasoning_chars"] for s in samples) / n, 1),
        "mean_reasoning_tokens": round(sum(s.get("reasoning_tokens", 0) for s in samples) / n, 1),
        "hit_token_limit": truncated,
        "truncated_share": round(truncated / n, 6),
        "no_code": no_code,
        "no_code_share": round(no_code / n, 6),
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
    """Everything that decides a checkpoint's records, hashed.

    The precision enters resolved ("auto" is bf16 on one machine and fp32 on another, and
    the two answer differently), with the kind of device the answers are computed on.
    """
    settings = params.model_dump(mode="json") | {"precision": resolve_precision(params.precision)}
    digest = hashlib.sha256(f"v{RECORD_VERSION}".encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(device().encode())
    digest.update(system_prompt.encode())
    _hash_files(_RECORD_CODE, digest)
    _hash_files([problems_file, *base_dir.glob("*.json"), *base_dir.glob("*.safetensors")], digest)
    if adapter_dir is not None:
        _hash_files([adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"], digest)
    return digest.hexdigest()


def evaluate_checkpoints(base_dir: Path, checkpoints: dict[str, Path | None], problems: list[Problem],
                         problems_file: Path, params: EvalParams, system_prompt: str, label: str) -> dict[str, list]:
    """Records of each named model (``None``: the base alone), from the cache where this exact
    evaluation was done before; the rest generated (one model load for all of them), graded
    and cached one checkpoint at a time."""
    from thinktune.parallel import open_generator

    benchmark = get_benchmark(params.benchmark)
    cached = {name: cache_dir() / "eval" / f"{fingerprint(base_dir, adapter, problems_file, params, system_prompt)}.jsonl"
              for name, adapter in checkpoints.items()}
    records = {}
    for name, path in cached.items():
        if path.is_file():
            log.info("%s/%s: reusing graded answers from %s", label, name, path)
            records[name] = read_jsonl(path)
    todo = [name for name in checkpoints if name not in records]
    if not todo:
        return records

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    chats = [eval_messages(system_prompt, benchmark.user_prompt(p, params.prompt_style)) for p in problems]
    settings = DecodingSettings.from_params(params)
    log.info("%s: generating for %s (%d process(es))", label, ", ".join(todo), params.num_processes)
    generator = open_generator(base_dir, params.precision, params.num_processes, params.cuda_graphs)
    try:
        for name in todo:
            answers = generator.generate(checkpoints[name], chats, settings, label=f"{label}/{name}")
            records[name] = grade_answers(benchmark, problems, answers, params,
                                          lambda text: len(tokenizer(text, add_special_tokens=False).input_ids))
            write_jsonl(cached[name], records[name])
    finally:
        generator.close()
    return records


def write_results(out_dir: Path, target: str, records: dict[str, list], steps: dict[str, int],
                  params: EvalParams, stop_tokens: list[str]) -> dict:
    """``out_dir`` (replaced atomically): ``<checkpoint>.jsonl`` per model and ``summary.json``:
    target, benchmark, n_problems, n_samples, the decoding used, the environment (resolved
    precision, device, versions) and each checkpoint's summary."""
    n_problems = {len(r) for r in records.values()}
    if len(n_problems) > 1:
        raise ValueError(f"{target}: checkpoints were evaluated on different numbers of problems {n_problems}")
    summary = {
        "target": target,
        "benchmark": params.benchmark,
        "n_problems": n_problems.pop() if n_problems else 0,
        "n_samples": params.n_samples,
        "decoding": {**DecodingSettings.from_params(params).describe(), "prompt_style": params.prompt_style,
                     "stop_tokens": stop_tokens},
        "environment": describe_environment(params.precision),
        "checkpoints": {name: summarize(recs, steps[name]) for name, recs in records.items()},
    }
    with atomic_dir(out_dir) as tmp:
        for name, recs in records.items():
            write_jsonl(tmp / f"{name}.jsonl", recs)
        write_json(tmp / SUMMARY, summary)
    return summary


def read_summary(results_dir: Path, target: str) -> dict:
    """``results/<target>/summary.json`` as written by :func:`write_results`."""
    path = Path(results_dir) / target / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro eval_checkpoints@{target}`")
    return json.loads(path.read_text())

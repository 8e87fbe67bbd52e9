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

Results of a run: ``results/<benchmark>/<strategy>/seed-<seed>/<checkpoint>.jsonl``
(``results/<benchmark>/base/`` for the base model) and ``summary.json`` (see
:func:`write_results`, read back with :func:`thinktune.evaluation.records.read_summary`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from thinktune.atomic import atomic_dir, read_jsonl, write_json, write_jsonl
from thinktune.benchmarks.base import Benchmark, Problem, get_benchmark
from thinktune.codedeps import code_digest
from thinktune.config.params import EvalParams
from thinktune.data.chat import eval_messages
from thinktune.evaluation.records import SUMMARY, summarize
from thinktune.generation.chats import Generation
from thinktune.generation.settings import DecodingSettings
from thinktune.grading.extract import extract_code, split_reasoning
from thinktune.grading.sandbox import Limits
from thinktune.grading.verdicts import grade_many
from thinktune.logs import get_logger
from thinktune.models.hardware import describe_environment, device, resolve_precision
from thinktune.models.source import cache_dir, load_tokenizer, once_per_folder_state

log = get_logger("evaluation")

# Bump when the record format changes. The code that decides a record's content (prompt,
# generation, extraction, grading, sandbox: everything this module imports, found by
# thinktune.codedeps as for dvc.yaml) is hashed into the cache key as well, so a change
# there never reuses answers graded the old way.
RECORD_VERSION = 3



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


def _hash_files(paths: list[Path], digest) -> None:
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                digest.update(chunk)


@once_per_folder_state
def _base_model_digest(base_dir: Path) -> str:
    """sha256 of every file of the base model's folder (weights, config, tokenizer, chat template),
    computed once per process for the folder as it is: every checkpoint's fingerprint includes it,
    and hashing the 0.5B's 1 GB takes about two seconds."""
    digest = hashlib.sha256()
    _hash_files(sorted(path for path in base_dir.iterdir() if path.is_file()), digest)
    return digest.hexdigest()


def fingerprint(base_dir: Path, adapter_dir: Path | None, problems_file: Path, params: EvalParams,
                system_prompt: str) -> str:
    """Everything that decides a checkpoint's records, hashed: the problems file (not the keys that
    selected its problems), the answer settings of ``params`` (a one-benchmark view), the model files.

    The precision enters resolved ("auto" is bf16 on one machine and fp32 on another, and
    the two answer differently), with the kind of device the answers are computed on.
    """
    settings = params.answer_settings() | {"precision": resolve_precision(params.precision)}
    digest = hashlib.sha256(f"v{RECORD_VERSION}".encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(device().encode())
    digest.update(system_prompt.encode())
    digest.update(code_digest(__name__).encode())
    digest.update(_base_model_digest(base_dir).encode())
    _hash_files([problems_file], digest)
    if adapter_dir is not None:
        _hash_files([adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"], digest)
    return digest.hexdigest()


def evaluate_checkpoints(base_dir: Path, checkpoints: dict[str, Path | None], problems: list[Problem],
                         problems_file: Path, params: EvalParams, system_prompt: str,
                         label: str) -> tuple[dict[str, list], dict[str, dict]]:
    """(records, decode) of each named model (``None``: the base alone), from the cache where
    this exact evaluation was done before; the rest generated together (one model load, one
    batch: each row applies its own checkpoint's adapter, so the base weights are read once
    per step for all of them; each answer is the one its checkpoint gives decoded alone, up to
    the rounding a different prefill batch can give in bf16),
    then graded and cached one checkpoint at a time. ``decode[name]``: the decode engine's
    figures when those answers were generated (CUDA graphs used or why not; ``tokens_per_s``
    of the shared run, ``new_tokens`` of this checkpoint's answers)."""
    from thinktune.generation.parallel import open_generator

    benchmark = get_benchmark(params.benchmark)
    cached = {name: cache_dir() / "eval" / f"{fingerprint(base_dir, adapter, problems_file, params, system_prompt)}.jsonl"
              for name, adapter in checkpoints.items()}
    records, decode = {}, {}
    for name, path in cached.items():
        if path.is_file():
            log.info("%s/%s: reusing graded answers from %s", label, name, path)
            records[name] = read_jsonl(path)
            stats_file = path.with_suffix(".decode.json")
            decode[name] = {**(json.loads(stats_file.read_text()) if stats_file.is_file() else {}), "cached": True}
    todo = [name for name in checkpoints if name not in records]
    if not todo:
        return records, decode

    tokenizer = load_tokenizer(base_dir)
    chats = [eval_messages(system_prompt, benchmark.user_prompt(p, params.prompt_style)) for p in problems]
    settings = DecodingSettings.from_params(params)
    log.info("%s: generating for %s (%d process(es))", label, ", ".join(todo), params.num_processes)
    generator = open_generator(base_dir, params.precision, params.num_processes, params.cuda_graphs)
    try:
        together = generator.generate_many([checkpoints[name] for name in todo], chats, settings,
                                           label=f"{label}/{'+'.join(todo)}")
    finally:
        generator.close()
    for name, answers in zip(todo, together, strict=True):
        records[name] = grade_answers(benchmark, problems, answers, params,
                                      lambda text: len(tokenizer(text, add_special_tokens=False).input_ids))
        decode[name] = {**generator.last_stats, "cached": False,
                        "new_tokens": sum(g.new_tokens for gens in answers for g in gens)}
        write_json(cached[name].with_suffix(".decode.json"), decode[name])
        write_jsonl(cached[name], records[name])
    return records, decode


def write_results(out_dir: Path, target: str, records: dict[str, list], steps: dict[str, int],
                  params: EvalParams, stop_tokens: list[str], decode: dict[str, dict] | None = None,
                  seed: int | None = None) -> dict:
    """``out_dir`` (replaced atomically): ``<checkpoint>.jsonl`` per model and ``summary.json``:
    target (the strategy, or base) and training seed, benchmark, n_problems, n_samples, the decoding used, the environment (resolved
    precision, device, versions), how the decode engine ran per checkpoint (CUDA graphs or
    why not) and each checkpoint's summary."""
    n_problems = {len(r) for r in records.values()}
    if len(n_problems) > 1:
        raise ValueError(f"{target}: checkpoints were evaluated on different numbers of problems {n_problems}")
    summary = {
        "target": target,
        "seed": seed,
        "benchmark": params.benchmark,
        "n_problems": n_problems.pop() if n_problems else 0,
        "n_samples": params.n_samples,
        "decoding": {**DecodingSettings.from_params(params).describe(), "prompt_style": params.prompt_style,
                     "stop_tokens": stop_tokens},
        "environment": describe_environment(params.precision),
        "decode_engine": {name: {key: stats.get(key) for key in ("cuda_graphs", "graphs_off_reason", "decode_forward",
                                                                 "tokens_per_s", "new_tokens", "cached")}
                          for name, stats in (decode or {}).items()},
        "checkpoints": {name: summarize(recs, steps[name]) for name, recs in records.items()},
    }
    with atomic_dir(out_dir) as tmp:
        for name, recs in records.items():
            write_jsonl(tmp / f"{name}.jsonl", recs)
        write_json(tmp / SUMMARY, summary)
    return summary

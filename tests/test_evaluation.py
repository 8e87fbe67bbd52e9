"""The eval stage on a tiny model: results layout, cache key, resume after a kill, two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stages import eval_checkpoints as eval_stage
from thinktune.atomic import read_jsonl, write_jsonl
from thinktune.benchmarks.livecodebench import load_rows
from thinktune.evaluation.evaluate import fingerprint
from thinktune.evaluation.records import read_summary, summarize
from thinktune.models import hardware

CHECKPOINTS = ("checkpoint-1", "checkpoint-2", "checkpoint-3")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, repo_root, tiny_model_dir) -> Path:
    """params.yaml (fp32, short answers), 5 sample problems, the tiny base and three random adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("eval")
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["eval"] |= {"precision": "fp32", "max_new_tokens": 120, "batch_size": 4, "workers": 2, "timeout_s": 3.0}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    problems = load_rows([repo_root / "data/sample/livecodebench_sample.jsonl"])[:5]
    write_jsonl(root / "eval" / "livecodebench.jsonl", (p.to_json() for p in problems))
    for seed, name in enumerate(CHECKPOINTS):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                            init_lora_weights=False, task_type="CAUSAL_LM")
        get_peft_model(model, config).save_pretrained(root / "models" / "deep" / "seed-42" / name)
    return root


def stage_args(root: Path, tiny_model_dir: Path, results: str, params: str = "params.yaml") -> list[str]:
    return ["deep", "--seed", "42", "--benchmark", "livecodebench", "--params", str(root / params),
            "--problems", str(root / "eval"),
            "--base-model", str(tiny_model_dir), "--models", str(root / "models"), "--results", str(root / results)]


def with_params(root: Path, name: str, **eval_updates) -> str:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["eval"] |= eval_updates
    (root / name).write_text(yaml.safe_dump(params, sort_keys=False))
    return name


def records_of(results: Path) -> dict[str, list[dict]]:
    return {name: read_jsonl(results / "livecodebench" / "deep" / "seed-42" / f"{name}.jsonl") for name in CHECKPOINTS}


@pytest.fixture(scope="module")
def reference_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache-ref")


@pytest.fixture(scope="module")
def reference(workspace, tiny_model_dir, reference_cache):
    """One uninterrupted, one-process run of the stage."""
    mp = pytest.MonkeyPatch()
    mp.setenv("THINKTUNE_CACHE", str(reference_cache))
    try:
        eval_stage.main(stage_args(workspace, tiny_model_dir, "results-ref"))
    finally:
        mp.undo()
    return records_of(workspace / "results-ref")


def test_results_layout_and_summary(workspace, reference, params):
    summary = read_summary(workspace / "results-ref", "livecodebench", "deep", 42)
    assert sorted(p.name for p in (workspace / "results-ref" / "livecodebench" / "deep" / "seed-42").iterdir()) == \
           sorted([f"{c}.jsonl" for c in CHECKPOINTS] + ["summary.json"])
    assert (summary["target"], summary["seed"], summary["benchmark"], summary["n_problems"], summary["n_samples"]) == \
           ("deep", 42, "livecodebench", 5, 1)
    assert summary["decoding"] | {"stop_tokens": None} == {
        "strategy": "greedy", "max_new_tokens": 120, "temperature": 0.0, "top_p": 1.0, "top_k": 0,
        "repetition_penalty": 1.0, "n_samples": 1, "seed": 0, "prompt_style": "study", "stop_tokens": None}
    assert "<|im_end|>" in summary["decoding"]["stop_tokens"]
    assert summary["environment"]["precision"] == "fp32" and summary["environment"]["device"] == "cpu"
    assert [summary["checkpoints"][c]["step"] for c in CHECKPOINTS] == [1, 2, 3]
    point = summary["checkpoints"]["checkpoint-2"]
    assert {"pass_at_1", "solved", "total", "ci95_low", "ci95_high", "mean_reasoning_chars", "mean_reasoning_tokens",
            "hit_token_limit", "truncated_share", "no_code", "no_code_share"} <= set(point)
    assert point == summarize(reference["checkpoint-2"], 2)
    sample = reference["checkpoint-1"][0]["samples"][0]
    assert {"raw_output", "code", "reasoning_chars", "reasoning_tokens", "new_tokens", "hit_token_limit",
            "verdicts", "passed"} <= set(sample)
    # The three adapters answer differently (so a mix-up between checkpoints would show).
    first_answers = {c: reference[c][0]["samples"][0]["raw_output"] for c in CHECKPOINTS}
    assert len(set(first_answers.values())) == 3


def test_summary_shares_and_reasoning_tokens():
    def sample(reasoning_tokens, truncated, code):
        return {"raw_output": "", "code": code, "reasoning_chars": 4 * reasoning_tokens,
                "reasoning_tokens": reasoning_tokens, "new_tokens": 9, "hit_token_limit": truncated,
                "verdicts": [], "first_failure": None, "passed": code is not None}
    records = [{"question_id": "a", "difficulty": "easy", "n_samples": 2, "n_correct": 1, "pass_at_1": 0.5,
                "samples": [sample(10, False, "print(1)"), sample(30, True, None)]},
               {"question_id": "b", "difficulty": "easy", "n_samples": 2, "n_correct": 2, "pass_at_1": 1.0,
                "samples": [sample(0, False, "x"), sample(0, False, "y")]}]
    point = summarize(records, 7)
    assert (point["mean_reasoning_tokens"], point["mean_reasoning_chars"]) == (10.0, 40.0)
    assert (point["truncated_share"], point["no_code_share"], point["hit_token_limit"], point["no_code"]) == \
           (0.25, 0.25, 1, 1)


def test_cache_key_holds_the_resolved_precision(workspace, tiny_model_dir, params, monkeypatch):
    eval_params = params.eval.model_copy(update={"precision": "auto"})

    def key(precision="auto"):
        return fingerprint(tiny_model_dir, None, workspace / "eval" / "livecodebench.jsonl",
                           eval_params.model_copy(update={"precision": precision}), "SYS")

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    on_bf16_cpu = key()
    assert on_bf16_cpu == key("bf16") != key("fp32")
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    assert key() == key("fp32") != on_bf16_cpu  # the same params, another machine: another key
    assert hardware.describe_environment("auto")["precision"] == "fp32"


def test_rerun_with_everything_cached_loads_no_model(workspace, tiny_model_dir, reference, reference_cache,
                                                     monkeypatch):
    import thinktune.generation.parallel

    monkeypatch.setenv("THINKTUNE_CACHE", str(reference_cache))
    monkeypatch.setattr(thinktune.generation.parallel, "open_generator", lambda *a, **k: pytest.fail("a model was loaded"))
    eval_stage.main(stage_args(workspace, tiny_model_dir, "results-cached"))
    assert records_of(workspace / "results-cached") == reference


def test_killed_stage_evaluates_only_unfinished_checkpoints(workspace, tiny_model_dir, reference, tmp_path,
                                                            repo_root, monkeypatch):
    import thinktune.generation.parallel

    cache = tmp_path / "cache"
    env = os.environ | {"THINKTUNE_CACHE": str(cache), "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    # The checkpoints are decoded together, then graded and cached one by one: the stage is
    # held in its second grading (a tiny model's answers grade in an instant), and killed there.
    hold_second_grading = (
        "import sys, time\n"
        "import thinktune.evaluation.evaluate as evaluate\n"
        "from stages import eval_checkpoints\n"
        "real, calls = evaluate.grade_answers, []\n"
        "def held(*args, **kwargs):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        time.sleep(600)\n"
        "    return real(*args, **kwargs)\n"
        "evaluate.grade_answers = held\n"
        "eval_checkpoints.main(sys.argv[1:])\n")
    process = subprocess.Popen([sys.executable, "-c", hold_second_grading,
                                *stage_args(workspace, tiny_model_dir, "results-killed")],
                               cwd=repo_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finished() -> int:
        return len(list((cache / "eval").glob("*.jsonl"))) if (cache / "eval").is_dir() else 0

    deadline = time.monotonic() + 300
    while not finished():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the first checkpoint never finished"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert finished() == 1  # killed while grading the second checkpoint (all were decoded together)
    assert not (workspace / "results-killed" / "livecodebench" / "deep" / "seed-42").exists()  # nothing half-written

    generated = []
    real = thinktune.generation.parallel.LocalGenerator.generate_many

    def spy(self, adapter_dirs, *args, **kwargs):
        generated.append([Path(a).name for a in adapter_dirs])
        return real(self, adapter_dirs, *args, **kwargs)

    monkeypatch.setattr(thinktune.generation.parallel.LocalGenerator, "generate_many", spy)
    monkeypatch.setenv("THINKTUNE_CACHE", str(cache))
    eval_stage.main(stage_args(workspace, tiny_model_dir, "results-killed"))
    assert generated == [["checkpoint-2", "checkpoint-3"]]  # the unfinished ones, decoded together
    assert records_of(workspace / "results-killed") == reference


def test_two_processes_give_the_one_process_records(workspace, tiny_model_dir, reference, tmp_path, monkeypatch):
    monkeypatch.setenv("THINKTUNE_CACHE", str(tmp_path / "cache"))
    name = with_params(workspace, "params-2proc.yaml", num_processes=2)
    eval_stage.main(stage_args(workspace, tiny_model_dir, "results-2proc", params=name))
    assert records_of(workspace / "results-2proc") == reference
    summary = json.loads((workspace / "results-2proc" / "livecodebench" / "deep" / "seed-42" / "summary.json").read_text())
    assert summary["checkpoints"] == read_summary(workspace / "results-ref", "livecodebench", "deep", 42)["checkpoints"]


def test_a_failing_worker_is_reported_with_its_traceback(tmp_path):
    from thinktune.generation.parallel import ShardedGenerator

    with pytest.raises(RuntimeError, match=r"generation process \d failed:(.|\n)*missing-model"):
        ShardedGenerator(tmp_path / "missing-model", "fp32", 2)


def test_too_few_gpus_for_num_processes(monkeypatch):
    import torch

    from thinktune.generation.parallel import device_for, open_generator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_for(0, 1) == "cuda:0"
    with pytest.raises(ValueError, match="eval.num_processes is 2 but only 1 CUDA device"):
        open_generator(Path("unused"), "fp32", 2)


def test_adding_a_benchmark_keeps_the_other_benchmarks_cache_key(workspace, tiny_model_dir, params):
    """The eval stage hands the evaluation its one benchmark's view of the params: listing HumanEval
    too must not invalidate LiveCodeBench's graded answers."""
    problems = workspace / "eval" / "livecodebench.jsonl"
    alone = params.eval.model_copy(update={"benchmarks": ["livecodebench"]})
    both = params.eval.model_copy(update={"benchmarks": ["livecodebench", "humaneval"]})
    key = fingerprint(tiny_model_dir, None, problems, alone.for_benchmark("livecodebench"), "SYS")
    assert key == fingerprint(tiny_model_dir, None, problems, both.for_benchmark("livecodebench"), "SYS")
    assert key != fingerprint(tiny_model_dir, None, problems, both.for_benchmark("humaneval"), "SYS")
    # A LiveCodeBench filter chooses problems (the file, hashed); it does not decide HumanEval's answers.
    humaneval = both.for_benchmark("humaneval")
    other_filters = humaneval.model_copy(update={"platforms": ["leetcode"], "lcb_release": "release_v5"})
    assert fingerprint(tiny_model_dir, None, problems, humaneval, "SYS") == \
        fingerprint(tiny_model_dir, None, problems, other_filters, "SYS")
    # ... while a decoding setting does.
    assert fingerprint(tiny_model_dir, None, problems, humaneval, "SYS") != \
        fingerprint(tiny_model_dir, None, problems, humaneval.model_copy(update={"max_new_tokens": 7}), "SYS")


def test_cache_key_follows_the_base_folder_and_hashes_it_once(workspace, tiny_model_dir, params, tmp_path,
                                                               monkeypatch):
    """The base model's digest is kept for the process, so it must still see a changed weight (even
    rewritten with its old size and modification time, as ``cp -p`` leaves it) or chat template."""
    import shutil

    from thinktune.evaluation import evaluate

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    problems, settings = workspace / "eval" / "livecodebench.jsonl", params.eval.for_benchmark("livecodebench")
    hashed = []
    real_hash = evaluate._hash_files
    monkeypatch.setattr(evaluate, "_hash_files", lambda paths, digest: hashed.append(paths) or real_hash(paths, digest))
    before = fingerprint(base, None, problems, settings, "SYS")
    assert fingerprint(base, None, problems, settings, "SYS") == before
    assert sum(any(p.suffix == ".safetensors" for p in paths) for paths in hashed) == 1
    weights = base / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one weight bit flipped: the same size ...
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the same modification time
    flipped = fingerprint(base, None, problems, settings, "SYS")
    assert flipped != before
    template = base / "chat_template.jinja"
    template.write_text(template.read_text() + "\n")
    assert fingerprint(base, None, problems, settings, "SYS") not in (before, flipped)

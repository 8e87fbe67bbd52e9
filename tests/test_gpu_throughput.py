"""perf/gpu_throughput.py: the tiny run end to end (what CI runs), and its pieces.

The end-to-end test runs the benchmark as a subprocess at ``--tiny`` scale and checks that every
figure is there, positive and consistent with the others (rates = amounts / seconds, MFU by its
formula, the projection by its arithmetic); no speed is asserted.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time

import pytest

from perf import _gpu_study as study
from perf import gpu_throughput as bench
from thinktune.config.params import ParamsError
from thinktune.config.presets import load_preset
from thinktune.training.data import IGNORE

PEAK = 1e12  # --peak-flops given, so MFU is computed on a CPU too


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("gpu-throughput") / "figures.json"
    run = subprocess.run([sys.executable, "-m", "perf.gpu_throughput", "--tiny", "--peak-flops", str(PEAK),
                          "--json", str(out)], cwd=repo_root, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text()), run.stdout


def test_tiny_run_training_figures(tiny):
    report, stdout = tiny
    train = report["train"]
    assert train["status"] == "measured"
    steps = train["steps"]
    assert [s["warmup"] for s in steps] == [True, False, False]  # 1 warm-up + 2 timed (tiny scale)
    timed = steps[1:]
    assert train["timed_steps"] == 2 and train["figures_include_warmup"] is False
    assert train["tokens"] == sum(s["tokens"] for s in timed) > 0
    assert train["answer_tokens"] == sum(s["answer_tokens"] for s in timed) > 0
    assert train["seconds"] == pytest.approx(sum(s["seconds"] for s in timed)) and train["seconds"] > 0
    assert close(train["tokens_per_s"], train["tokens"] / train["seconds"])
    assert close(train["answer_tokens_per_s"], train["answer_tokens"] / train["seconds"])
    assert close(train["seconds_per_step"], train["seconds"] / 2)
    # The paper preset's step (16 chats, 16k-token micro-batches) on chats of 16-96 tokens, 70% answer.
    assert train["chats_per_step"] == 16 and train["micro_batch_tokens"] == 16384
    for s in steps:
        assert s["chats"] == 16 and 16 * 16 <= s["tokens"] <= 16 * 96 and s["micro_batches"] == 1
        assert 0.6 < s["answer_tokens"] / s["tokens"] < 0.8 and s["loss"] > 0
    assert train["activation_checkpointing"] is True and train["lora"]["r"] == 16
    n = report["model"]["parameters"]
    assert n == train["parameters"] > train["trainable_parameters"] > 0
    assert train["peak_flops"] == PEAK  # MFU: test_tiny_run_mfu_against_a_hand_count
    assert train["peak_memory_bytes"] > 0
    if report["machine"]["is_cpu"]:
        assert train["attention"] == "sdpa" and train["loss"] == "chunked"
        assert train["peak_memory_measure"].startswith("peak RSS")
        assert "a CPU, no GPU" in stdout and "CPU figure" in stdout
    assert "tokens/s" in stdout and "s/step" in stdout and "MFU" in stdout


# N of the tiny Qwen2 (perf/_gpu_study.TINY), written out from its shapes rather than counted by
# the code under test: hidden 64, 2 layers, 4 query heads and 2 KV heads of 16 dims (q, k, v with
# biases), MLP 128, vocabulary 1024 with the embedding tied to the LM head, RMSNorm weights.
TINY_LAYER = (64 * 64 + 64) + 2 * (64 * 32 + 32) + 64 * 64 + 3 * 64 * 128 + 2 * 64
TINY_N = 2 * TINY_LAYER + 1024 * 64 + 64
TINY_MATMUL_WEIGHTS = TINY_N - 2 * (64 + 32 + 32) - (2 * 2 * 64 + 64)  # less biases and norms (the tied LM head stays)


def test_tiny_run_mfu_against_a_hand_count(tiny):
    """MFU = FLOPs per token x tokens/s / peak, the FLOPs by the 6N convention (that of the MFU target
    and of the earlier H100 figure) from a hand count:
    forward 2N, backward 4N, the checkpointed forward's recompute 2N."""
    report, _ = tiny
    train = report["train"]
    assert TINY_N == 139_840 == report["model"]["parameters"] == train["parameters"]
    assert train["activation_checkpointing"] is True
    flops_per_token = (2 + 4 + 2) * 139_840
    assert train["mfu"] == pytest.approx(flops_per_token * train["tokens_per_s"] / PEAK, rel=1e-9)
    assert train["mfu_formula"] == "6 * parameters * tokens/s * 4/3 / peak FLOP/s"


def test_hand_count_is_the_tiny_models_forward_flops():
    """The hand count above is the model's compute: torch's FLOP counter on a forward of T tokens
    gives 2 FLOPs per matmul weight per token plus the attention products (QK^T and AV: 2 x 2 x T x
    16 dims x 4 heads per layer and token), so 2N is the forward's FLOPs to within the biases and norms."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(**study.TINY, attn_implementation="eager")).eval()
    assert sum(p.numel() for p in model.parameters()) == TINY_N
    tokens = 16
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=torch.arange(tokens)[None])
    attention = 2 * (2 * 2 * tokens * 16 * 4)  # layers x (QK^T + AV) x 2 FLOPs x T keys x head dim x heads
    assert counter.get_total_flops() == tokens * (2 * TINY_MATMUL_WEIGHTS + attention)
    assert abs(2 * TINY_N / (2 * TINY_MATMUL_WEIGHTS) - 1) < 0.005


def test_tiny_run_generation_figures(tiny):
    report, stdout = tiny
    gen = report["generate"]
    assert gen["status"] == "measured" and gen["figures_from"].startswith("timed run")
    assert gen["decoding"]["strategy"] == "sampling"  # the paper preset: LiveCodeBench's n=10 at temperature 0.2
    assert gen["batch_size"] == study.preset_params("paper").eval.batch_size  # --tiny keeps the preset's batch
    for run in (gen["warmup_run"], gen["timed_run"]):
        samples = study.preset_params("paper").eval.n_samples  # 10 answers per prompt
        assert run["answers"] == run["answers_at_limit"] == 4 * samples  # no stop tokens: all run to the limit
        assert run["new_tokens"] == 4 * samples * 8 and run["prompt_tokens"] >= 4 * 8
        assert close(run["seconds"], run["prefill_s"] + run["decode_s"]) and run["decode_s"] > 0
        assert close(run["tokens_per_s"], run["new_tokens"] / run["seconds"])
        assert run["decode_tokens_per_s"] > 0 and run["ms_per_decode_step"] > 0 and run["wall_s"] >= run["seconds"]
    assert gen["tokens_per_s"] == gen["timed_run"]["tokens_per_s"]
    assert gen["timed_run"]["graphs_captured"] == 0  # warm: the engine (and any graphs) reused
    if report["machine"]["is_cpu"]:
        assert gen["cuda_graphs"] is False and gen["decode_mode"] == "auto"
    assert "CUDA graphs" in stdout


def test_tiny_run_projection(tiny):
    report, stdout = tiny
    proj = report["projection"]
    # The paper schedule: ceil(3 x ceil(5000/16)) = 939 steps, a checkpoint every 100 -> 10 per run;
    # 2 strategies x 3 seeds = 6 runs, so 1 + 6 x 10 models, each answering 41 problems 10 times.
    assert proj["optimizer_steps_per_strategy"] == 939 and proj["checkpoints_per_strategy"] == 10
    assert proj["models_evaluated"] == 61
    train_s = 6 * 5000 * 4000 * 3 / report["train"]["tokens_per_s"]
    eval_s = 61 * 41 * 10 * 2000 / report["generate"]["tokens_per_s"]
    assert close(proj["training_hours"], train_s / 3600) and close(proj["evaluation_hours"], eval_s / 3600)
    assert close(proj["total_hours"], proj["training_hours"] + proj["evaluation_hours"]) and proj["total_hours"] > 0
    assert "tiny" in proj["caveat"] and "projected full study" in stdout


def test_presets_are_applied_not_duplicated():
    paper, cpu = study.preset_params("paper"), study.preset_params("cpu")
    for params, name in ((paper, "paper"), (cpu, "cpu")):
        preset = load_preset(name)
        assert params.train.effective_batch_size == preset["train.effective_batch_size"]
        assert params.train.micro_batch_tokens == preset["train.micro_batch_tokens"]
        assert params.format.max_length == preset["format.max_length"]
    assert paper.train.effective_batch_size == 16 and paper.format.max_length == 8192  # the study's values
    assert paper.lora == cpu.lora  # LoRA is not a preset key: both read it from params.yaml
    with pytest.raises(ParamsError, match="no preset"):
        study.preset_params("nope")


def test_synthetic_chats_follow_the_stated_distribution():
    chats = study.synthetic_chats(200, 1500, 8000, 0.7, 151936, "7-1")
    assert chats == study.synthetic_chats(200, 1500, 8000, 0.7, 151936, "7-1")
    assert chats != study.synthetic_chats(200, 1500, 8000, 0.7, 151936, "7-2")
    lengths = [c.n_tokens for c in chats]
    assert 1500 <= min(lengths) and max(lengths) <= 8000 and 4750 - 500 < sum(lengths) / 200 < 4750 + 500
    for chat in chats:
        answer = chat.n_tokens - chat.labels.count(IGNORE)
        assert chat.labels[-answer:] == chat.input_ids[-answer:] and set(chat.labels[:-answer]) == {IGNORE}
        assert abs(answer / chat.n_tokens - 0.7) < 0.01 and chat.n_targets == answer
    assert study.chat_range(8192) == (1500, 8000) and study.chat_range(1024) == (188, 1000)
    prompts = study.synthetic_prompts(41, 400, 900, 151936, 0)
    assert len(prompts) == 41 and all(400 <= len(p) <= 900 for p in prompts)


def test_mfu_and_peaks():
    # The earlier code's H100 figure: the 1.5B (1.54 B parameters) at 6.9k tokens/s with checkpointing ~ 8.6%.
    assert study.mfu(1_543_714_304, 6900, True, 989e12) == pytest.approx(0.0861, abs=5e-4)
    assert study.mfu(1_000, 10, False, 60_000) == pytest.approx(1.0) and study.mfu(1_000, 10, True, None) is None
    for name, peak in [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
                       ("NVIDIA A100-SXM4-80GB", 312e12), ("Tesla T4", 65e12), ("NVIDIA L4", None), (None, None)]:
        assert study.peak_flops_for(name, None)[0] == peak, name
    assert study.peak_flops_for(None, 5e13) == (5e13, "--peak-flops")
    assert "CPU" in study.peak_flops_for(None, None)[1]


def test_projection_arithmetic():
    paper = study.preset_params("paper")
    proj = study.projection(paper, "paper", 5000, 4000, 41, 2000, train_tokens_per_s=10_000, gen_tokens_per_s=1_000)
    assert proj["models_evaluated"] == 61 and proj["training_tokens"] == 360_000_000  # 6 runs
    assert proj["training_hours"] == pytest.approx(360e6 / 1e4 / 3600)
    assert proj["evaluation_hours"] == pytest.approx(61 * 41 * 10 * 2000 / 1e3 / 3600)
    half = study.projection(paper, "paper", 5000, 4000, 41, 2000, train_tokens_per_s=10_000, gen_tokens_per_s=None)
    assert half["evaluation_hours"] is None and half["total_hours"] is None and half["training_hours"] > 0


def test_models_base_config_is_preferred_when_it_has_the_preset_shape(tmp_path):
    shape = study.ARCHITECTURES["Qwen/Qwen2.5-Coder-0.5B"]
    saved = {"model_type": "qwen2", **{k: shape[k] for k in study.SHAPE_KEYS}, "tie_word_embeddings": False}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config, source = study.model_config("Qwen/Qwen2.5-Coder-0.5B-Instruct", False, tmp_path)
    assert str(tmp_path) in source and config.tie_word_embeddings is False  # the GGUF conversion unties them
    config, source = study.model_config("Qwen/Qwen2.5-Coder-1.5B-Instruct", False, tmp_path)  # other shape
    assert "table" in source and config.hidden_size == 1536 and config.num_hidden_layers == 28
    assert config.tie_word_embeddings is True and config.vocab_size == 151936
    with pytest.raises(ValueError, match="no known architecture"):
        study.model_config("Qwen/Qwen3-8B", False, tmp_path)


def test_phase_budgets():
    durations = []

    def step(i, warmup):
        time.sleep(0.05)
        durations.append(warmup)
        return 0.05

    assert bench.run_steps(step, 1, 3, None, time.perf_counter()) == "measured" and durations == [True] + [False] * 3
    durations.clear()
    status = bench.run_steps(step, 1, 100, 0.2, time.perf_counter())
    assert "budget" in status and 2 <= len(durations) <= 4

    started = time.perf_counter()
    # Library code that catches Exception (the decode engine does, around CUDA graph capture) cannot swallow it.
    with pytest.raises(bench.PhaseBudget), bench.hard_limit(0.2), contextlib.suppress(Exception):
        time.sleep(5)
    assert time.perf_counter() - started < 2


def test_bad_flags_are_named_before_any_work():
    args = bench.parse_args(["--chat-tokens", "100", "9000", "--gen-prompts", "0", "--answer-fraction", "1.5"])
    with pytest.raises(ParamsError) as error:
        bench.check_args(args, study.preset_params("paper"))
    for flag in ("--chat-tokens HIGH 9000", "format.max_length", "--gen-prompts", "--answer-fraction"):
        assert flag in str(error.value)

"""perf/gpu_check.py at ``--tiny`` scale on a CPU: every phase's record is there, with the
figures it claims, values inside the stated tolerances, and each negative control separating.

The run is a subprocess (as on the GPU box); the JSON is what is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

from perf import _gpu_checks as checks
from perf import _gpu_eval as gpu_eval
from perf import gpu_wheels
from perf.gpu_check import PHASES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("gpu-check") / "check.json"
    run = subprocess.run([sys.executable, "-m", "perf.gpu_check", "--tiny", "--json", str(out)], cwd=repo_root,
                         capture_output=True, text=True, timeout=600, check=False)
    report = json.loads(out.read_text())
    return report, run


def test_every_phase_ran_and_passed(tiny):
    report, run = tiny
    assert list(report["phases"]) == list(PHASES)
    statuses = {name: r["status"] for name, r in report["phases"].items()}
    assert statuses == {"preflight": "passed", "packed_vs_padded": "passed", "graphs_vs_eager": "passed",
                        "engine_vs_peft": "passed", "eval_decode": "measured", "gpu_throughput": "measured"}, \
        (statuses, run.stderr[-3000:])
    assert run.returncode == 0 and report["fallbacks"] == []  # a CPU's sdpa, chunked loss, eager decode: first choices
    for r in report["phases"].values():
        assert 0 < r["elapsed_s"] <= r["budget_s"]
    machine = report["machine"]
    assert machine["is_cpu"] is True and machine["gpu"] is None and machine["gpu_memory_bytes"] is None
    import torch

    assert machine["torch"] == torch.__version__ and machine["cuda"] == torch.version.cuda
    assert machine["transformers"] == metadata.version("transformers")
    assert machine["peft"] == metadata.version("peft") and machine["accelerate"] == metadata.version("accelerate")
    assert machine["python"] == sys.version.split()[0] and machine["cpu_count"] == os.cpu_count()
    assert report["forbidden_imports"] == []  # no dvc, dvclive, trl, datasets, hydra: the GPU box lacks them


def test_packed_equals_padded_and_the_control_does_not(tiny):
    r = tiny[0]["phases"]["packed_vs_padded"]
    assert r["packed_attention"] == "sdpa" and "no CUDA" in r["flex_attention"]  # CPU: recorded fallback
    assert len(r["packed_losses"]) == len(r["padded_losses"]) == r["chats"] == checks.TINY.chats
    assert r["loss_max_rel_diff"] <= checks.LOSS_RTOL and r["total_loss_rel_diff"] <= checks.LOSS_RTOL
    assert r["grad_rel_diff"] <= checks.GRAD_TOL and r["grad_max_abs"] > 0
    assert r["control_loss_max_rel_diff"] > checks.LOSS_RTOL and r["control_separates"] is True
    assert all(5 < x < 20 for x in r["padded_losses"])  # cross-entropy of a random model over 1,024 ids ~ ln 1024


def test_buckets_stand_in_for_graphs_on_a_cpu(tiny):
    r = tiny[0]["phases"]["graphs_vs_eager"]
    assert r["graph_mode"] == "buckets" and "stands in" in r["note"]
    assert r["cuda_graphs"] is False and r["graphs_off_reason"].startswith("not a CUDA device")
    e = r["vs_eager"]
    assert 0 <= e["identical_token_share"] <= 1 and len(e["first_divergence"]) == r["prompts"]
    assert e["logits_max_rel_diff_on_same_prefix"] <= checks.LOGITS_TOL
    assert "vs_buckets" not in r  # only on CUDA
    chosen = r["in_step_choice"]  # the project's chooser, its choice in the padded step; vs eager on a CPU
    assert chosen["against"] == "eager" and chosen["rows"] == chosen["slots"] - 1 == r["prompts"] - 1
    assert set(chosen["identical_token_share"]) == {"greedy", "sampled"}
    assert all(0 <= share <= 1 for share in chosen["identical_token_share"].values())


def test_engine_keeps_the_adapter_a_bf16_merge_loses(tiny, cpu_kind):
    r = tiny[0]["phases"]["engine_vs_peft"]
    assert len(r["adapter_losses"]) == checks.TINY.adapter_steps and "lr 5e-5" in r["adapter"]
    assert r["tokens_as_reference"] is True and r["engine_changed"] == 0.0, (cpu_kind, r["engine_changed"])
    assert r["merge_changed"] > checks.MERGE_MIN_CHANGED and r["control_separates"] is True, (cpu_kind, r)
    assert r["forward_logits_max_rel_diff"] < checks.LOGITS_TOL  # the engine's own bf16 rounding, small
    # the fused decode step against the model's own forward: the same bits on a CPU
    assert r["fused_step"] == "fused" and r["fused_answers_as_unfused"] == 1.0
    assert r["fused_logits_max_rel_diff"] == 0.0, (cpu_kind, r["fused_logits_max_rel_diff"])
    # what a decode step launches, PEFT's layers against the stacked adapters on the fused step
    launched = r["launches_per_decode_step"]
    assert launched["unit"].startswith("compute ops") and launched["peft_unmerged"] > launched["stacked_fused"] > 0
    assert launched["ratio"] == launched["stacked_fused"] / launched["peft_unmerged"]


def test_throughput_figures_are_folded_in(tiny):
    r = tiny[0]["phases"]["gpu_throughput"]
    assert r["returncode"] == 0 and "--preset paper" in r["command"] and "--tiny" in r["command"]
    assert "--phases train" in r["command"]  # the decode is eval_decode's, through the evaluation's entry
    t = r["train"]
    assert t["status"] == "measured" and t["tokens_per_s"] > 0 and t["fallbacks"] == []
    assert t["mfu_formula"] == "6 * parameters * tokens/s * 4/3 / peak FLOP/s"  # 4/3: activation recompute


def test_preflight_imports_and_stands_in_for_the_gpu_steps_on_a_cpu(tiny):
    r = tiny[0]["phases"]["preflight"]
    assert r["imports_ok"] is True and r["problems"] == [] and r["fallbacks"] == []
    assert set(gpu_eval.IMPORTS) == set(r["steps"]["imports"]["modules"])
    assert r["steps"]["flex_attention"]["status"].startswith("eager on a CPU")
    assert r["steps"]["flex_attention"]["max_rel_diff_vs_sdpa"] <= gpu_eval.FLEX_TOL  # flex's answer is sdpa's
    assert r["steps"]["flex_attention"]["compiled_once_for_train_and_eval"] is True
    assert r["steps"]["cuda_graph"]["status"] == "not run: no CUDA here"


def test_eval_decode_measures_the_evaluation_entry_in_every_mode(tiny):
    r = tiny[0]["phases"]["eval_decode"]
    assert r["entry"] == "thinktune.generation.parallel.LocalGenerator"
    assert list(r["runs"]) == [name for name, *_ in gpu_eval.EVAL_RUNS]
    assert r["greedy"]["n_samples"] == 1 and r["greedy"]["strategy"] == "greedy"
    assert r["greedy"]["batch_size"] == r["prompts"] == checks.TINY.eval_prompts  # FULL: 41 in one batch
    assert r["sampled"]["n_samples"] == 16 and r["sampled"]["strategy"] == "sampling"
    for name, run in r["runs"].items():
        sampled = name.startswith("sampled")
        assert run["answers"] == (16 * checks.TINY.eval_sampled_prompts if sampled else checks.TINY.eval_prompts)
        assert run["tokens_per_s"] > 0 and run["new_tokens"] > 0 and run["peak_memory_bytes"] > 0, name
        assert run["cuda_graphs"] is False and run["cuda_graphs_requested"] is False  # a CPU: not a fallback
        assert (run["first_run_with_captures"] is None) == ("no_graphs" in name)  # graphs: a capturing run first
    assert r["unmerged_vs_merged"] > 0 and r["graphs_speedup"] > 0 and r["fallbacks"] == []


def test_the_runbook_wheels_meet_every_import_time_requirement(tiny):
    """The carried wheels plus the machine's stated packages meet every Requires-Dist reachable
    from what the check imports (transformers checks its own at import: hub, tokenizers,
    safetensors, regex, ...), and every distribution a --tiny run imported is carried, on the
    machine, required by one of those, or an optional import."""
    assert gpu_wheels.unmet() == [] and gpu_wheels.installed_unmet() == []
    known = gpu_wheels.closure([*gpu_wheels.CARRY, *gpu_wheels.DEVICE]) | set(gpu_wheels.OPTIONAL_IMPORTS)
    assert set(tiny[0]["imported_distributions"]) - known == set()


def test_the_old_seven_wheels_leave_transformers_requirements_unmet():
    old = ("transformers", "peft", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
           "typing-extensions")
    problems = gpu_wheels.unmet(carry=old)
    assert any("regex" in p and p.startswith("transformers") for p in problems), problems
    # a requirement the machine's known version misses is named with that version
    older = gpu_wheels.unmet(device=gpu_wheels.DEVICE | {"safetensors": "0.4.0"})
    assert [p.split(" needs ")[1] for p in older if p.startswith("transformers")] == [
        f"{next(r for r in metadata.requires('transformers') if r.startswith('safetensors'))}; the machine has "
        "0.4.0: carry safetensors"], older


def test_a_failed_import_fails_the_preflight_naming_the_fix_and_skips_the_rest(monkeypatch):
    monkeypatch.setattr(gpu_eval, "IMPORTS", (*gpu_eval.IMPORTS, "no_such_module_here"))
    record = {}
    assert gpu_eval.preflight(record, "cpu") == "FAILED" and record["imports_ok"] is False
    assert record["problems"] == ["import no_such_module_here: ModuleNotFoundError: No module named "
                                  f"'no_such_module_here'; fix: {gpu_eval.WHEELS_FIX}"]


def test_an_unaccepted_fallback_exits_nonzero():
    from types import SimpleNamespace

    from perf.gpu_check import Check, verdict

    check = SimpleNamespace(args=SimpleNamespace(accept_fallback=["attention=flex_attention"]),
                            report={"phases": {"preflight": {"status": "passed"}}, "fallbacks": []})
    Check.add_fallback(check, "preflight", {"what": "attention", "used": "flex_attention", "why": "no flash-attn"})
    assert check.report["fallbacks"][0]["accepted"] is True and verdict(check.report) == 0
    Check.add_fallback(check, "eval_decode", {"what": "cuda_graphs", "used": "eager decode", "why": "capture failed"})
    assert check.report["fallbacks"][1]["accepted"] is False and verdict(check.report) == 1
    assert verdict({"phases": {"x": {"status": "FAILED"}}, "fallbacks": []}) == 1


def test_a_phase_past_its_budget_is_recorded_and_the_next_still_runs(tmp_path, repo_root):
    out = tmp_path / "check.json"
    subprocess.run([sys.executable, "-m", "perf.gpu_check", "--tiny", "--budget-s", "20", "--json", str(out),
                    "--phases", "engine_vs_peft", "gpu_throughput"], cwd=repo_root, capture_output=True, text=True,
                   timeout=300, check=False)
    phases = json.loads(out.read_text())["phases"]
    # engine_vs_peft's share of 20 s is 2 s: under the 5 s floor, so it is skipped; gpu_throughput
    # (the rest of the total) still runs
    assert phases["engine_vs_peft"]["status"] == "skipped: no budget left"
    assert phases["gpu_throughput"]["status"] == "measured" and phases["gpu_throughput"]["budget_s"] <= 20


def test_compute_ops_count_kernels_not_views_wrappers_or_no_op_casts():
    """The counter behind ``launches_per_decode_step``: a view, a cast to the tensor's own dtype,
    a wrapper around one (``type_as``) and a split launch nothing on a GPU; a real cast launches
    one copy and a product one matrix multiply (a wrapper such as ``matmul`` counted by its mm).
    A CPU's mixed-dtype product casts inside (``mul`` -> ``to`` -> ``_to_copy`` -> ``copy_``):
    counted as that one copy, found below the wrapper."""
    import collections

    import torch
    from torch.profiler import ProfilerActivity, profile

    from perf.decode_ops import compute_ops

    x, w = torch.randn(4, 8), torch.randn(8, 8)
    x16 = x.to(torch.bfloat16)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        x.to(torch.float32), x.type_as(x), x.contiguous(), x.chunk(2, dim=-1), x.view(-1), x.t(), x.expand_as(x)
        x.to(torch.bfloat16)
        x @ w
        x16 * x
    counted = collections.Counter(e.name for e in compute_ops(prof.events()))
    assert counted == {"aten::copy_": 2, "aten::mm": 1}, counted

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
    assert statuses == {"packed_vs_padded": "passed", "graphs_vs_eager": "passed", "engine_vs_peft": "passed",
                        "gpu_throughput": "measured"}, (statuses, run.stderr[-3000:])
    assert run.returncode == 0
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


def test_engine_keeps_the_adapter_a_bf16_merge_loses(tiny, cpu_kind):
    r = tiny[0]["phases"]["engine_vs_peft"]
    assert len(r["adapter_losses"]) == checks.TINY.adapter_steps and "lr 5e-5" in r["adapter"]
    assert r["tokens_as_reference"] is True and r["engine_changed"] == 0.0, (cpu_kind, r["engine_changed"])
    assert r["merge_changed"] > checks.MERGE_MIN_CHANGED and r["control_separates"] is True, (cpu_kind, r)
    assert r["forward_logits_max_rel_diff"] < checks.LOGITS_TOL  # the engine's own bf16 rounding, small


def test_throughput_figures_are_folded_in(tiny):
    r = tiny[0]["phases"]["gpu_throughput"]
    assert r["returncode"] == 0 and "--preset paper" in r["command"] and "--tiny" in r["command"]
    assert r["train"]["status"] == r["generate"]["status"] == "measured"
    assert r["train"]["tokens_per_s"] > 0 and r["generate"]["tokens_per_s"] > 0
    assert r["generate"]["cuda_graphs"] is False and r["projection"]["total_hours"] > 0


def test_a_phase_past_its_budget_is_recorded_and_the_next_still_runs(tmp_path, repo_root):
    out = tmp_path / "check.json"
    subprocess.run([sys.executable, "-m", "perf.gpu_check", "--tiny", "--budget-s", "20", "--json", str(out),
                    "--phases", "engine_vs_peft", "gpu_throughput"], cwd=repo_root, capture_output=True, text=True,
                   timeout=300, check=False)
    phases = json.loads(out.read_text())["phases"]
    # engine_vs_peft's share of 20 s is 2.5 s: under the 5 s floor, so it is skipped; gpu_throughput
    # (the rest of the total) still runs
    assert phases["engine_vs_peft"]["status"] == "skipped: no budget left"
    assert phases["gpu_throughput"]["status"] == "measured" and phases["gpu_throughput"]["budget_s"] <= 20

"""plot and report stages on evaluation outputs built from known per-problem outcomes:
two strategies, two training seeds each, and a third strategy listed in params only."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

from stages import plot as plot_stage
from stages import report as report_stage
from thinktune.atomic import write_json, write_jsonl
from thinktune.evaluation.records import read_runs, summarize
from thinktune.reporting.plots import LINE_STYLES, read_curve_csv

N = 10
SEEDS = (1, 2)
# Which of the 10 problems each model solves (greedy, one sample): strategy -> seed -> checkpoint.
OUTCOMES = {
    "base": {None: {"base": {0, 1}}},
    "deep": {1: {"checkpoint-4": {0, 1, 2, 3}, "checkpoint-8": {0, 1, 2, 3, 4, 5, 6}, "checkpoint-12": {0}},
             2: {"checkpoint-4": {0, 1, 2}, "checkpoint-8": {0, 1, 2, 3, 4, 5}, "checkpoint-12": {0, 1}}},
    "diverse": {1: {"checkpoint-4": {0, 1, 2}, "checkpoint-8": {0, 1, 2}, "checkpoint-12": {1, 2}},
                2: {"checkpoint-4": {0, 1}, "checkpoint-8": {0, 1, 2, 3}, "checkpoint-12": {1}}},
}


def records(solved: set[int]) -> list[dict]:
    return [{"question_id": f"q{i}", "difficulty": "easy", "n_samples": 1, "n_correct": int(i in solved),
             "pass_at_1": float(i in solved),
             "samples": [{"raw_output": "", "code": "print(1)", "reasoning_chars": 100 + i, "new_tokens": 50,
                          "hit_token_limit": i == 9, "verdicts": [], "first_failure": None,
                          "passed": i in solved}]} for i in range(N)]


def run_dir(root: Path, strategy: str, seed: int | None, benchmark: str = "livecodebench") -> Path:
    results = root / "results" / benchmark
    return results / strategy if seed is None else results / strategy / f"seed-{seed}"


@pytest.fixture
def workspace(tmp_path, repo_root) -> Path:
    """results/ as the eval stages write them, params.yaml with seeds 1 and 2."""
    for strategy, by_seed in OUTCOMES.items():
        for seed, checkpoints in by_seed.items():
            table = {}
            for name, solved in checkpoints.items():
                recs = records(solved)
                write_jsonl(run_dir(tmp_path, strategy, seed) / f"{name}.jsonl", recs)
                table[name] = summarize(recs, 0 if name == "base" else int(name.split("-")[1]))
            write_json(run_dir(tmp_path, strategy, seed) / "summary.json",
                       {"target": strategy, "seed": seed, "benchmark": "livecodebench", "n_problems": N,
                        "n_samples": 1, "decoding": {"temperature": 0.0, "max_new_tokens": 512},
                        "environment": {"precision": "bf16", "device": "cpu", "device_name": "AMD EPYC",
                                        "torch": "2.13.0"},
                        "checkpoints": table})
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["train"]["seeds"] = list(SEEDS)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def mean_solved(strategy: str, step: int) -> float:
    """Pass@1 of a step by hand: solved problems averaged over the seeds, over N."""
    return sum(len(OUTCOMES[strategy][s][f"checkpoint-{step}"]) for s in SEEDS) / (len(SEEDS) * N)


def test_plot_and_report_stages_write_their_outputs(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    for strategy in ("deep", "diverse"):
        for seed in SEEDS:  # as stages.train writes them
            live = workspace / "dvclive" / f"train_{strategy}" / f"seed-{seed}"
            write_json(live / "summary.json", {
                "chats": 24, "steps": 12, "chats_per_step": 2, "train_loss": 0.812, "valid_loss": 0.9,
                "tokens_per_s": 140.2, "environment": {"precision": "bf16", "device_name": "AMD EPYC"}})
            (live / "plots" / "metrics").mkdir(parents=True)
            (live / "plots" / "metrics" / "loss.tsv").write_text(f"step\tloss\n1\t{seed}.5\n2\t{seed}.25\n")
    write_json(workspace / "data" / "formatted" / "report.json", {
        s: {"load": {"kept": 30, "skipped": {}, "malformed": m}, "dropped": {"overlength": 2}, "train_rows": 24,
            "valid_rows": 4, "trimmed_for_balance": t} for s, m, t in (("deep", 0, 0), ("diverse", 1, 3))})
    plot_stage.main([])
    for name in ("pass_at_1.png", "answer_shape.png"):
        assert (workspace / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = read_curve_csv(workspace / "plots" / "pass_at_1.csv")
    deep = [(r["checkpoint"], r["step"], r["seeds"], r["pass_at_1"]) for r in curve if r["strategy"] == "deep"]
    assert deep == [("base", 0, 1, 0.2), ("checkpoint-4", 4, 2, mean_solved("deep", 4)),
                    ("checkpoint-8", 8, 2, mean_solved("deep", 8)), ("checkpoint-12", 12, 2, mean_solved("deep", 12))]
    assert all(r["ci95_low"] < r["pass_at_1"] < r["ci95_high"] for r in curve if r["step"])  # a band, not a line
    assert [r["step"] for r in curve if r["strategy"] == "diverse"] == [0, 4, 8, 12]
    loss = (workspace / "plots" / "training" / "loss.csv").read_text().splitlines()
    assert loss[0] == "run,strategy,seed,step,loss" and "deep seed 2,deep,2,2,2.25" in loss and len(loss) == 9

    report_stage.main([])
    report = (workspace / "report" / "README.md").read_text()
    assert report.splitlines()[4].startswith("**Answer: ")
    assert "](../plots/pass_at_1.png)" in report and "](../plots/answer_shape.png)" in report
    assert f"| deep | 8 | 2 | {100 * mean_solved('deep', 8):.1f} [" in report
    assert "| base | 0 | — | 20.0 [" in report
    assert "| deep | 8 | 0 | 10.0% | 0.0% |" in report  # reasoning tokens, cut, no code (means over seeds)
    assert "answers generated in **bf16** on cpu (AMD EPYC); torch 2.13.0" in report
    assert "training deep seed 2: 12 steps of 2 chats, final loss 0.812, final validation loss 0.900, 140 tokens/s" \
        in report
    assert ("diverse: data/sample/codegen_diverse.jsonl (the offline stand-in for Naholav/CodeGen-Diverse-5K): 24 "
            "training chats (4 held out; 1 malformed rows dropped, 2 over the length limit, 3 trimmed for balance)") \
        in report
    assert "seed variance not estimated" not in report  # two seeds
    summary = json.loads((workspace / "report" / "study.json").read_text())
    assert summary["seeds"] == [1, 2] and summary["n_problems"] == N
    analysis = summary["analysis"]
    # No validation loss logged here: each strategy's step is the final one, the pre-registered rule
    assert analysis["headline"]["rules"] == ["final"]
    assert analysis["checkpoints"]["deep"]["8"]["estimate"] == pytest.approx(mean_solved("deep", 8))
    assert analysis["checkpoints"]["deep"]["8"]["vs_base"]["estimate"] == pytest.approx(mean_solved("deep", 8) - 0.2)
    assert analysis["differences"]["deep-diverse"]["8"]["estimate"] == \
        pytest.approx(mean_solved("deep", 8) - mean_solved("diverse", 8))
    # metrics: the headline only, a few short columns (with everything in it `dvc metrics show` was 1,499 wide).
    # Without validation loss the step is the final one (12), whatever the benchmark says:
    chosen = {"deep": 12, "diverse": 12}
    assert {s: analysis["best"][s]["step"] for s in chosen} == chosen
    study = json.loads((workspace / "metrics" / "study.json").read_text())
    d = analysis["headline"]["difference"]
    assert study == {"base": {"pass1": 0.2}, **{s: {"pass1": mean_solved(s, step)} for s, step in chosen.items()},
                     "diff": {"pass1": d["estimate"], "lo": d["ci95_low"], "hi": d["ci95_high"]}, "problems": N}
    assert not list(workspace.rglob(".*tmp-*"))  # no temporary files left behind


def test_a_third_strategy_is_covered_by_plot_and_report(workspace, monkeypatch):
    """Strategies are data: a params entry (and its results) and every output covers it."""
    monkeypatch.chdir(workspace)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["strategies"]["deep_2k"] = [{"dataset": "codegen_deep", "problems": 400}]
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    for seed in SEEDS:
        table = {}
        for step in (4, 8, 12):
            write_jsonl(run_dir(workspace, "deep_2k", seed) / f"checkpoint-{step}.jsonl", records({0, 5}))
            table[f"checkpoint-{step}"] = summarize(records({0, 5}), step)
        base = json.loads((run_dir(workspace, "deep", 1) / "summary.json").read_text())
        write_json(run_dir(workspace, "deep_2k", seed) / "summary.json", base | {"target": "deep_2k", "seed": seed,
                                                                                 "checkpoints": table})
    plot_stage.main([])
    report_stage.main([])
    curve = read_curve_csv(workspace / "plots" / "pass_at_1.csv")
    assert [r["pass_at_1"] for r in curve if r["strategy"] == "deep_2k"] == [0.2, 0.2, 0.2, 0.2]
    report = (workspace / "report" / "README.md").read_text()
    assert "Deep_2k" in report and "| deep_2k | 8 | 2 | 20.0 [" in report
    assert "data/sample/codegen_deep.jsonl (the offline stand-in for Naholav/CodeGen-Deep-5K), first 400 problems" \
        in report
    assert set(json.loads((workspace / "metrics" / "study.json").read_text())) == \
        {"base", "deep", "diverse", "deep_2k", "diff", "problems"}


def test_report_refuses_results_on_different_problems(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    write_jsonl(run_dir(workspace, "diverse", 2) / "checkpoint-12.jsonl", records({0})[:-1])
    with pytest.raises(ValueError, match="same problems|missing"):
        report_stage.main([])
    assert not (workspace / "report" / "README.md").exists()


def test_a_second_benchmark_is_a_second_view(workspace, monkeypatch):
    """eval.benchmarks [livecodebench, humaneval]: HumanEval's results (here every model solves
    problem 0 only) become a panel of the plot and a section of the report, not the headline."""
    monkeypatch.chdir(workspace)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["eval"]["benchmarks"] = ["livecodebench", "humaneval"]
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    for strategy, by_seed in OUTCOMES.items():
        for seed, checkpoints in by_seed.items():
            summary = json.loads((run_dir(workspace, strategy, seed) / "summary.json").read_text())
            table = {}
            for name in checkpoints:
                write_jsonl(run_dir(workspace, strategy, seed, "humaneval") / f"{name}.jsonl", records({0}))
                table[name] = summarize(records({0}), summary["checkpoints"][name]["step"])
            write_json(run_dir(workspace, strategy, seed, "humaneval") / "summary.json",
                       summary | {"benchmark": "humaneval", "checkpoints": table})
    plot_stage.main([])
    report_stage.main([])
    curve = read_curve_csv(workspace / "plots" / "pass_at_1.csv")
    assert [r["benchmark"] for r in curve] == ["livecodebench"] * 8 + ["humaneval"] * 8
    assert {r["pass_at_1"] for r in curve if r["benchmark"] == "humaneval"} == {0.1}
    report = (workspace / "report" / "README.md").read_text()
    assert report.splitlines()[4].startswith("**Answer: ")  # the headline is still LiveCodeBench
    assert "## Second view: humaneval" in report and "**On humaneval: this run cannot tell Deep from Diverse" in report
    summary = json.loads((workspace / "report" / "study.json").read_text())
    assert summary["second_views"]["humaneval"]["analysis"]["checkpoints"]["deep"]["8"]["estimate"] == 0.1
    metrics = json.loads((workspace / "metrics" / "study.json").read_text())
    step = summary["analysis"]["best"]["deep"]["step"]
    assert metrics["deep"]["pass1"] == pytest.approx(mean_solved("deep", step)) != 0.1


def test_runs_evaluated_differently_are_refused(workspace):
    summary = run_dir(workspace, "deep", 2) / "summary.json"
    data = json.loads(summary.read_text())
    summary.write_text(json.dumps(data | {"n_samples": 4}))
    with pytest.raises(ValueError, match="n_samples"):
        read_runs(workspace / "results", "livecodebench", ["deep", "diverse"], list(SEEDS))
    with pytest.raises(FileNotFoundError, match="eval_checkpoints@deep-3-livecodebench"):
        read_runs(workspace / "results", "livecodebench", ["deep", "diverse"], [1, 2, 3])


def test_curves_stay_distinguishable_where_equal():
    for first, second in itertools.pairwise(LINE_STYLES):
        assert first["linestyle"] != second["linestyle"] and first["marker"] != second["marker"]
    deep, diverse = LINE_STYLES[:2]
    assert deep["markersize"] > diverse["markersize"] and deep["linewidth"] > diverse["linewidth"]

"""The whole study, end to end, through `dvc repro` on a copy of this repository.

A tiny random Qwen2 model stands in for the real one (no download), selected through a
conf/ preset exactly as a user would add one; everything else is the real pipeline:
sample data, TRL + PEFT training, batched generation, sandboxed grading, plot and report.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from dvc_project import BENCHMARKS, EVERY_STAGE, SEEDS, make_project, ran, sh

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory, repo_root, tiny_model_dir) -> tuple[Path, dict]:
    """A fresh git + DVC copy of the repo whose default preset is the tiny model."""
    return make_project(repo_root, tmp_path_factory.mktemp("e2e"), tiny_model_dir)


def test_repro_builds_every_output(project):
    repo, env = project
    output = sh(["dvc", "repro"], repo, env)
    assert ran(output) == EVERY_STAGE

    for path in ["models/base/model.safetensors", "data/raw/train/codegen_deep.jsonl",
                 "data/raw/train/codegen_diverse.jsonl", "data/raw/eval/livecodebench.jsonl", "data/raw/eval/humaneval.jsonl", "data/formatted/deep/train.jsonl",
                 "data/formatted/diverse/train.jsonl", "data/formatted/report.json",
                 "dvclive/train_deep/seed-1/plots/metrics/loss.tsv", "plots/pass_at_1.csv", "plots/training/loss.csv",
                 "plots/pass_at_1.png", "report/README.md", "metrics/study.json"]:
        assert (repo / path).is_file(), path

    problems = [json.loads(line) for line in (repo / "data/raw/eval/livecodebench.jsonl").read_text().splitlines()]
    humaneval = [json.loads(line)["question_id"] for line in (repo / "data/raw/eval/humaneval.jsonl").open()]
    assert humaneval == [f"HumanEval/{i}" for i in range(12)]  # eval.max_problems
    assert problems and all(p["platform"] == "atcoder" and p["difficulty"] in ("easy", "medium") for p in problems)

    for strategy in ("deep", "diverse"):
        for seed in SEEDS:
            run = f"{strategy}/seed-{seed}"
            for benchmark in BENCHMARKS:  # every checkpoint scored on both
                summary = json.loads((repo / "results" / benchmark / run / "summary.json").read_text())
                assert summary["benchmark"] == benchmark and summary["n_problems"] == 12
            run = f"livecodebench/{run}"
            steps = sorted(int(p.name.split("-")[1]) for p in (repo / "models" / strategy / f"seed-{seed}")
                           .glob("checkpoint-*"))
            assert steps == [2, 3]  # 12 chats / accumulation 4 = 3 steps, saved every 2 and at the end
            summary = json.loads((repo / "results" / run / "summary.json").read_text())
            assert summary["seed"] == seed and summary["n_samples"] == 2
            assert sorted(m["step"] for m in summary["checkpoints"].values()) == steps
            assert {f"checkpoint-{s}.jsonl" for s in steps} | {"summary.json"} == \
                   {p.name for p in (repo / "results" / run).iterdir()}
        # The seed sets the LoRA initialisation and data order: two seeds, two different adapters.
        one, two = ((repo / "models" / strategy / f"seed-{s}/checkpoint-3/adapter_model.safetensors").read_bytes()
                    for s in SEEDS)
        assert one != two
    assert not list((repo / "metrics").glob("eval_*.json"))  # eval stages declare no DVC metrics
    summary = json.loads((repo / "results/livecodebench/base/summary.json").read_text())
    base = summary["checkpoints"]["base"]
    # Pass@1 recomputed from the per-problem records: the mean over problems of passing samples,
    # a sample passing when every test it ran passed.
    records = [json.loads(line) for line in (repo / "results/livecodebench/base/base.jsonl").read_text().splitlines()]
    passing = [[s["passed"] for s in r["samples"]] for r in records]
    assert all(s["passed"] == (bool(s["verdicts"]) and all(v == "passed" for v in s["verdicts"]))
               for r in records for s in r["samples"])
    assert base["total"] == len(problems) == len(records)
    assert base["pass_at_1"] == pytest.approx(sum(sum(p) / len(p) for p in passing) / len(passing), abs=1e-6)
    assert {"mean_reasoning_tokens", "truncated_share", "no_code_share"} <= set(base)
    assert summary["decoding"]["max_new_tokens"] == 24 and summary["decoding"]["repetition_penalty"] == 1.0
    assert summary["environment"]["precision"] in ("bf16", "fp32") and summary["environment"]["device"]
    engine = summary["decode_engine"]["base"]  # decoded here, on a CPU: no CUDA graphs, and why
    assert engine["cached"] is False and engine["cuda_graphs"] is False and engine["new_tokens"] > 0
    assert engine["graphs_off_reason"].startswith("not a CUDA device")
    assert engine["decode_forward"] == "fused"  # the tiny Qwen2 decodes through the fused step

    record = json.loads((repo / "results/livecodebench/base/base.jsonl").read_text().splitlines()[0])
    sample = record["samples"][0]
    assert {"raw_output", "code", "verdicts", "reasoning_chars", "reasoning_tokens", "hit_token_limit",
            "passed"} <= set(sample)

    assert all(r["n_samples"] == 2 and len(r["samples"]) == 2 for r in records)

    report = (repo / "report/README.md").read_text()
    assert report.splitlines()[4].startswith("**Answer: ")  # the first paragraph answers the question
    assert "smallest difference this design could detect at 80% power" in report
    assert "2 and 2 training seeds" in report and "2 sample(s) per problem; training seeds 1, 2" in report
    assert "data/sample/codegen_deep.jsonl (the offline stand-in for Naholav/CodeGen-Deep-5K)" in report
    assert "## Second view: humaneval" in report and "**On humaneval: " in report
    data = json.loads((repo / "data/formatted/report.json").read_text())
    assert data["deep"]["kept"] == 12 and data["diverse"]["kept"] == 12
    # Each run's log and summary; the headline metrics come from the report alone.
    for strategy in ("deep", "diverse"):
        for seed in SEEDS:
            summary = json.loads((repo / f"dvclive/train_{strategy}/seed-{seed}/summary.json").read_text())
            assert summary["tokens_per_s"] > 0 and summary["chats"] == 9 and summary["environment"]["device"]
    study = json.loads((repo / "metrics/study.json").read_text())
    assert set(study) == {"base", "deep", "diverse", "diff", "problems"} and study["problems"] == len(problems)
    assert study["base"]["pass1"] == pytest.approx(base["pass_at_1"], abs=1e-6)
    full = json.loads((repo / "report/study.json").read_text())
    analysis = full["analysis"]
    assert full["seeds"] == list(SEEDS) and full["n_samples"] == 2
    for strategy in ("deep", "diverse"):
        # Each strategy's headline: its chosen step's Pass@1, the mean over both seeds' records.
        step = analysis["best"][strategy]["step"]
        rates = [r["n_correct"] / r["n_samples"] for seed in SEEDS for r in map(
            json.loads, (repo / f"results/livecodebench/{strategy}/seed-{seed}/checkpoint-{step}.jsonl").open())]
        assert study[strategy]["pass1"] == pytest.approx(sum(rates) / len(rates), abs=1e-6)
        assert analysis["best"][strategy]["pass_at_1"]["seeds"] == [len(SEEDS)]
    d = analysis["headline"]["difference"]
    assert (study["diff"]["pass1"], study["diff"]["lo"], study["diff"]["hi"]) == \
           (d["estimate"], d["ci95_low"], d["ci95_high"])
    assert d["seed_variance"] == "estimated" and d["seeds"] == [2, 2]
    second = full["second_views"]["humaneval"]
    assert second["n_problems"] == 12 and set(second["analysis"]["best"]) == {"deep", "diverse"}
    curve = (repo / "plots/pass_at_1.csv").read_text().splitlines()
    assert curve[0].startswith("benchmark,strategy,checkpoint,step,seeds,pass_at_1,ci95_low,ci95_high")
    assert len(curve) == 1 + 2 * 2 * 3  # each benchmark and strategy: the base model and steps 2 and 3
    # one row in `dvc metrics show`
    assert [p.name for p in (repo / "metrics").rglob("*") if p.name != ".gitignore"] == ["study.json"]
    assert full["environment"]["precision"] in ("bf16", "fp32")


def test_adding_a_seed_trains_and_evaluates_only_that_seed(project):
    repo, env = project
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "two seeds"], repo, env)
    adapters = {p: p.read_bytes() for p in (repo / "models").rglob("adapter_model.safetensors")}
    output = sh(["dvc", "exp", "run", "-S", "train.seeds=[1,2,3]"], repo, env)
    assert ran(output) == {"check_params", "train_deep@3", "train_diverse@3", "plot", "report",
                           *(f"eval_checkpoints@{s}-3-{b}" for s in ("deep", "diverse") for b in BENCHMARKS)}
    assert all(p.read_bytes() == data for p, data in adapters.items())  # the other runs untouched
    full = json.loads((repo / "report/study.json").read_text())
    assert full["seeds"] == [1, 2, 3] and full["analysis"]["headline"]["difference"]["seeds"] == [3, 3]
    # ... and removing it again re-runs no training or evaluation: only the analysis of the runs listed
    # (restored here from DVC's run cache: the same runs were analysed before).
    output = sh(["dvc", "exp", "run", "-S", "train.seeds=[1,2]"], repo, env)
    assert not {stage for stage in ran(output) if stage.startswith(("train_", "eval_"))}
    assert json.loads((repo / "report/study.json").read_text())["seeds"] == [1, 2]


def test_a_benchmark_comes_and_goes_without_re_evaluating_the_others(project):
    repo, env = project
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "both benchmarks"], repo, env)
    lcb = {p: p.read_bytes() for p in (repo / "results/livecodebench").rglob("*.jsonl")}
    output = sh(["dvc", "exp", "run", "-S", "eval.benchmarks=[livecodebench]"], repo, env)
    assert not {stage for stage in ran(output) if stage.startswith(("train_", "eval_"))}
    assert "## Second view" not in (repo / "report/README.md").read_text()
    # back again: HumanEval's evaluations come from DVC's run cache, LiveCodeBench's are untouched
    output = sh(["dvc", "exp", "run", "-S", "eval.benchmarks=[livecodebench,humaneval]"], repo, env)
    assert not {stage for stage in ran(output) if stage.startswith(("train_", "eval_"))}
    assert "## Second view: humaneval" in (repo / "report/README.md").read_text()
    assert all(p.read_bytes() == data for p, data in lcb.items())
    # a LiveCodeBench filter re-runs LiveCodeBench's evaluations only
    output = sh(["dvc", "exp", "run", "-S", "eval.difficulties=[easy]"], repo, env)
    assert {stage for stage in ran(output) if stage.startswith("eval_")} == \
        {"eval_base@livecodebench", *(f"eval_checkpoints@{s}-{seed}-livecodebench" for s in ("deep", "diverse")
                                      for seed in SEEDS)}
    sh(["dvc", "exp", "run", "-S", "eval.difficulties=[easy,medium]"], repo, env)


def test_second_repro_is_up_to_date(project):
    repo, env = project
    assert ran(sh(["dvc", "repro"], repo, env)) == set()
    assert "up to date" in sh(["dvc", "status"], repo, env)


def test_plot_setting_reruns_only_plot_and_report(project):
    repo, env = project
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("  dpi: 150\n", "  dpi: 90\n"))  # as a user edits it
    assert ran(sh(["dvc", "repro"], repo, env)) == {"check_params", "plot", "report"}


def test_retraining_diverse_leaves_deep_alone(project):
    repo, env = project
    sample = repo / "data/sample/codegen_diverse.jsonl"
    lines = sample.read_text().splitlines(keepends=True)
    row = json.loads(lines[-1])  # new Diverse data, the same number of rows (format.balance: error)
    row["output"] = "Let me read the statement once more. " + row["output"]
    sample.write_text("".join(lines[:-1]) + json.dumps(row) + "\n")
    output = sh(["dvc", "repro"], repo, env)
    assert {"train_diverse@1", "train_diverse@2", "eval_checkpoints@diverse-1-humaneval"} \
        <= ran(output)
    assert not {"fetch_model", "train_deep@1", "eval_checkpoints@deep-1-livecodebench",
                "eval_base@livecodebench"} & ran(output)


def test_metrics_and_plots_diff_across_commits_in_a_clone_without_a_remote(project, tmp_path):
    """Metrics, plot data and the report live in git (cache: false): any clone compares commits."""
    repo, env = project
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "diverse retrained on edited data"], repo, env)
    tracked = set(sh(["git", "ls-files", "metrics", "plots", "report"], repo, env).split())
    assert {"metrics/study.json", "plots/pass_at_1.csv", "plots/pass_at_1.png", "plots/training/loss.csv",
            "report/README.md", "report/study.json"} <= tracked
    changed = set(sh(["git", "diff", "--name-only", "HEAD~1", "HEAD"], repo, env).split()) & tracked
    changed_plots = sorted(name for name in changed if name.startswith("plots/") and name.endswith(".csv"))
    assert changed_plots, changed  # Diverse's new run: new results to compare

    clone = tmp_path / "clone"  # no DVC remote, no cache: only what git holds
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    assert not list(clone.glob("models/*/*/checkpoint-*/adapter_model.safetensors"))  # DVC's outputs are not there
    metrics = json.loads(sh(["dvc", "metrics", "diff", "HEAD~1", "--all", "--json"], clone, env))
    headline = metrics["metrics/study.json"]
    assert "diff.pass1" in headline and all(v["old"] is not None and v["new"] is not None
                                            for v in headline.values()), headline
    plots = json.loads(sh(["dvc", "plots", "diff", "HEAD~1", "--json", "--split"], clone, env))["data"]
    rows = [row for views in plots.values() for view in views
            for row in view["anchor_definitions"]["<DVC_METRIC_DATA>"]]
    for name in changed_plots:  # both commits' data, and they differ
        by_revision = {rev: [{k: v for k, v in row.items() if k != "rev"} for row in rows
                             if row["filename"] == name and row["rev"] == rev] for rev in ("HEAD~1", "workspace")}
        assert by_revision["HEAD~1"] and by_revision["workspace"], (name, by_revision)
        assert by_revision["HEAD~1"] != by_revision["workspace"], name


def test_bad_set_param_fails_before_any_output_is_removed(project):
    repo, env = project
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "state before the bad experiment", "--allow-empty"], repo, env)
    params_before = (repo / "params.yaml").read_bytes()
    adapters = sorted((repo / "models" / "deep").rglob("*"))
    assert adapters
    result = subprocess.run(["dvc", "exp", "run", "-S", "lora.r=-4"], cwd=repo, env=env, capture_output=True,
                            text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "params.yaml: lora.r: -4 is not allowed; must be greater than 0" in output
    assert "Traceback" not in output
    assert ran(output) <= {"check_params"}
    assert sorted((repo / "models" / "deep").rglob("*")) == adapters  # nothing removed
    assert (repo / "params.yaml").read_bytes() == params_before  # the bad value is set back


def test_hand_edit_is_kept_by_exp_run(project):
    repo, env = project
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("  dpi: 90\n", "  dpi: 80\n"))
    output = sh(["dvc", "exp", "run"], repo, env)
    assert ran(output) >= {"plot", "report"} and not any(stage.startswith("train_") for stage in ran(output))
    assert "  dpi: 80\n" in params.read_text()


def test_results_travel_through_a_dvc_remote(project, tmp_path):
    """What users share: push adapters, metrics and plots; a fresh clone pulls them up to date."""
    repo, env = project
    sh(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "remote"], repo, env)
    sh(["dvc", "push"], repo, env)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    sh(["dvc", "pull"], clone, env)
    assert (clone / "report/README.md").read_text() == (repo / "report/README.md").read_text()
    assert list((clone / "models/deep").glob("seed-1/checkpoint-*/adapter_model.safetensors"))
    assert "up to date" in sh(["dvc", "status"], clone, env)

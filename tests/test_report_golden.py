"""The report stage's outputs, byte for byte, against golden files in tests/golden/.

Each scenario is a fixed, realistic workspace (results, training logs, data report, the Pass@1
curve) and everything ``stages.report`` writes from it (report/README.md, report/study.json,
metrics/study.json), plus the curve CSV and the per-checkpoint summaries the report reads. The
golden files were written by the code before the statistics moved to scipy and the report to a
Jinja2 template; a change to any number, format or sentence shows up here as a diff.

    python tests/test_report_golden.py      # rewrite tests/golden/ after a deliberate change
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

# Run as a script, Python puts tests/ on the path (for test_plot_report); thinktune and stages
# are installed (make test installs the checkout editable).
from stages import report as report_stage
from test_plot_report import OUTCOMES, SEEDS, records
from thinktune.analysis.answer import analysis_rows, checkpoint_points
from thinktune.atomic import write_json, write_jsonl
from thinktune.evaluation.records import read_runs, summarize
from thinktune.layout import live_dir, results_dir
from thinktune.reporting.plots import curve_rows, write_curve_csv

GOLDEN = Path(__file__).resolve().parent / "golden"
REPO = GOLDEN.parent.parent

OUTPUTS = ("README.md", "study.json", "metrics.json", "pass_at_1.csv", "summaries.json")
ENVIRONMENT = {"precision": "bf16", "device": "cpu", "device_name": "AMD EPYC", "torch": "2.13.0",
               "transformers": "5.24.0", "peft": "0.21.2"}

# One seed, ten samples per problem, twelve problems: correct answers per problem at each step.
ONE_SEED = {
    "base": {None: {"base": [3, 1, 0, 2, 5, 0, 1, 4, 0, 2, 6, 1]}},
    "deep": {42: {"checkpoint-3": [9, 7, 0, 5, 10, 2, 1, 8, 4, 5, 9, 3],
                  "checkpoint-6": [10, 10, 9, 10, 10, 8, 7, 10, 10, 9, 10, 10]}},
    "diverse": {42: {"checkpoint-3": [7, 8, 2, 4, 5, 3, 2, 7, 5, 0, 10, 4],
                     "checkpoint-6": [0, 2, 0, 3, 1, 0, 0, 2, 1, 0, 3, 0]}},
}

# The paper preset's three seeds, four samples per problem, twelve problems (drawn once from a logit
# model with Deep 1.2 logits above Diverse and kept as numbers): run-to-run variance measured.
THREE_SEEDS = {
    "base": {None: {"base": [2, 4, 0, 4, 2, 0, 1, 0, 0, 3, 2, 3]}},
    "deep": {42: {"checkpoint-3": [1, 4, 0, 4, 3, 1, 0, 1, 2, 3, 3, 3],
                  "checkpoint-6": [4, 4, 1, 4, 4, 1, 1, 1, 0, 4, 4, 4]},
             43: {"checkpoint-3": [2, 3, 1, 4, 1, 0, 0, 1, 1, 2, 3, 3],
                  "checkpoint-6": [4, 4, 3, 4, 3, 1, 2, 0, 4, 4, 3, 4]},
             44: {"checkpoint-3": [3, 3, 1, 4, 3, 3, 1, 1, 2, 2, 4, 2],
                  "checkpoint-6": [3, 4, 0, 4, 3, 3, 0, 1, 4, 2, 3, 4]}},
    "diverse": {42: {"checkpoint-3": [1, 3, 0, 4, 2, 0, 1, 0, 0, 3, 4, 2],
                     "checkpoint-6": [3, 3, 0, 3, 1, 0, 0, 1, 0, 3, 2, 3]},
                43: {"checkpoint-3": [1, 3, 1, 4, 2, 0, 0, 1, 1, 4, 1, 4],
                     "checkpoint-6": [3, 4, 0, 3, 3, 0, 0, 0, 1, 1, 2, 3]},
                44: {"checkpoint-3": [0, 3, 0, 3, 1, 0, 2, 1, 1, 2, 1, 3],
                     "checkpoint-6": [1, 3, 0, 2, 2, 2, 1, 1, 0, 0, 3, 0]}},
}


def sampled_records(correct: list[int], n: int) -> list[dict]:
    """Records of ``n`` samples per problem with ``correct[p]`` passing; the answers' shape varies
    by problem and sample (some cut by the token limit, some without code)."""
    return [{"question_id": f"p{p:02d}", "difficulty": "medium", "n_samples": n, "n_correct": c,
             "pass_at_1": c / n,
             "samples": [{"raw_output": "", "code": None if (p + i) % 7 == 0 else "print(1)",
                          "reasoning_chars": 300 + 17 * p + i, "reasoning_tokens": 80 + 5 * p + 3 * i,
                          "new_tokens": 120 + i, "hit_token_limit": (p * i) % 5 == 4, "verdicts": [],
                          "first_failure": None, "passed": i < c} for i in range(n)]}
            for p, c in enumerate(correct)]


def write_results(root: Path, benchmark: str, runs: dict, make_records, n_problems: int, n_samples: int) -> None:
    """results/<benchmark>/ as the eval stages write them, for strategy -> seed -> checkpoint -> outcome."""
    for strategy, by_seed in runs.items():
        for seed, checkpoints in by_seed.items():
            folder = results_dir(root / "results", benchmark, strategy, seed)
            table = {}
            for name, outcome in checkpoints.items():
                recs = make_records(outcome)
                write_jsonl(folder / f"{name}.jsonl", recs)
                table[name] = summarize(recs, 0 if name == "base" else int(name.split("-")[1]))
            write_json(folder / "summary.json", {
                "target": strategy, "seed": seed, "benchmark": benchmark, "n_problems": n_problems,
                "n_samples": n_samples, "decoding": {"temperature": 0.7 if n_samples > 1 else 0.0,
                                                     "max_new_tokens": 512},
                "environment": ENVIRONMENT, "checkpoints": table})


def write_training(root: Path, strategy: str, seed: int, valid: dict[int, float] | None, loss: float) -> None:
    """A training run's DVCLive folder as stages.train leaves it (validation loss optional)."""
    live = live_dir(root / "dvclive", strategy, seed)
    write_json(live / "summary.json", {
        "chats": 24, "steps": 12, "chats_per_step": 2, "train_loss": loss,
        "valid_loss": None if valid is None else valid[max(valid)], "tokens_per_s": 140.2 + seed,
        "environment": {"precision": "bf16", "device_name": "AMD EPYC"}})
    if valid is not None:
        (live / "plots" / "metrics").mkdir(parents=True)
        (live / "plots" / "metrics" / "valid_loss.tsv").write_text(
            "step\tvalid_loss\n" + "".join(f"{step}\t{v}\n" for step, v in valid.items()))


def write_params(root: Path, repo_root: Path, seeds: list[int], benchmarks: list[str]) -> None:
    """params.yaml with the keys the report prints fixed here, so a new default elsewhere leaves it."""
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["model"]["name"] = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    params["data"]["source"] = "sample"
    params["strategies"] = {"deep": [{"dataset": "codegen_deep"}],
                            "diverse": [{"dataset": "codegen_diverse", "problems": 400,
                                         "solutions_per_problem": 1}]}
    params["train"]["seeds"] = seeds
    params["eval"].update(benchmarks=benchmarks, platforms=["atcoder"], difficulties=["easy", "medium"])
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def two_seeds(root: Path, repo_root: Path) -> None:
    """tests/test_plot_report.py's outcomes (two seeds, one greedy answer, ten problems), Deep's steps
    chosen by validation loss, Diverse's final step (no validation loss), and HumanEval as a second view
    where the base model solves nothing and every fine-tuned model everything (no spread: Wilson over
    problems for a Pass@1, Newcombe's paired interval and McNemar for a difference)."""
    write_params(root, repo_root, list(SEEDS), ["livecodebench", "humaneval"])
    write_results(root, "livecodebench", OUTCOMES, records, 10, 1)
    every_or_none = {s: {seed: {name: set() if s == "base" else set(range(10)) for name in checkpoints}
                         for seed, checkpoints in by_seed.items()} for s, by_seed in OUTCOMES.items()}
    write_results(root, "humaneval", every_or_none, records, 10, 1)
    for seed in SEEDS:
        write_training(root, "deep", seed, {4: 1.1 + seed / 100, 8: 0.95, 12: 1.3}, 0.812)
        write_training(root, "diverse", seed, None, 0.7)
    write_json(root / "data" / "formatted" / "report.json", {
        s: {"load": {"kept": 30, "skipped": {}, "malformed": m}, "dropped": {"overlength": 2}, "train_rows": 24,
            "valid_rows": 4, "trimmed_for_balance": t} for s, m, t in (("deep", 0, 0), ("diverse", 1, 3))})


def one_seed(root: Path, repo_root: Path) -> None:
    """One seed, ten sampled answers per problem (pass@5 and pass@10 in the summaries), both steps
    chosen by validation loss, no data report: the report says seed variance is not estimated."""
    write_params(root, repo_root, [42], ["livecodebench"])
    write_results(root, "livecodebench", ONE_SEED, lambda correct: sampled_records(correct, 10), 12, 10)
    write_training(root, "deep", 42, {3: 1.0, 6: 1.2}, 0.64)
    write_training(root, "diverse", 42, {3: 0.9, 6: 1.1}, 0.58)


def three_seeds(root: Path, repo_root: Path) -> None:
    """The paper preset's three seeds ([42, 43, 44]) with four sampled answers on twelve problems: Deep's
    step chosen by validation loss, Diverse's the final step (no validation loss), run-to-run variance
    measured, so the report may name a winner when the interval excludes 0."""
    write_params(root, repo_root, [42, 43, 44], ["livecodebench"])
    write_results(root, "livecodebench", THREE_SEEDS, lambda correct: sampled_records(correct, 4), 12, 4)
    for seed in (42, 43, 44):
        write_training(root, "deep", seed, {3: 1.0 + seed / 1000, 6: 0.9}, 0.61)
        write_training(root, "diverse", seed, None, 0.57)


SCENARIOS = {"two_seeds": two_seeds, "one_seed": one_seed, "three_seeds": three_seeds}


def render(scenario: str, root: Path) -> dict[str, str]:
    """Build the scenario's workspace in ``root`` and return every output (name -> text)."""
    SCENARIOS[scenario](root, REPO)
    params = yaml.safe_load((root / "params.yaml").read_text())
    strategies, seeds = list(params["strategies"]), params["train"]["seeds"]
    curve, summaries = [], {}
    for benchmark in params["eval"]["benchmarks"]:  # what stages.plot writes to pass_at_1.csv (figures left out)
        runs = read_runs(root / "results", benchmark, strategies, seeds)
        curve += curve_rows(benchmark, runs, checkpoint_points(analysis_rows(runs)), strategies)
        summaries[benchmark] = {run.name: run.summary["checkpoints"] for run in runs}
    write_curve_csv(curve, root / "plots" / "pass_at_1.csv")
    report_stage.main(["--params", str(root / "params.yaml"), "--metrics", str(root / "metrics"),
                       "--results", str(root / "results"), "--plots", str(root / "plots"),
                       "--live", str(root / "dvclive"), "--data-report", str(root / "data/formatted/report.json"),
                       "--out", str(root / "report" / "README.md")])
    return {"README.md": (root / "report" / "README.md").read_text(),
            "study.json": (root / "report" / "study.json").read_text(),
            "metrics.json": (root / "metrics" / "study.json").read_text(),
            "pass_at_1.csv": (root / "plots" / "pass_at_1.csv").read_text(),
            "summaries.json": json.dumps(summaries, indent=2) + "\n"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_report_outputs_match_the_golden_files(scenario, tmp_path):
    got = render(scenario, tmp_path)
    for name in OUTPUTS:
        expected = (GOLDEN / scenario / name).read_text()
        assert got[name] == expected, f"{scenario}/{name} differs from tests/golden/{scenario}/{name}"


def test_the_scenarios_cover_the_report_s_branches():
    """The goldens are worth keeping only if they hold the paths a refactor could break."""
    two = (GOLDEN / "two_seeds" / "README.md").read_text()
    summary = (GOLDEN / "two_seeds" / "study.json").read_text()
    assert "## Second view: humaneval" in two and "(p 0.00195; Holm" in two  # McNemar: 10 of 10 problems one way
    assert "no spread over problems: Newcombe" in summary and '"p_holm"' in summary
    # mixed rules, each named with its strategy (a sorted "final / validation-loss" read as step 8's rule first)
    assert "at steps 8 and 12 (Deep's chosen on validation loss, Diverse's the final step)" in two
    assert "Exploratory" in two
    one = (GOLDEN / "one_seed" / "README.md").read_text()
    assert "cannot declare a winner" in one and "each chosen on validation loss" in one
    assert '"pass_at_10"' in (GOLDEN / "one_seed" / "summaries.json").read_text()
    three = (GOLDEN / "three_seeds" / "README.md").read_text()
    assert "3 and 3 training seeds, run-to-run variance measured" in three
    assert "3 seeds × 4 samples × 12 problems" in three  # the planner's MDE for this design
    # the sentence the pipeline's end-to-end test reads in a two-seed report
    assert "smallest difference this design could detect at 80% power" in two
    # no per-step MDE from the observed SE (it overstated power); the planner's, once, in the answer
    assert all(text.count("80% power") == text.count("**Answer") + text.count("**On ") for text in (one, two, three))


def test_a_missing_value_fails_the_render_rather_than_leaving_a_blank():
    import jinja2

    from thinktune.reporting.report import _template

    with pytest.raises(jinja2.UndefinedError):
        _template().render(title="Deep vs Diverse")


def test_the_report_stage_depends_on_its_template():
    """dvc.yaml's code deps are generated from imports, which never name a template: the report stage
    re-runs on a template edit only while it depends on a folder holding it."""
    template = "thinktune/reporting/templates/report.md.j2"
    assert (REPO / template).is_file()
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]["deps"]
    assert any(template == d or template.startswith(d.rstrip("/") + "/") for d in deps), deps


def main() -> None:
    import tempfile

    for scenario in SCENARIOS:
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in render(scenario, Path(tmp)).items():
                (GOLDEN / scenario).mkdir(parents=True, exist_ok=True)
                (GOLDEN / scenario / name).write_text(text)
        print(f"wrote {GOLDEN / scenario}")


if __name__ == "__main__":
    main()

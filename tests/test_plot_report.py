"""plot and report stages on evaluation outputs built from known per-problem outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages import plot as plot_stage
from stages import report as report_stage
from thinktune.atomic import write_json, write_jsonl
from thinktune.plotting import curve_rows, read_curve_csv
from thinktune.records import read_summary, summarize
from thinktune.reporting import answer_sentence, best, build_study, load_solved, points_of

N = 10
# Which of the 10 problems each model solves (greedy, one sample).
OUTCOMES = {
    "base": {"base": {0, 1}},
    "deep": {"checkpoint-4": {0, 1, 2, 3}, "checkpoint-8": {0, 1, 2, 3, 4, 5, 6}, "checkpoint-12": {0}},
    "diverse": {"checkpoint-4": {0, 1, 2}, "checkpoint-8": {0, 1, 2}, "checkpoint-12": {1, 2}},
}


def records(solved: set[int]) -> list[dict]:
    return [{"question_id": f"q{i}", "difficulty": "easy", "n_samples": 1, "n_correct": int(i in solved),
             "pass_at_1": float(i in solved),
             "samples": [{"raw_output": "", "code": "print(1)", "reasoning_chars": 100 + i, "new_tokens": 50,
                          "hit_token_limit": i == 9, "verdicts": [], "first_failure": None,
                          "passed": i in solved}]} for i in range(N)]


@pytest.fixture
def workspace(tmp_path, repo_root) -> Path:
    """results/ as eval_checkpoints writes them, plus params.yaml."""
    for target, checkpoints in OUTCOMES.items():
        table = {}
        for name, solved in checkpoints.items():
            recs = records(solved)
            write_jsonl(tmp_path / "results" / target / f"{name}.jsonl", recs)
            table[name] = summarize(recs, 0 if name == "base" else int(name.split("-")[1]))
        write_json(tmp_path / "results" / target / "summary.json",
                   {"target": target, "benchmark": "livecodebench", "n_problems": N, "n_samples": 1,
                    "decoding": {"temperature": 0.0, "max_new_tokens": 512},
                    "environment": {"precision": "bf16", "device": "cpu", "device_name": "AMD EPYC",
                                    "torch": "2.13.0"},
                    "checkpoints": table})
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text())
    return tmp_path


def load_evals(root: Path) -> dict:
    return {t: read_summary(root / "results", t) for t in OUTCOMES}


def test_curve_starts_each_strategy_at_the_base_model(workspace):
    rows = curve_rows(load_evals(workspace))
    deep = [(r["checkpoint"], r["step"], r["solved"]) for r in rows if r["strategy"] == "deep"]
    assert deep == [("base", 0, 2), ("checkpoint-4", 4, 4), ("checkpoint-8", 8, 7), ("checkpoint-12", 12, 1)]
    assert len(rows) == 8


def test_curve_refuses_targets_measured_differently(workspace):
    evals = load_evals(workspace)
    evals["deep"]["n_problems"] = 41
    with pytest.raises(ValueError, match="n_problems"):
        curve_rows(evals)
    del evals["base"]
    with pytest.raises(ValueError, match="eval_checkpoints"):
        curve_rows(evals)


def test_study_table_notes_and_paired_tests(workspace):
    evals = load_evals(workspace)
    solved = {t: {c: load_solved(workspace / "results" / t / f"{c}.jsonl") for c in OUTCOMES[t]} for t in OUTCOMES}
    study = build_study(evals, solved)
    notes = {(r["strategy"], r["checkpoint"]): r["note"] for r in study["rows"]}
    assert notes[("deep", "checkpoint-8")] == "best deep"
    assert notes[("deep", "checkpoint-12")] == "final, below base"
    assert notes[("diverse", "checkpoint-4")] == "best diverse"  # ties with step 8: the earlier wins
    deep8 = next(r for r in study["rows"] if r["checkpoint"] == "checkpoint-8" and r["strategy"] == "deep")
    assert deep8["vs_base"] == {"only_first": 5, "only_second": 0, "p_value": 0.0625}

    s = study["summary"]
    assert s["deep"] == {"best_step": 8, "best_pass1": 0.7, "final_step": 12, "final_pass1": 0.1,
                         "p_best_vs_base": 0.0625}
    assert s["deep_vs_diverse"] == {"deep_only": 4, "diverse_only": 0, "p_value": 0.125}
    assert s["environment"] == {"precision": "bf16", "device": "cpu"}
    sentence = answer_sentence(study["answer"])
    assert "Deep leads" in sentence and "7/10" in sentence and "not significant" in sentence


def test_best_prefers_the_earlier_step_on_a_tie(workspace):
    points = points_of(load_evals(workspace))
    assert best(points["diverse"]).step == 4


def test_plot_and_report_stages_write_their_outputs(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    write_json(workspace / "dvclive" / "train_deep" / "summary.json", {  # as stages.train writes it
        "chats": 24, "steps": 12, "chats_per_step": 2, "train_loss": 0.812, "valid_loss": 0.9, "tokens_per_s": 140.2,
        "environment": {"precision": "bf16", "device_name": "AMD EPYC"}})
    write_json(workspace / "data" / "formatted" / "report.json", {
        s: {"load": {"kept": 30, "skipped": {}, "malformed": m}, "dropped": {"overlength": 2}, "train_rows": 24,
            "valid_rows": 4, "trimmed_for_balance": t} for s, m, t in (("deep", 0, 0), ("diverse", 1, 3))})
    plot_stage.main([])
    for name in ("pass_at_1.png", "answer_shape.png"):
        assert (workspace / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_curve_csv(workspace / "plots" / "pass_at_1.csv") == curve_rows(load_evals(workspace))
    assert [r["step"] for r in read_curve_csv(workspace / "plots" / "curve" / "diverse.csv")] == [0, 4, 8, 12]

    report_stage.main([])
    report = (workspace / "report" / "README.md").read_text()
    assert "](../plots/pass_at_1.png)" in report
    assert "| deep | checkpoint-8 | 8 | 70.0% | 7/10 |" in report
    assert "| base | base | 0 | 20.0% | 2/10 |" in report
    assert "](../plots/answer_shape.png)" in report
    assert "| deep | checkpoint-8 | 8 | 0 | 10.0% | 0.0% |" in report  # reasoning tokens, cut, no code
    assert "answers generated in **bf16** on cpu (AMD EPYC); torch 2.13.0" in report
    assert "training deep: 12 steps of 2 chats, final loss 0.812, final validation loss 0.900, 140 tokens/s" in report
    assert ("training data: deep 24 training chats (4 held out; 0 malformed rows dropped, 2 over the length limit, "
            "0 trimmed for balance); diverse 24 training chats (4 held out; 1 malformed rows dropped, 2 over the "
            "length limit, 3 trimmed for balance)") in report
    summary = json.loads((workspace / "report" / "study.json").read_text())
    assert summary["base"] == {"pass1": 0.2, "solved": 2}
    assert set(summary) == {"n_problems", "base", "deep", "diverse", "deep_vs_diverse", "environment", "analysis"}
    # No validation loss logged here: each strategy's step is chosen on one half of the problems
    assert summary["analysis"]["headline"]["rules"] == ["split-half"]
    assert report.index("**Answer:") < report.index("McNemar") and "## Deep − Diverse, with intervals" in report
    # metrics: the headline only, a few short columns (issue 14: `dvc metrics show` was 1,499 wide)
    study = json.loads((workspace / "metrics" / "study.json").read_text())
    assert study == {"base": {"pass1": 0.2}, "deep": {"pass1": summary["deep"]["best_pass1"]},
                     "diverse": {"pass1": summary["diverse"]["best_pass1"]}}
    assert not list(workspace.rglob(".*tmp-*"))  # no temporary files left behind


def test_report_refuses_results_on_different_problems(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    recs = records({0})[:-1]
    write_jsonl(workspace / "results" / "diverse" / "checkpoint-12.jsonl", recs)
    with pytest.raises(ValueError, match="different problems"):
        report_stage.main([])
    assert not (workspace / "report" / "README.md").exists()


def test_curves_stay_distinguishable_where_equal():
    from thinktune.plotting import LINE_STYLES

    deep, diverse = LINE_STYLES["deep"], LINE_STYLES["diverse"]
    assert deep["linestyle"] != diverse["linestyle"] and deep["marker"] != diverse["marker"]
    assert deep["markersize"] > diverse["markersize"] and deep["linewidth"] > diverse["linewidth"]

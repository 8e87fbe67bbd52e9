"""thinktune.analysis.answer: the report's answer, checked against hand calculations on constructed records.

One training seed: the Deep - Diverse interval is then a paired t interval over problems
(t(0.975, 11) = 2.200985 for 12 problems, from a table, not from the code under test)."""

from __future__ import annotations

import math

import pytest

from thinktune.analysis.answer import analysis_rows, answer, answer_paragraph, read_validation_loss, validation_losses
from thinktune.evaluation.records import Run

T_975_11 = 2.200985
N = 4  # samples per problem
QIDS = [f"q{i:02d}" for i in range(12)]


def records_of(correct: list[int]) -> list[dict]:
    return [{"question_id": q, "n_samples": N, "n_correct": c, "pass_at_1": c / N} for q, c in zip(QIDS, correct)]


def evaluated(strategy: str, seed: int | None, by_step: dict[int, list[int]]) -> Run:
    """A run as thinktune.evaluation.records reads it: summary (steps) and per-problem records."""
    names = {("base" if step == 0 else f"checkpoint-{step}"): step for step in by_step}
    return Run(strategy, seed, {"checkpoints": {n: {"step": s} for n, s in names.items()}},
               {n: records_of(by_step[s]) for n, s in names.items()})


def rows_of(deep: dict[int, list[int]], diverse: dict[int, list[int]]) -> list[dict]:
    return analysis_rows([evaluated("base", None, {0: [1] * 12}), evaluated("deep", 0, deep),
                          evaluated("diverse", 0, diverse)])


STRATEGIES = ["deep", "diverse"]


DEEP = {3: [4, 3, 0, 2, 4, 1, 0, 3, 2, 2, 4, 1], 6: [4, 4, 4, 4, 4, 4, 3, 4, 4, 4, 4, 4]}
DIVERSE = {3: [3, 3, 1, 2, 2, 1, 1, 3, 2, 0, 4, 2], 6: [0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0]}


def paired_t(a: list[int], b: list[int]) -> tuple[float, float, float]:
    d = [(x - y) / N for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))
    return mean, mean - T_975_11 * se, mean + T_975_11 * se


def test_headline_is_the_paired_difference_at_the_steps_validation_loss_chose():
    # Validation loss picks Deep's step 3 and Diverse's step 3, although step 6 scores far higher for
    # Deep and far lower for Diverse: the choice does not look at the problems.
    result = answer(rows_of(DEEP, DIVERSE), {"deep": {3: 1.0, 6: 1.2}, "diverse": {3: 0.9, 6: 1.1}}, STRATEGIES)
    h = result["headline"]
    assert (h["first_step"], h["second_step"], h["rules"]) == (3, 3, ["validation-loss"])
    mean, low, high = paired_t(DEEP[3], DIVERSE[3])
    d = h["difference"]
    assert d["estimate"] == pytest.approx(mean, abs=1e-6)
    assert (d["ci95_low"], d["ci95_high"]) == (pytest.approx(low, abs=1e-5), pytest.approx(high, abs=1e-5))
    assert d["n_problems"] == 12 and d["seed_variance"] == "not estimated"
    for step in (3, 6):  # every step both strategies evaluated, same hand calculation
        mean, low, high = paired_t(DEEP[step], DIVERSE[step])
        assert result["difference_by_step"][str(step)]["estimate"] == pytest.approx(mean, abs=1e-6)
        assert result["difference_by_step"][str(step)]["ci95_high"] == pytest.approx(high, abs=1e-5)
    text = answer_paragraph(result)
    assert "cannot tell Deep from Diverse" in text and "seed-to-seed variance is not estimated" in text
    assert "(3 and 3, each chosen on validation loss)" in text
    assert "validation loss" in text and "80% power" in text


def test_without_validation_loss_the_step_is_chosen_on_one_half_and_scored_on_the_other():
    result = answer(rows_of(DEEP, DIVERSE), {"deep": None, "diverse": None}, STRATEGIES)
    h = result["headline"]
    assert h["rules"] == ["split-half"]
    assert h["first_step"] == 6 and h["second_step"] == 3  # the better step of each, on the selection half
    assert 0 < h["difference"]["n_problems"] < 12  # scored only on problems the choice did not see
    assert "Deep is better" in answer_paragraph(result)  # Deep's step 6 solves nearly everything


def test_peak_minus_final_is_paired_within_the_run():
    result = answer(rows_of(DEEP, DIVERSE), {"deep": None, "diverse": {3: 0.5, 6: 0.9}}, STRATEGIES)
    drop = result["collapse"]["diverse"]
    assert (drop["peak_step"], drop["final_step"]) == (3, 6)
    mean, low, _ = paired_t(DIVERSE[3], DIVERSE[6])
    assert drop["peak_minus_final"]["estimate"] == pytest.approx(mean, abs=1e-6)
    assert drop["peak_minus_final"]["ci95_low"] == pytest.approx(low, abs=1e-5)


def test_validation_losses_come_from_the_dvclive_log(tmp_path):
    metrics = tmp_path / "plots" / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "valid_loss.tsv").write_text("step\tvalid_loss\n3\t1.25\n6\t1.5\n")
    assert read_validation_loss(tmp_path) == {3: 1.25, 6: 1.5}
    assert read_validation_loss(tmp_path / "missing") is None
    other = tmp_path / "seed-2" / "plots" / "metrics"
    other.mkdir(parents=True)
    (other / "valid_loss.tsv").write_text("step\tvalid_loss\n3\t1.75\n6\t1.0\n9\t0.5\n")
    # Several seeds: the mean at the steps every run logged (step 9 only one did).
    assert validation_losses([tmp_path, tmp_path / "seed-2"]) == {3: 1.5, 6: 1.25}
    assert validation_losses([tmp_path, tmp_path / "missing"]) is None


def test_a_step_only_some_seeds_reached_is_left_out():
    """Seed 2 of Deep saved one more checkpoint (step 9): the mean over seeds and the within-run
    peak minus final are taken over the steps both seeds have."""
    runs = [evaluated("base", None, {0: [1] * 12}), evaluated("deep", 1, DEEP),
            evaluated("deep", 2, DEEP | {9: [4] * 12}), evaluated("diverse", 1, DIVERSE),
            evaluated("diverse", 2, DIVERSE)]
    result = answer(analysis_rows(runs), {"deep": None, "diverse": None}, STRATEGIES)
    assert sorted(result["checkpoints"]["deep"]) == ["3", "6"]
    assert result["collapse"]["deep"]["final_step"] == 6

"""thinktune.analysis.intervals against references computed here by other routes: closed forms of the t
distribution, hand-written loops for the clustered variance, a brute-force integral for the truth
of simulated studies, sha256 for the split."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.stats import t as student_t

from thinktune.analysis.intervals import (
    Checkpoint,
    best_step,
    build_study,
    collapse,
    difference,
    difference_interval,
    pass_at_1,
    pass_at_1_interval,
    within_run_difference,
)
from thinktune.analysis.stats import holm, newcombe_paired, wilson_interval
from thinktune.analysis.variance import Priors, minimum_detectable, seed_variance


def rows_of(strategy, step, table_n, table_c, qids=None, seeds=None):
    """Rows of one checkpoint from seed x problem tables of samples and correct answers."""
    qids = qids or [f"q{p}" for p in range(len(table_n[0]))]
    seeds = seeds or list(range(len(table_n)))
    return [{"strategy": strategy, "seed": seeds[s], "step": step, "question_id": q, "n_samples": table_n[s][p],
             "n_correct": table_c[s][p]} for s in range(len(table_n)) for p, q in enumerate(qids)]


def checkpoint(c, n, strategy="deep", step=1, qids=None):
    c = [list(r) for r in c]
    return build_study(rows_of(strategy, step, [[n] * len(c[0])] * len(c), c, qids))[strategy][step]


# ---- the t distribution comes from scipy; what the analysis relies on: table values, and df = inf
# (Satterthwaite's df where no variance term is left) giving the normal rather than nan

def test_scipy_t_as_the_analysis_uses_it():
    assert student_t.ppf(0.975, 11) == pytest.approx(2.200985, abs=1e-6)  # a printed t table
    assert student_t.ppf(0.975, 3) == pytest.approx(3.182446, abs=1e-6)
    assert student_t.ppf(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert 2 * student_t.sf(1.959964, math.inf) == pytest.approx(0.05, abs=1e-6)


def test_minimum_detectable_is_z_sum_times_se_for_many_df():
    assert minimum_detectable(0.01, math.inf) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    assert minimum_detectable(0.01, 3) > minimum_detectable(0.01, 30)  # few degrees of freedom cost power
    # few df: the noncentral t, checked by simulation of t = (delta + Z) / sqrt(chi2_df / df) at df 4
    rng = np.random.default_rng(2)
    delta = minimum_detectable(1.0, 4)
    t = (delta + rng.standard_normal(400_000)) / np.sqrt(rng.chisquare(4, 400_000) / 4)
    assert np.mean(np.abs(t) > student_t.ppf(0.975, 4)) == pytest.approx(0.80, abs=0.004)


# ---- the records

def test_build_study_checks_the_design():
    good = rows_of("deep", 1, [[2, 2]], [[1, 0]])
    assert build_study(good)["deep"][1].c.tolist() == [[1, 0]]
    with pytest.raises(ValueError, match="more than one record"):
        build_study(good + good[:1])
    with pytest.raises(ValueError, match="missing"):
        build_study(good + rows_of("deep", 1, [[2]], [[1]], qids=["q0"], seeds=[7]))
    with pytest.raises(ValueError, match="n_correct"):
        build_study(rows_of("deep", 1, [[2, 2]], [[3, 0]]))
    with pytest.raises(ValueError, match="lacks"):
        build_study([{"strategy": "deep"}])


# ---- estimates against hand calculations

def test_pass_at_1_is_wilson_at_the_clustered_effective_size():
    # rates 1, 0, 1/2 over three problems of an untrained model: mean 1/2, V = (1/4) / 3, df 2, so the
    # effective size is p (1 - p) / V = 3 (under the 6 answers) and the quantile t(0.975, 2) = 4.302653
    est = pass_at_1(checkpoint([[2, 0, 1]], n=2), trained=False)
    q, n = 4.302653, 3
    centre, half = (0.5 + q * q / (2 * n)) / (1 + q * q / n), q * math.sqrt(0.25 / n + q * q / (4 * n * n)) / (1 + q * q / n)
    assert (est.estimate, est.df) == (pytest.approx(0.5), pytest.approx(2))
    assert (est.low, est.high) == (pytest.approx(centre - half, abs=1e-5), pytest.approx(centre + half, abs=1e-5))
    assert 0 < est.low and est.high < 1 and est.seed_variance == "none" and est.n_seeds == (1,)
    trained = pass_at_1(checkpoint([[2, 0, 1]], n=2))  # one run of a trained model: the prior widens it
    assert trained.seed_variance == "prior" and trained.prior_se > 0 and trained.se > est.se


def test_one_seed_difference_is_the_paired_t_test_over_problems():
    # A - B per problem: 1, 1, 0 (one sample each, untrained arms): mean 2/3, sd 1/sqrt(3), df 2
    a, b = checkpoint([[1, 1, 0]], n=1), checkpoint([[0, 0, 0]], n=1, strategy="diverse")
    est = difference(a, b, trained=(False, False))
    t = (2 / 3) / ((1 / math.sqrt(3)) / math.sqrt(3))
    assert est.estimate == pytest.approx(2 / 3)
    assert est.p_value == pytest.approx(2 * (0.5 - t / (2 * math.sqrt(t * t + 2))))
    flipped = difference(b, a, trained=(False, False))
    assert flipped.estimate == pytest.approx(-2 / 3) and flipped.p_value == pytest.approx(est.p_value)
    assert difference(a, b).se > est.se  # trained runs: the prior's run variance is added


def hand_variance(tables):
    """Clustered variance and Satterthwaite df by plain loops: problem term over the signed per-problem
    means, plus each arm's seed term MS_seed / (P S) (a sum of positive mean squares: see intervals.py)."""
    n_problems = len(tables[0][1][0])
    d = [sum(sign * sum(t[s][p] for s in range(len(t))) / len(t) for sign, t in tables) for p in range(n_problems)]
    mean_d = sum(d) / n_problems
    v_problem = sum((x - mean_d) ** 2 for x in d) / (n_problems - 1) / n_problems
    terms = [(v_problem, n_problems - 1)]
    for _, t in tables:
        S = len(t)
        if S < 2:
            continue
        grand = sum(map(sum, t)) / (S * n_problems)
        row = [sum(r) / n_problems for r in t]
        ms_seed = n_problems * sum((r - grand) ** 2 for r in row) / (S - 1)
        terms.append((ms_seed / (n_problems * S), S - 1))
    v = sum(x for x, _ in terms)
    return v, v * v / sum(x * x / k for x, k in terms)


def test_difference_with_seeds_matches_the_hand_formula_and_its_sign():
    # Deep's seed 1 solves much more than its seed 0 (a run effect); Diverse is steadier.
    deep_c = [[1, 2, 0, 3, 1], [4, 4, 2, 4, 3]]
    diverse_c = [[1, 1, 0, 2, 2], [2, 1, 0, 1, 1], [1, 2, 1, 2, 1]]
    a, b = checkpoint(deep_c, 4), checkpoint(diverse_c, 4, strategy="diverse")
    est = difference(a, b)
    rates = [(1.0, [[c / 4 for c in r] for r in deep_c]), (-1.0, [[c / 4 for c in r] for r in diverse_c])]
    v, df = hand_variance(rates)
    assert est.estimate == pytest.approx(np.mean(deep_c) / 4 - np.mean(diverse_c) / 4) and est.estimate > 0
    assert est.se == pytest.approx(math.sqrt(v)) and est.df == pytest.approx(df)
    assert est.p_value == pytest.approx(2 * student_t.sf(est.estimate / math.sqrt(v), df))
    assert est.seed_variance == "estimated" and est.n_seeds == (2, 3)
    assert est.mde == pytest.approx(minimum_detectable(math.sqrt(v), df))  # the noncentral t (tested above)
    # the seed term is real here: without it the variance would be smaller
    assert v > hand_variance([(s, [[sum(c) / len(c) for c in zip(*t)]]) for s, t in rates])[0]


def test_peak_minus_final_is_paired_within_each_run():
    # Each run has its own level (seed 1 strong), kept from step 400 to 700: within a run the drop is
    # one problem in four everywhere, so pairing by seed leaves only the problem spread.
    peak = [[4, 3, 4, 2], [1, 0, 1, 0]]
    final = [[3, 2, 4, 1], [0, 0, 0, 0]]
    steps = {400: checkpoint(peak, 4, step=400), 700: checkpoint(final, 4, step=700)}
    result = collapse(steps, peak_step=400)
    diff = [[(p - f) / 4 for p, f in zip(pr, fr)] for pr, fr in zip(peak, final)]
    v, _ = hand_variance([(1.0, diff)])
    assert (result.peak_step, result.final_step, result.rule) == (400, 700, "stated")
    assert result.peak_minus_final.estimate == pytest.approx(np.mean(diff))
    assert result.peak_minus_final.se == pytest.approx(math.sqrt(v))
    independent = difference(steps[400], steps[700])  # as if the steps came from other runs
    assert independent.se > 1.5 * result.peak_minus_final.se
    with pytest.raises(ValueError, match="same seeds"):
        within_run_difference(steps[400], checkpoint([[1, 1, 1, 1]], 4, step=700))


def test_bootstrap_draws_problems_once_for_both_strategies():
    # Problems differ wildly, but Deep beats Diverse by exactly 1 of 4 samples on every problem and seed:
    # a paired draw sees no spread at all; seeds are drawn per strategy (here they agree).
    diverse_c = [[0, 1, 3, 0, 2, 1, 0, 3]] * 2
    deep_c = [[c + 1 for c in r] for r in diverse_c]
    est = difference(checkpoint(deep_c, 4), checkpoint(diverse_c, 4, strategy="diverse"))
    assert est.bootstrap_low == pytest.approx(0.25) and est.bootstrap_high == pytest.approx(0.25)
    # one seed solves everything, the other nothing: resampling seeds must widen the interval
    runs = pass_at_1(checkpoint([[2] * 30, [0] * 30], 2), n_boot=400)
    assert runs.bootstrap_low < 0.3 and runs.bootstrap_high > 0.7


# ---- degenerate designs: never a zero width, never a p near 0 from no spread

def test_degenerate_designs_give_defined_answers():
    with pytest.raises(ValueError, match="one problem"):
        pass_at_1(checkpoint([[1], [0]], 1))
    none = pass_at_1(checkpoint([[0] * 10, [0] * 10], 3))  # 0 of 10 everywhere: Wilson over problems
    z2 = 1.959964 ** 2
    assert none.estimate == 0.0 and none.low == pytest.approx(0.0, abs=1e-12) and none.high == pytest.approx(z2 / (10 + z2), rel=1e-5)
    every = pass_at_1(checkpoint([[3] * 10], 3))
    assert every.high == pytest.approx(1.0) and every.low == pytest.approx(10 / (10 + z2), rel=1e-5)
    # 5 of 10 on every problem and run: no spread seen, so the binomial floor over all 410 answers
    half = pass_at_1(checkpoint([[5] * 41], 10), trained=False)
    low, high = wilson_interval(205, 410)
    assert (half.low, half.high) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))
    same = difference(checkpoint([[1] * 6], 1), checkpoint([[1] * 6], 1, strategy="diverse"), trained=(False, False))
    assert (same.estimate, same.p_value) == (0.0, 1.0) and same.low < -0.2 and same.high > 0.2
    assert "Newcombe" in same.method
    apart = difference(checkpoint([[1] * 6], 1), checkpoint([[0] * 6], 1, strategy="diverse"))
    assert apart.estimate == 1.0 and apart.p_value == pytest.approx(2 / 2 ** 6)  # McNemar, six problems one way
    assert apart.low < 0.7 and apart.high == pytest.approx(1.0, abs=1e-9)


def test_no_spread_over_problems_keeps_the_spread_between_runs():
    # Deep's seed 0 solves all 10 problems and its seed 1 none; Diverse solves none: every problem's
    # seed-averaged difference is 1/2, so the problems show no spread, but the two Deep runs disagree
    # completely. The runs' spread must stay in the interval: by hand, Deep's seed term is
    # MS_seed / (P S) = (10 x 0.5 / 1) / 20 = 0.25 on 1 df (capped at 2), so the interval reaches past
    # 0 and the p-value is 2 t.sf(0.5 / 0.5, df) >= 0.42, as for any table of runs this different.
    a = checkpoint([[1] * 10, [0] * 10], 1)
    b = checkpoint([[0] * 10, [0] * 10], 1, strategy="diverse")
    est = difference(a, b)
    assert "Newcombe" in est.method and est.estimate == pytest.approx(0.5)
    assert est.low < 0 and est.p_value >= 2 * student_t.sf(1.0, 2) - 1e-9, est
    # one problem's worth of spread takes the ordinary clustered route: the same verdict either side
    nearby = difference(checkpoint([[1] * 10, [0] * 9 + [1]], 1), b)
    assert "clustered" in nearby.method and nearby.low < 0 and nearby.p_value > 0.3


def test_peak_minus_final_without_spread_is_a_paired_interval_not_a_single_proportion():
    # Both steps solve the same 3 of 12 problems in both runs: the difference is 0 everywhere. Newcombe's
    # paired interval of 3/12 vs 3/12 with phi = 1 (corrected: 0.75 with N/2) is about -0.18 to +0.18,
    # not Wilson's [0, 0.24] for a proportion of 0 of 12.
    solved = [[1] * 3 + [0] * 9] * 2
    steps = {400: checkpoint(solved, 1, step=400), 700: checkpoint(solved, 1, step=700)}
    drop = collapse(steps, peak_step=400).peak_minus_final
    low, high = newcombe_paired(np.array([1.0] * 3 + [0.0] * 9), np.array([1.0] * 3 + [0.0] * 9))
    assert (drop.low, drop.high) == (pytest.approx(float(low)), pytest.approx(float(high)))
    assert drop.low < -0.05 and drop.high > 0.05 and drop.p_value == 1.0


# ---- the step is chosen without looking at the benchmark

def test_best_step_is_validation_loss_else_the_final_step():
    qids = [f"p{i}" for i in range(24)]
    # step 2 solves the most problems: neither rule may pick it for that
    tables = {1: {}, 2: {q: 1 for q in qids}, 3: {q: 1 for q in qids[:5]}}
    rows = [r for step, solved in tables.items()
            for r in rows_of("deep", step, [[1] * 24], [[solved.get(q, 0) for q in qids]], qids)]
    steps = build_study(rows)["deep"]
    chosen = best_step(steps)
    assert (chosen.step, chosen.rule, chosen.pass_at_1.n_problems) == (3, "final", 24)
    by_loss = best_step(steps, validation_loss={1: 0.9, 2: 0.95, 3: 0.9})
    assert (by_loss.step, by_loss.rule) == (1, "validation-loss")
    assert collapse(steps) is None  # no peak chosen beforehand: no collapse test
    assert collapse(steps, validation_loss={1: 0.9, 2: 0.95, 3: 0.9}).peak_step == 1


def test_a_pass_at_1_interval_stays_within_0_and_1_without_clipping():
    # 1 of 12 problems solved by one untrained run: a t interval would reach below 0; Wilson's does not
    rows = [{"strategy": "deep", "seed": 0, "step": 3, "question_id": f"q{i}", "n_samples": 1,
             "n_correct": int(i == 0)} for i in range(12)]
    est = pass_at_1(build_study(rows)["deep"][3], trained=False)
    assert 0 < est.low < 1 / 12 < est.high < 1
    # 3 of 12: Wilson at effective size 11 with t(0.975, 11), about [8, 55], not a clipped [0.0, 53.7]
    rows = [dict(r, n_correct=int(i < 3)) for i, r in enumerate(rows)]
    est = pass_at_1(build_study(rows)["deep"][3], trained=False)
    assert 0.05 < est.low < 0.1 and 0.5 < est.high < 0.6


# ---- coverage: 95% intervals of simulated studies with a known truth, by the report's own code

# The world the studies are drawn from (logit scale): difficulty spread 2 (LiveCodeBench problems run from
# nearly always to nearly never solved), Deep 0.4 logits above Diverse, strategy x problem 0.5, a whole-run
# effect 0.4 and a per-checkpoint effect 0.3 (together 0.5: a run's Pass@1 moves by about 6 points SD),
# seed x problem 0.5. The analysis is given the same model as its priors (with one seed it needs them).
PROBLEM_SD, STRATEGY_PROBLEM_SD, RUN_SD, CHECKPOINT_SD, SEED_PROBLEM_SD = 2.0, 0.5, 0.4, 0.3, 0.5
MU = (-0.6, -1.0)  # Deep, Diverse
WORLD = Priors(problem_sd=PROBLEM_SD, strategy_problem_sd=STRATEGY_PROBLEM_SD, seed_problem_sd=SEED_PROBLEM_SD,
               seed_sd=math.hypot(RUN_SD, CHECKPOINT_SD))
# problems x samples x seeds: the CPU default, the original study, the paper preset on 41 and 120 problems
DESIGNS = [(12, 1, 1), (41, 1, 1), (41, 10, 3), (120, 10, 3)]
STUDIES = 8000  # binomial SE of a coverage: 0.0024 at 0.95 and 0.0034 at 0.90, so a true 0.95 passes a 0.93
#                 bar by 8 SE and a true 0.90 fails it by 9 SE (a second each on 2 cores, 120 x 10 x 3)


_Z = np.linspace(-12, 12, 48001)


def true_rate(mu: float, sd: float) -> float:
    """E[expit(mu + sd Z)] by the trapezoid rule on a fine grid: a population Pass@1."""
    return float(np.trapezoid(np.exp(-_Z ** 2 / 2) / math.sqrt(2 * math.pi) / (1 + np.exp(-(mu + sd * _Z))), _Z))


def recorded_seed() -> int:
    """A fresh simulation seed per run (no lucky seed frozen in), printed for pytest to show on a failure;
    THINKTUNE_SIM_SEED replays one."""
    seed = int(os.environ.get("THINKTUNE_SIM_SEED") or np.random.SeedSequence().entropy % 2 ** 32)
    print(f"simulation seed {seed} (replay: THINKTUNE_SIM_SEED={seed})")
    return seed


def truth(mu: float) -> float:
    """A strategy's population Pass@1 at one checkpoint: over problems, runs and checkpoints."""
    return true_rate(mu, math.sqrt(PROBLEM_SD ** 2 + STRATEGY_PROBLEM_SD ** 2 + RUN_SD ** 2 + CHECKPOINT_SD ** 2
                                   + SEED_PROBLEM_SD ** 2))


def simulate(rng, studies: int, problems: int, samples: int, seeds: int, steps: int = 1, mu=MU) -> np.ndarray:
    """Correct answers, shape (studies, strategy, seed, step, problem): a run's effect is shared by its
    checkpoints, each checkpoint adds its own (its luck on every problem at once)."""
    logit = (np.asarray(mu).reshape(1, 2, 1, 1, 1)
             + PROBLEM_SD * rng.standard_normal((studies, 1, 1, 1, problems))
             + STRATEGY_PROBLEM_SD * rng.standard_normal((studies, 2, 1, 1, problems))
             + RUN_SD * rng.standard_normal((studies, 2, seeds, 1, 1))
             + CHECKPOINT_SD * rng.standard_normal((studies, 2, seeds, steps, 1))
             + SEED_PROBLEM_SD * rng.standard_normal((studies, 2, seeds, 1, problems)))
    return rng.binomial(samples, 1 / (1 + np.exp(-logit)))


def coverage(seed: int, problems: int, samples: int, seeds: int, seed_term: bool = True) -> dict[str, float]:
    """Share of studies whose Deep Pass@1 and Deep - Diverse intervals hold the truth; ``seed_term`` False
    drops the run-to-run variance (the one-seed prior, or the estimated seed terms) to show it matters."""
    rate = simulate(np.random.default_rng(seed), STUDIES, problems, samples, seeds)[:, :, :, 0] / samples
    a, b = rate[:, 0], rate[:, 1]
    one_seed = seeds == 1 and seed_term
    prior_a = seed_variance(WORLD, a.mean(axis=(1, 2))) if one_seed else 0.0
    prior_b = seed_variance(WORLD, b.mean(axis=(1, 2))) if one_seed else 0.0
    if seed_term:
        arms = [(1.0, a), (-1.0, b)]
    else:  # every seed's mean taken as if it were one run: no seed term is estimated
        arms = [(1.0, a.mean(axis=1, keepdims=True)), (-1.0, b.mean(axis=1, keepdims=True))]
    _, _, _, low, high, _, _ = difference_interval(arms, a.mean(axis=1), b.mean(axis=1), prior_a + prior_b)
    pass_rate = a if seed_term else a.mean(axis=1, keepdims=True)
    _, _, _, p_low, p_high = pass_at_1_interval(pass_rate, seeds * problems * samples, prior_a)
    d, p = truth(MU[0]) - truth(MU[1]), truth(MU[0])
    return {"diff": float(np.mean((low <= d) & (d <= high))), "pass": float(np.mean((p_low <= p) & (p <= p_high)))}


@pytest.mark.parametrize("design", DESIGNS)
def test_intervals_cover_the_truth_with_a_run_and_a_checkpoint_effect(design):
    seed = recorded_seed()
    got = coverage(seed, *design)
    print(f"{design}: Deep - Diverse covers {got['diff']:.3f}, Deep's Pass@1 {got['pass']:.3f}")
    # Measured figures and the command: docs/statistics.md, "Coverage". Dropping the seed term (the prior
    # with one seed, the estimated term with three) fails every design: coverage(seed, *design, False).
    assert got["diff"] >= 0.93 and got["pass"] >= 0.93, (seed, got)
    assert got["diff"] <= 0.985, (seed, got)  # the difference's coverage is not bought by absurd width


# ---- the chosen step and peak minus final when a whole checkpoint is lucky

STEPS = 5
LUCK_STUDIES = 16000  # in chunks of 2000


def test_the_reported_step_is_unbiased_under_checkpoint_luck():
    """Five equally good checkpoints of 41 problems x 10 samples x 3 seeds, each with its own luck on
    every problem at once (CHECKPOINT_SD), go through the report's own ``best_step``: without a
    validation loss (the final step) and with one that does not see the benchmark (random losses). The
    chosen step's reported Pass@1 must be unbiased within 0.5 points. The bias is measured against the
    same study's mean over its five steps (equal in expectation to the truth, and sharing the study's
    problems and runs, so the comparison's standard error is about 0.06 points at 2,000 studies rather
    than 0.14 against the truth). A rule that peeks (the step of best Pass@1) is +3.1 points here."""
    seed = recorded_seed()
    rng = np.random.default_rng(seed)
    studies, (problems, samples, seeds) = 2000, (41, 10, 3)
    counts = simulate(rng, studies, problems, samples, seeds, STEPS, mu=(MU[0], MU[0]))[:, 0]  # (study, seed, step, problem)
    qids, runs, n = tuple(f"q{p}" for p in range(problems)), tuple(range(seeds)), np.full((seeds, problems), samples)
    final, by_loss = [], []
    for study in counts:
        steps = {step: Checkpoint("deep", step, runs, qids, n, study[:, step]) for step in range(STEPS)}
        every_step = study.mean() / samples
        final.append(best_step(steps, None, n_boot=1).pass_at_1.estimate - every_step)
        loss = dict(zip(range(STEPS), rng.random(STEPS)))
        by_loss.append(best_step(steps, loss, n_boot=1).pass_at_1.estimate - every_step)
    bias = (float(np.mean(final)), float(np.mean(by_loss)))
    print(f"bias of the reported step's Pass@1 (points): final {100 * bias[0]:+.2f}, validation loss {100 * bias[1]:+.2f}")
    assert max(abs(b) for b in bias) < 0.005, (seed, bias)


@pytest.mark.parametrize("design", [(41, 10, 3), (120, 10, 3)])
def test_collapse_holds_its_level_under_checkpoint_luck(design):
    """Five equally good checkpoints, each with its own luck on every problem at once (CHECKPOINT_SD);
    the peak is a step chosen without seeing the benchmark (here: a random one, as a validation loss
    independent of benchmark luck picks). Peak minus final, with no true drop, must be declared in 5%
    of studies. (A peak chosen on half of the problems inherits its checkpoint's luck on the other
    half: measured a false-positive rate of 0.066 and 0.092 at these designs.)"""
    problems, samples, seeds = design
    seed = recorded_seed()
    rng = np.random.default_rng(seed)
    p_values = []
    for _ in range(LUCK_STUDIES // 2000):  # chunks of 2000 studies keep memory near 60 MB
        rate = simulate(rng, 2000, problems, samples, seeds, STEPS, mu=(MU[0], MU[0]))[:, 0] / samples
        chosen = rng.integers(0, STEPS - 1, 2000)           # a peak before the final step
        peak, final = rate[np.arange(2000), :, chosen], rate[:, :, STEPS - 1]
        p_values.append(difference_interval([(1.0, peak - final)], peak.mean(axis=1), final.mean(axis=1))[5])
    false_positive = float(np.mean(np.concatenate(p_values) < 0.05))
    print(f"peak minus final declared with no true drop: {false_positive:.4f}")
    # 16000 tests: standard error 0.0017 at 0.05 (measured figures: docs/statistics.md, "Coverage")
    assert 0.03 <= false_positive <= 0.07, (seed, false_positive)


# ---- many steps: exploratory p-values carry Holm's adjustment

def test_holm_keeps_the_chance_of_some_significant_step_at_5_percent():
    """41 problems x 1 sample x 1 seed, ten equally good steps per strategy, no true difference: the
    report gives a p-value at every step. Unadjusted, some step falls below 0.05 in far more than 5%
    of studies (measured 0.36 with this world's run and checkpoint effects; an independent review found
    0.56 in its own); Holm's adjusted p-values bring it back to the single test's level."""
    seed = recorded_seed()
    rng = np.random.default_rng(seed)
    studies, steps = 4000, 10  # SE of a 5% rate: 0.0034
    rate = simulate(rng, studies, 41, 1, 1, steps, mu=(MU[0], MU[0])).astype(float)
    a, b = np.moveaxis(rate[:, 0], 2, 0), np.moveaxis(rate[:, 1], 2, 0)  # (step, study, seed, problem)
    prior = seed_variance(WORLD, a.mean(axis=(2, 3))) + seed_variance(WORLD, b.mean(axis=(2, 3)))
    p = difference_interval([(1.0, a), (-1.0, b)], a.mean(axis=2), b.mean(axis=2), prior)[5].T  # (study, step)
    single = float(np.mean(p < 0.05))
    unadjusted = float(np.mean((p < 0.05).any(axis=1)))
    adjusted = float(np.mean([min(holm(list(row))) < 0.05 for row in p]))
    print(f"one step {single:.4f}, some step {unadjusted:.4f}, some step after Holm {adjusted:.4f}")
    # Holm keeps the family's rate at the single tests' own level, which here is a little above 5% (the
    # one-seed difference covers 0.938-0.944 in the coverage test above): measured 0.074 with seed 4
    assert unadjusted > 0.15 and adjusted <= 0.09, (seed, single, unadjusted, adjusted)

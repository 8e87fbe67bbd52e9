"""thinktune.analysis.intervals against references computed here by other routes: closed forms of the t
distribution, hand-written loops for the clustered variance, a brute-force integral for the truth
of simulated studies, sha256 for the split."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from thinktune.analysis.intervals import (
    best_step,
    build_study,
    collapse,
    combine,
    difference,
    minimum_detectable,
    pass_at_1,
    split_half,
    within_run_difference,
)


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

def test_one_seed_pass_at_1_is_a_t_interval_over_problems():
    # rates 1, 0, 1/2 over three problems: mean 1/2, sd 1/2, df 2 -> the closed-form t quantile
    est = pass_at_1(checkpoint([[2, 0, 1]], n=2))
    se = 0.5 / math.sqrt(3)
    half = math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2)) * se
    assert (est.estimate, est.se, est.df) == (pytest.approx(0.5), pytest.approx(se), pytest.approx(2))
    assert (est.low, est.high) == (0.0, 1.0)  # 0.5 -+ 1.24: the t interval, cut to [0, 1]
    raw = combine([(1.0, checkpoint([[2, 0, 1]], n=2).rate)])  # the t interval itself, before the cut to [0, 1]
    assert (raw.low, raw.high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert est.seed_variance == "not estimated" and est.n_seeds == (1,)


def test_one_seed_difference_is_the_paired_t_test_over_problems():
    # A - B per problem: 1, 1, 0 (one sample each, one seed): mean 2/3, sd 1/sqrt(3), df 2
    a, b = checkpoint([[1, 1, 0]], n=1), checkpoint([[0, 0, 0]], n=1, strategy="diverse")
    est = difference(a, b)
    t = (2 / 3) / ((1 / math.sqrt(3)) / math.sqrt(3))
    assert est.estimate == pytest.approx(2 / 3)
    assert est.p_value == pytest.approx(2 * (0.5 - t / (2 * math.sqrt(t * t + 2))))
    flipped = difference(b, a)
    assert flipped.estimate == pytest.approx(-2 / 3) and flipped.p_value == pytest.approx(est.p_value)


def hand_variance(tables):
    """Clustered variance and Satterthwaite df by plain loops: problem term over the signed per-problem
    means, plus each arm's seed term (MS_seed - MS_resid)+ / (P S)."""
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
        col = [sum(t[s][p] for s in range(S)) / S for p in range(n_problems)]
        ms_seed = n_problems * sum((r - grand) ** 2 for r in row) / (S - 1)
        ms_resid = sum((t[s][p] - row[s] - col[p] + grand) ** 2 for s in range(S)
                       for p in range(n_problems)) / ((S - 1) * (n_problems - 1))
        terms.append((max(0.0, ms_seed - ms_resid) / (n_problems * S), S - 1))
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
    assert est.mde == pytest.approx((student_t.ppf(0.975, df) + student_t.ppf(0.8, df)) * math.sqrt(v))
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


# ---- degenerate designs

def test_degenerate_designs_give_defined_answers():
    with pytest.raises(ValueError, match="one problem"):
        pass_at_1(checkpoint([[1], [0]], 1))
    none = pass_at_1(checkpoint([[0] * 10, [0] * 10], 3))  # 0 of 10 everywhere: Wilson, never [0, 0]
    z2 = 1.959964 ** 2
    assert (none.estimate, none.low) == (0.0, 0.0) and none.high == pytest.approx(z2 / (10 + z2), rel=1e-5)
    assert "Wilson" in none.method
    every = pass_at_1(checkpoint([[3] * 10], 3))
    assert every.high == pytest.approx(1.0) and every.low == pytest.approx(10 / (10 + z2), rel=1e-5)
    same = difference(checkpoint([[1] * 6], 1), checkpoint([[1] * 6], 1, strategy="diverse"))
    assert (same.estimate, same.p_value) == (0.0, 1.0)
    apart = difference(checkpoint([[1] * 6], 1), checkpoint([[0] * 6], 1, strategy="diverse"))
    assert apart.estimate == 1.0 and apart.p_value == pytest.approx(2 / 2 ** 6)  # McNemar, six problems one way


# ---- best step without peeking

def test_split_half_is_a_fixed_hash_of_the_question_id():
    qids = [f"abc{i}" for i in range(40)]
    select, score = split_half(qids)
    assert set(select) | set(score) == set(qids) and not set(select) & set(score)
    assert all(hashlib.sha256(f"thinktune-split:{q}".encode()).digest()[0] % 2 == 0 for q in select)
    assert split_half(qids[:10])[0] == tuple(q for q in select if q in qids[:10])  # a problem keeps its half


def test_best_step_is_chosen_on_one_half_and_scored_on_the_other():
    qids = [f"p{i}" for i in range(24)]
    select, score = split_half(qids)
    # step 2 is best on the selection half; step 3 is best on all problems and on the scoring half, which
    # must not decide: it solves one selection problem fewer than step 2 and every scoring problem
    tables = {1: {}, 2: {q: 1 for q in select}, 3: {q: 1 for q in select[1:] + score}}
    rows = [r for step, solved in tables.items()
            for r in rows_of("deep", step, [[1] * 24], [[solved.get(q, 0) for q in qids]], qids)]
    steps = build_study(rows)["deep"]
    chosen = best_step(steps)
    assert (chosen.step, chosen.rule, chosen.scored_on) == (2, "split-half", tuple(sorted(score)))
    assert chosen.pass_at_1.estimate == 0.0  # step 2 solves nothing of the half it is scored on
    by_loss = best_step(steps, validation_loss={1: 0.9, 2: 0.8, 3: 0.8})
    assert (by_loss.step, by_loss.rule, by_loss.scored_on) == (2, "validation-loss", tuple(sorted(qids)))
    assert collapse(steps).rule == "split-half" and collapse(steps).peak_step == 2


# ---- coverage: 95% intervals of simulated studies with a known truth

_Z = np.linspace(-12, 12, 48001)


def true_rate(mu: float, sd: float) -> float:
    """E[expit(mu + sd Z)] by the trapezoid rule on a fine grid: the population Pass@1."""
    return float(np.trapezoid(np.exp(-_Z ** 2 / 2) / math.sqrt(2 * math.pi) / (1 + np.exp(-(mu + sd * _Z))), _Z))


def simulated_coverage(studies: int, seeds: int, samples: int, problems: int, seed_sd: float) -> dict[str, float]:
    """Share of studies whose intervals hold the truth: Deep's Pass@1 and Deep - Diverse (logit model:
    problem sd 1, strategy x problem 0.5, seed x problem 0.5, whole-run shift ``seed_sd``)."""
    rng = np.random.default_rng(7)
    mu = np.array([-0.5, -1.0]).reshape(1, 2, 1, 1)
    sd = math.sqrt(1 + 0.25 + 0.25 + seed_sd ** 2)
    truth_a, truth_d = true_rate(-0.5, sd), true_rate(-0.5, sd) - true_rate(-1.0, sd)
    logit = (mu + rng.normal(0, 1, (studies, 1, 1, problems)) + rng.normal(0, 0.5, (studies, 2, 1, problems))
             + rng.normal(0, seed_sd, (studies, 2, seeds, 1)) + rng.normal(0, 0.5, (studies, 2, seeds, problems)))
    rate = rng.binomial(samples, 1 / (1 + np.exp(-logit))) / samples
    hits = dict.fromkeys(("pass", "diff", "boot_pass", "boot_diff"), 0)
    for m in range(studies):
        one = combine([(1.0, rate[m, 0])], n_boot=500, seed=m)
        two = combine([(1.0, rate[m, 0]), (-1.0, rate[m, 1])], n_boot=500, seed=m)
        hits["pass"] += one.low <= truth_a <= one.high
        hits["diff"] += two.low <= truth_d <= two.high
        hits["boot_pass"] += one.bootstrap_low <= truth_a <= one.bootstrap_high
        hits["boot_diff"] += two.bootstrap_low <= truth_d <= two.bootstrap_high
    return {k: v / studies for k, v in hits.items()}


def test_intervals_cover_the_truth_of_simulated_studies():
    # 4 seeds x 2 samples x 20 problems with a strong run effect: the seed term matters
    got = simulated_coverage(studies=240, seeds=4, samples=2, problems=20, seed_sd=0.5)
    # Monte Carlo standard error of a 95% interval's coverage over 240 studies: 1.4 points, so
    # [0.90, 0.99] allows 3.5 of them below and 2.8 above (an exact interval fails by chance in
    # under 1% of simulation seeds). Measured with this seed: 0.917 and 0.946 (bootstrap 0.963,
    # 0.954), the same natively and with AVX-512 hidden (numpy's arithmetic, 2-core AMD EPYC).
    assert 0.90 <= got["pass"] <= 0.99 and 0.90 <= got["diff"] <= 0.99, got
    assert got["boot_pass"] >= 0.90 and got["boot_diff"] >= 0.90, got  # conservative by design


def test_one_seed_intervals_cover_when_runs_do_not_differ():
    got = simulated_coverage(studies=200, seeds=1, samples=3, problems=25, seed_sd=0.0)
    # 200 studies: standard error 1.5 points, [0.90, 0.99] is 3.2 below and 2.6 above. Measured
    # 0.975 and 0.965 with this seed, natively and with AVX-512 hidden alike.
    assert 0.90 <= got["pass"] <= 0.99 and 0.90 <= got["diff"] <= 0.99, got


def test_a_pass_at_1_interval_stays_within_0_and_1():
    # 1 of 12 problems solved by one seed: mean - t se is below 0, the reported bound is 0
    rows = [{"strategy": "deep", "seed": 0, "step": 3, "question_id": f"q{i}", "n_samples": 1,
             "n_correct": int(i == 0)} for i in range(12)]
    cp = build_study(rows)["deep"][3]
    raw = combine([(1.0, cp.rate)])
    assert raw.low < 0 and pass_at_1(cp).low == 0.0 and pass_at_1(cp).high == raw.high

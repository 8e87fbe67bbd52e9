"""Whole studies drawn from the priors' logit model and analysed by the report's own code, and the
minimum detectable difference (MDE) the planner and the report print: the true difference the
analysis declares (p < 0.05) in 80% of such studies.

Why a simulation and not a formula: the noncentral t on the expected SE and df (:func:`noncentral_mde`)
is optimistic for this analysis. Its SE is estimated and grows with the Pass@1 it estimates (a lucky
run raises both the difference and its SE), a one-seed prior is read at the observed rates, and with
few seeds the df is itself estimated from two seed mean squares and capped. At the noncentral t's MDE
the default priors' studies were declared in 0.77, 0.79, 0.75, 0.72 and 0.70 of 2,000 at 1 x 1 x 12,
1 x 1 x 41, 3 x 10 x 41, 3 x 10 x 120 and 3 x 16 x 300 (seeds x samples x problems). So the MDE is
searched on simulated power (:func:`simulated_mde`), starting from the noncentral t's figure, with the
same studies at every try (common random numbers, so power rises with the difference).
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

from thinktune.analysis.intervals import difference_interval
from thinktune.analysis.variance import (
    ALPHA,
    POWER,
    Components,
    Priors,
    _expit,
    _mean_over,
    logit_mean,
    minimum_detectable,
    prior_components,
    satterthwaite,
    seed_variance,
)

Design = tuple[int, int, int]  # seeds per strategy, samples per problem, problems
DEFAULT_STUDIES = 4000  # the MDE's simulated power then has a Monte Carlo SE of sqrt(0.8 x 0.2 / 4000) = 0.0063


def population_rate(priors: Priors, shift: float = 0.0) -> float:
    """Mean Pass@1 over problems and runs of a strategy whose logit mean is ``logit_mean + shift``."""
    total = math.sqrt(priors.problem_sd ** 2 + priors.strategy_problem_sd ** 2 + priors.seed_sd ** 2
                      + priors.seed_problem_sd ** 2)
    return float(_mean_over(total, _expit)(logit_mean(priors) + shift))


def simulate_counts(priors: Priors, seeds: int, samples: int, problems: int, studies: int,
                    rng: np.random.Generator, difference: float = 0.0) -> np.ndarray:
    """Correct answers of ``studies`` whole studies drawn from the priors' logit model, shape
    (studies, 2 strategies, seeds, problems); strategy 0's population Pass@1 exceeds strategy 1's
    (the base rate) by ``difference``: new problems, runs and samples each time. Each answer passes when
    its own uniform draw falls below its chance, so the same ``rng`` state with a larger ``difference``
    gives the same studies with more answers passing (common random numbers for :func:`simulated_mde`)."""
    shift = 0.0
    if difference:
        target = priors.base_rate + difference
        shift = brentq(lambda s: population_rate(priors, s) - target, -20.0, 20.0, xtol=1e-10)
    logit = (logit_mean(priors) + priors.problem_sd * rng.standard_normal((studies, 1, 1, problems))
             + priors.strategy_problem_sd * rng.standard_normal((studies, 2, 1, problems))
             + priors.seed_sd * rng.standard_normal((studies, 2, seeds, 1))
             + priors.seed_problem_sd * rng.standard_normal((studies, 2, seeds, problems)))
    logit[:, 0] += shift
    chance = _expit(logit)
    return (rng.random((samples, studies, 2, seeds, problems)) < chance).sum(axis=0)


def analyse_counts(correct: np.ndarray, samples: int, priors: Priors) -> tuple[np.ndarray, ...]:
    """The analysis' Deep - Diverse difference (estimate, se, df, low, high, p) of every simulated study
    (:func:`simulate_counts`), by the report's own code and the same priors for one-seed designs."""
    rate = correct / samples
    a, b = rate[:, 0], rate[:, 1]
    prior = 0.0
    if rate.shape[2] == 1:
        prior = seed_variance(priors, a.mean(axis=(1, 2))) + seed_variance(priors, b.mean(axis=(1, 2)))
    est, se, df, low, high, p, _ = difference_interval([(1.0, a), (-1.0, b)], a.mean(axis=1), b.mean(axis=1), prior)
    return est, se, df, low, high, p


def simulate_analysis(priors: Priors, seeds: int, samples: int, problems: int, studies: int = 2000, seed: int = 0,
                      difference: float = 0.0) -> dict[str, float]:
    """Whole studies from the priors analysed by the report's code: the mean half-width it prints, how
    often its interval holds the truth, and how often it declares a difference (p < 0.05)."""
    rng = np.random.default_rng(seed)
    half, cover, reject = [], [], []
    for start in range(0, studies, 250):  # chunks keep memory small at 300 problems x 5 seeds x 16 samples
        m = min(250, studies - start)
        est, _, _, low, high, p = analyse_counts(
            simulate_counts(priors, seeds, samples, problems, m, rng, difference), samples, priors)
        half.append((high - low) / 2)
        cover.append((low <= difference) & (difference <= high))
        reject.append(p < ALPHA)
    return {"half_width": float(np.concatenate(half).mean()), "coverage": float(np.concatenate(cover).mean()),
            "rejects": float(np.concatenate(reject).mean())}


def noncentral_mde(components: Components, design: Design, priors: Priors | None = None) -> float:
    """The noncentral t's MDE on the design's expected SE and df: where the components are the priors'
    own, at the SE averaged between the null and the alternative (the better strategy's Pass@1 is
    base_rate + MDE, whose variance is larger), found by iteration. Optimistic for the analysis (module
    docstring); the starting point of :func:`simulated_mde`."""
    variance, df = components.variance(*design), components.df(*design)
    mde = minimum_detectable(math.sqrt(variance), df)
    if priors is None or set(components.sources.values()) != {"prior"}:
        return mde
    for _ in range(50):
        alternative = prior_components(replace(priors, base_rate=min(priors.base_rate + mde, 0.99)))
        terms = [((v + w) / 2, d) for (v, d), (w, _) in zip(components.terms(*design), alternative.terms(*design))]
        new = minimum_detectable(math.sqrt(sum(v for v, _ in terms)), satterthwaite(terms))
        if abs(new - mde) < 1e-6:
            break
        mde = new
    return new


def _interpolate(tried: dict[float, float]) -> float:
    """The difference at which power crosses POWER, linear between the closest tries either side (or
    the two closest tries when none lies on one side)."""
    below = [d for d, p in tried.items() if p < POWER]
    above = [d for d, p in tried.items() if p >= POWER]
    if below and above:
        pair = (max(below), min(above))
    else:
        pair = tuple(sorted(tried, key=lambda d: abs(tried[d] - POWER))[:2])
    (d0, p0), (d1, p1) = ((d, tried[d]) for d in pair)
    return d1 if p1 == p0 else d0 + (POWER - p0) * (d1 - d0) / (p1 - p0)


@functools.lru_cache(maxsize=256)
def simulated_mde(priors: Priors, seeds: int, samples: int, problems: int, studies: int = DEFAULT_STUDIES,
                  seed: int = 0) -> float:
    """The smallest true difference the report's own analysis declares (p < 0.05) in 80% of ``studies``
    studies drawn from the priors: from the noncentral t's figure, a secant search on simulated power with
    the same studies at every try (2-6 tries), stopped at 80-80.3%, else interpolated. Deterministic in ``seed``.
    ``math.inf`` when even the largest difference the base rate allows is declared in fewer than 80%."""
    ceiling = 1.0 - priors.base_rate - 1e-3  # the better strategy's Pass@1 cannot pass 1

    def power(difference: float) -> float:
        return simulate_analysis(priors, seeds, samples, problems, studies, seed, difference)["rejects"]

    def close_enough(found: float) -> bool:
        # at or just above 80%: stopping anywhere within +-0.004 stopped below more often than above (the
        # search comes from the optimistic side), and other studies then declared 0.78-0.79
        return POWER <= found <= POWER + 0.003

    start = min(noncentral_mde(prior_components(priors), (seeds, samples, problems), priors), ceiling)
    tried = {start: power(start)}
    if close_enough(tried[start]):
        return start
    # second try: rescale by the normal's noncentralities (the power curve's shape) to aim at 80%
    z_crit, observed = float(norm.ppf(1 - ALPHA / 2)), min(max(tried[start], 0.05), 0.995)
    step = start * (z_crit + float(norm.ppf(POWER))) / max(z_crit + float(norm.ppf(observed)), 0.5)
    for _ in range(5):
        step = min(max(step, 1e-4), ceiling)
        if step in tried:
            break
        tried[step] = power(step)
        if close_enough(tried[step]):
            return step
        step = _interpolate(tried)
    if max(tried.values()) < POWER:  # too few problems or seeds: even the largest difference may not do
        if ceiling not in tried:
            tried[ceiling] = power(ceiling)
        if tried[ceiling] < POWER:
            return math.inf
    if len(tried) < 2:
        return start
    return min(max(_interpolate(tried), 0.0), ceiling)

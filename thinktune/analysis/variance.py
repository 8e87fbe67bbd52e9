"""The one variance model that the power planner and the analysis share.

A study's logit-scale model (:class:`Priors`): logit p = mu + problem + strategy x problem + seed +
seed x problem, turned into probability-scale components (:class:`Components`) by Gauss-Hermite
integration. The variance of a paired A-B difference in Pass@1 with S seeds per strategy, n samples
per problem and P problems is

    V = tau2 / P + 2 seed / S + 2 (seed_problem + sampling / n) / (S P)

The analysis (:mod:`thinktune.analysis.intervals`) estimates every term a design identifies from the
data; the one a single training seed cannot identify, ``seed`` (how far one whole run's Pass@1 lies
from its strategy's mean), it takes from these priors (:func:`seed_variance`), and the planner
predicts the interval from the same formula with the same degrees of freedom and the same power
calculation (:func:`minimum_detectable`, the noncentral t).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct, norm
from scipy.stats import t as student_t

LEVEL = 0.95
ALPHA = 0.05
POWER = 0.80

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(48)  # E[f(Z)], Z ~ N(0, 1) = sum(w f(x)) / sqrt(2 pi)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class Priors:
    """A study's logit-scale model: logit p = mu + problem + strategy x problem + seed + seed x problem.

    Defaults, with why: base_rate 0.25, the original study's fine-tuned checkpoints (10-11 of 41)
    and base (7 of 41). problem_sd 1.5: LiveCodeBench problems run from nearly always to nearly never
    solved, a per-problem spread of about +-3 logits (95%). strategy_problem_sd 0.5: Deep and Diverse
    data teach different things, so the difference varies by problem (the part only more problems
    shrink). seed_problem_sd 0.5: a retrained adapter flips some problems (greedy answers change with
    small weight changes). seed_sd 0.3: a whole run's shift (a checkpoint's own luck included), an SD
    of 3.9 points of Pass@1 from run to run at 25%, 4.8 at 40% (the square root of
    ``prior_components(Priors(base_rate=...)).seed``): fine-tuning seeds move results
    by points (Dodge et al. 2020, arXiv 2002.06305). With one training seed the analysis takes this
    run-to-run variance from here, so the report states it."""
    base_rate: float = 0.25
    problem_sd: float = 1.5
    strategy_problem_sd: float = 0.5
    seed_problem_sd: float = 0.5
    seed_sd: float = 0.3


@dataclass(frozen=True)
class Components:
    """Probability-scale variance components (module docstring); ``sources`` says where each came from."""
    mean_rate: float
    strategy_problem: float
    seed: float
    seed_problem: float
    sampling: float
    sources: dict[str, str]

    def terms(self, seeds: int, samples: int, problems: int) -> list[tuple[float, float]]:
        """(variance, degrees of freedom) of each term of the analysis' SE for this design: problems
        (P - 1), each strategy's seed term (S - 1; with one seed it comes from the prior, known: inf)."""
        residual = (self.seed_problem + self.sampling / samples) / (seeds * problems)
        if seeds == 1:  # the prior's run variance, known
            return [(self.strategy_problem / problems + 2 * residual, problems - 1)] + [(self.seed, math.inf)] * 2
        # each strategy's seed term is its whole MS_seed / (P S), whose mean is seed / S + residual (the
        # residual share again: a little conservative, but a sum of positive mean squares, which keeps
        # Satterthwaite's t honest where a difference of them with 2 df would make it liberal)
        return [(self.strategy_problem / problems + 2 * residual, problems - 1)] + \
            [(self.seed / seeds + residual, seeds - 1)] * 2

    def variance(self, seeds: int, samples: int, problems: int) -> float:
        """Variance of the Deep−Diverse difference in Pass@1 for this design, as the analysis estimates it."""
        return sum(v for v, _ in self.terms(seeds, samples, problems))

    def df(self, seeds: int, samples: int, problems: int) -> float:
        """Satterthwaite degrees of freedom of the analysis' SE for this design (capped as the analysis
        caps them: twice the two seed terms' own df)."""
        df = satterthwaite(self.terms(seeds, samples, problems))
        return min(df, 4 * (seeds - 1)) if seeds >= 2 else df


# Why the analysis caps Satterthwaite's df at twice the estimated seed terms' own (S - 1 per arm): the df
# is itself estimated, and when a seed term on 2 df holds most of the variance, a low draw of it both
# shrinks the SE and raises the df. In simulation (tests/test_analysis.py: difficulty SD 2, run and
# checkpoint effects) the uncapped t interval of one Pass@1 covered 0.93 and the collapse test rejected
# 7-8% of true nulls at 120 problems x 10 samples x 3 seeds; capped, 0.97 and 6%.
def satterthwaite(terms: list[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of independent variance estimates (variance, df); inf df: known."""
    denominator = sum(v * v / d for v, d in terms if d > 0 and math.isfinite(d))
    total = sum(v for v, _ in terms)
    return total ** 2 / denominator if denominator > 0 else math.inf


def minimum_detectable(se, df, alpha: float = ALPHA, power: float = POWER):
    """Smallest true difference a two-sided level-``alpha`` t test with this standard error and df rejects
    with probability ``power``: the noncentrality delta of the noncentral t with P(|T| > t_crit) = power,
    times se (the sum of two t quantiles is only its large-df limit, and overstates power at few df).
    Works on scalars and arrays."""
    se_arr, df_arr = np.broadcast_arrays(np.asarray(se, float), np.asarray(df, float))
    out = np.empty(se_arr.shape)
    for i, (s, d) in enumerate(zip(se_arr.ravel(), df_arr.ravel())):
        out.flat[i] = s * _noncentrality(float(d), alpha, power)
    return float(out) if out.ndim == 0 else out


@functools.lru_cache(maxsize=4096)
def _noncentrality(df: float, alpha: float, power: float) -> float:
    if not math.isfinite(df) or df > 1e4:  # the normal limit (scipy's nct is unstable there)
        crit = float(norm.ppf(1 - alpha / 2))
        return float(brentq(lambda d: float(norm.sf(crit - d) + norm.cdf(-crit - d)) - power, 0.0, 20.0, xtol=1e-10))
    crit = float(student_t.ppf(1 - alpha / 2, df))

    def shortfall(delta: float) -> float:
        lower = float(nct.cdf(-crit, df, delta))  # negligible where scipy returns nan for it
        return float(nct.sf(crit, df, delta)) + (0.0 if math.isnan(lower) else lower) - power

    high = 2.0
    while shortfall(high) < 0:
        high *= 2
    return float(brentq(shortfall, 0.0, high, xtol=1e-9))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _mean_over(sd: float, f):
    """E[f(x + sd Z)] over Z ~ N(0, 1), for an array x (Gauss-Hermite on a trailing axis)."""
    return lambda x: (f(np.asarray(x)[..., None] + sd * _NODES) * _WEIGHTS).sum(axis=-1)


def logit_mean(priors: Priors) -> float:
    """mu such that the mean pass rate over problems, seeds and both interactions is ``base_rate``."""
    total = math.sqrt(priors.problem_sd ** 2 + priors.strategy_problem_sd ** 2 + priors.seed_sd ** 2
                      + priors.seed_problem_sd ** 2)
    mean = _mean_over(total, _expit)
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean(mid) < priors.base_rate else (lo, mid)
    return (lo + hi) / 2


def prior_components(priors: Priors) -> Components:
    """The priors' probability-scale components by Gauss-Hermite integration (ANOVA decomposition of p)."""
    if not 0 < priors.base_rate < 1:
        raise ValueError(f"--base-rate must lie in (0, 1), got {priors.base_rate}")
    mu, x = logit_mean(priors), _NODES
    a, g = priors.problem_sd, priors.strategy_problem_sd
    run = math.sqrt(priors.seed_sd ** 2 + priors.seed_problem_sd ** 2)
    m = _mean_over(run, _expit)                            # m(x): a problem's rate averaged over runs
    m_grid = m(mu + a * x[:, None] + g * x[None, :])       # over (problem effect, strategy x problem)
    m_mean_g = (m_grid * _WEIGHTS).sum(axis=1)             # averaged over strategy x problem
    tau2 = 2 * float(((m_grid ** 2 * _WEIGHTS).sum(axis=1) - m_mean_g ** 2) @ _WEIGHTS)
    problem_var = float((m_grid ** 2 * np.outer(_WEIGHTS, _WEIGHTS)).sum() - priors.base_rate ** 2)
    h = _mean_over(math.sqrt(a * a + g * g + priors.seed_problem_sd ** 2), _expit)(mu + priors.seed_sd * x)
    seed_var = float((h ** 2) @ _WEIGHTS - (h @ _WEIGHTS) ** 2)
    total = math.sqrt(a * a + g * g + run * run)
    p2 = float(_mean_over(total, lambda y: _expit(y) ** 2)(mu))
    p_var = p2 - priors.base_rate ** 2
    return Components(mean_rate=priors.base_rate, strategy_problem=tau2, seed=seed_var,
                      seed_problem=max(0.0, p_var - problem_var - seed_var), sampling=priors.base_rate - p2,
                      sources=dict.fromkeys(("strategy_problem", "seed", "seed_problem", "sampling"), "prior"))


@functools.lru_cache(maxsize=16)
def _seed_variance_table(priors: Priors) -> tuple[np.ndarray, np.ndarray]:
    rates = np.linspace(0.005, 0.995, 199)
    seed = [prior_components(Priors(float(r), priors.problem_sd, priors.strategy_problem_sd, priors.seed_problem_sd,
                                     priors.seed_sd)).seed for r in rates]
    return rates, np.array(seed)


def seed_variance(priors: Priors, rate):
    """The priors' variance of one training run's mean Pass@1 about its strategy's mean, at mean Pass@1
    ``rate`` (scalar or array; interpolated on a grid of 199 rates, clamped to [0.005, 0.995])."""
    rates, seed = _seed_variance_table(priors)
    out = np.interp(np.clip(np.asarray(rate, float), rates[0], rates[-1]), rates, seed)
    return float(out) if out.ndim == 0 else out


def interval_half_width(se: float, df: float) -> float:
    """Half-width of the 95% t interval with this SE and df."""
    return float(student_t.ppf((1 + LEVEL) / 2, df)) * se

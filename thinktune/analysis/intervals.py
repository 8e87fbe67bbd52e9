"""Honest intervals for the study: Pass@1 per checkpoint, Deep−Diverse paired by problem, best step
without peeking, peak minus final, and the smallest difference the design could detect.

The data: one row per (strategy, seed, step, problem) with ``n_samples`` answers of which
``n_correct`` passed (:func:`build_study` checks it and makes one :class:`Checkpoint` per
strategy and step: every seed on the same problems). A cell's rate c/n is the unbiased Pass@1
of that problem for that training run.

The model behind every interval (Miller, "Adding Error Bars to Evals", arXiv 2411.00640, with
training seeds as a second, crossed cluster): a cell's rate = strategy mean + problem effect
+ seed (whole-run) effect + seed x problem effect + sampling noise. Problems are a sample of
possible problems and seeds a sample of possible training runs; the estimand is the mean over
both populations. For a combination D = sum_k sign_k mean(rate_k) of arms k (one arm: a
Pass@1; Deep minus Diverse: two arms with independent seeds; peak minus final: one arm whose
cells are differences within the same run) the variance is estimated by moments:

    V = Var_p(d_p) / P  +  sum_k MS_seed,k / (P S_k)  +  prior

where d_p is problem p's signed combination of seed-averaged rates (its spread carries problem,
seed x problem and sampling variance; the problem effect shared by paired arms cancels in it)
and MS_seed is the seed mean square of arm k's S_k x P table (its expectation over P S_k is the
variance of the arm's mean over runs plus the residual share once more: a little conservative,
but a sum of positive mean squares, which keeps Satterthwaite's t honest on few seeds). With one
seed a trained arm's run-to-run variance cannot be estimated: ``prior`` is the planner's
(:func:`thinktune.analysis.variance.seed_variance` at the arm's Pass@1), a known term, and the
report says so and names no winner. The interval of a difference is D +- t(0.975, df) sqrt(V),
df by Satterthwaite (P - 1 for problems, S_k - 1 for each seed term, the prior known), capped at
twice the seed terms' own df; the p-value is the same t. A Pass@1 is Wilson's interval at the
effective size p (1 - p) / V with that t quantile (never outside [0, 1], never narrower than
the binomial of all its answers). Where the per-problem differences have no spread, a
difference is Newcombe's paired interval over problems (never zero width). The smallest
detectable difference is the noncentral t's (:func:`thinktune.analysis.variance.minimum_detectable`).
Simulations of whole studies (tests/test_analysis.py, tests/test_power.py) run these same
vectorised functions: :func:`clustered`, :func:`pass_at_1_interval`, :func:`difference_interval`.

Beside it, a two-way cluster bootstrap (:func:`cluster_bootstrap`): problems resampled with
replacement, one draw shared by all arms (paired); seeds resampled with replacement
independently in each arm; samples not resampled (their noise rides in each problem's rate).
With few seeds it is not conservative (it covered 0.84-0.92 with 3 seeds in an independent
review's simulation): reported as a check, never as the interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from thinktune.analysis.stats import Z975, mcnemar_exact, newcombe_paired, wilson_bounds
from thinktune.analysis.variance import LEVEL, Priors, minimum_detectable, seed_variance

DEFAULT_PRIORS = Priors()
ROW_FIELDS = ("strategy", "seed", "step", "question_id", "n_samples", "n_correct")


@dataclass(frozen=True)
class Checkpoint:
    """One strategy at one step: ``n[s, p]`` samples and ``c[s, p]`` correct for seed s, problem p."""
    strategy: str
    step: int
    seeds: tuple[int, ...]
    question_ids: tuple[str, ...]
    n: np.ndarray
    c: np.ndarray

    @property
    def rate(self) -> np.ndarray:
        """Per (seed, problem) Pass@1 estimate c / n."""
        return self.c / self.n

    def restrict(self, question_ids: Sequence[str]) -> Checkpoint:
        """The same checkpoint on a subset of its problems (in the given order)."""
        index = {q: i for i, q in enumerate(self.question_ids)}
        cols = [index[q] for q in question_ids]
        return Checkpoint(self.strategy, self.step, self.seeds, tuple(question_ids), self.n[:, cols], self.c[:, cols])


Study = dict[str, dict[int, Checkpoint]]  # strategy -> step -> Checkpoint


def build_study(rows: Iterable[Mapping]) -> Study:
    """Rows with ``ROW_FIELDS`` -> strategy -> step -> Checkpoint. Every checkpoint must hold every one of
    its strategy's seeds on the same problems, once each, and all checkpoints the same problems (pairing)."""
    cells: dict[tuple[str, int], dict[tuple[int, str], tuple[int, int]]] = {}
    for row in rows:
        missing = [f for f in ROW_FIELDS if f not in row]
        if missing:
            raise ValueError(f"row {dict(row)} lacks {missing}")
        n, c = int(row["n_samples"]), int(row["n_correct"])
        if n < 1 or not 0 <= c <= n:
            raise ValueError(f"{row['strategy']} seed {row['seed']} step {row['step']} {row['question_id']}: "
                             f"need n_samples >= 1 and 0 <= n_correct <= n_samples, got {n}, {c}")
        key, cell = (str(row["strategy"]), int(row["step"])), (int(row["seed"]), str(row["question_id"]))
        if cell in cells.setdefault(key, {}):
            raise ValueError(f"{key[0]} step {key[1]} seed {cell[0]} {cell[1]}: more than one record")
        cells[key][cell] = (n, c)
    if not cells:
        raise ValueError("no records")
    questions = sorted({q for got in cells.values() for _, q in got})
    study: Study = {}
    for (strategy, step), got in sorted(cells.items()):
        seeds = sorted({s for s, _ in got})
        absent = [(s, q) for s in seeds for q in questions if (s, q) not in got]
        if absent:
            raise ValueError(f"{strategy} step {step}: {len(absent)} (seed, problem) results missing, e.g. "
                             f"{absent[0]}: every seed must be evaluated on every problem")
        n = np.array([[got[s, q][0] for q in questions] for s in seeds])
        c = np.array([[got[s, q][1] for q in questions] for s in seeds])
        study.setdefault(strategy, {})[step] = Checkpoint(strategy, step, tuple(seeds), tuple(questions), n, c)
    return study


# ---- the estimator

@dataclass(frozen=True)
class Estimate:
    """A Pass@1, or a difference of Pass@1s, in [0, 1] units (x100 for points)."""
    estimate: float          # mean over seeds and problems of the per-cell rates (signed for differences)
    se: float                # clustered standard error (module docstring), the prior's run variance included
    df: float                # Satterthwaite degrees of freedom of se (a prior term counts as known)
    low: float               # 95% interval (module docstring: t, Wilson or Newcombe)
    high: float
    p_value: float           # two-sided, H0: the true value is 0 (meaningful for differences)
    mde: float               # smallest true difference this design detects with 80% power, alpha 0.05 two-sided
    bootstrap_low: float     # two-way cluster bootstrap percentile interval (a check, not the interval)
    bootstrap_high: float
    n_problems: int
    n_seeds: tuple[int, ...]  # seeds per arm
    seed_variance: str       # "estimated"; "prior" when a trained arm has one seed; "none" for an untrained model
    prior_se: float          # the run-to-run SE taken from the priors (0 when estimated or none)
    method: str              # how low/high/p_value were obtained


def cluster_bootstrap(arms: Sequence[tuple[float, np.ndarray]], n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``n_boot`` bootstrap replicates of sum_k sign_k mean(rate_k): one problem draw shared by all arms
    (paired), an independent seed draw per arm; deterministic given ``seed``."""
    rng = np.random.default_rng(seed)
    n_problems = arms[0][1].shape[1]
    problem_w = rng.multinomial(n_problems, np.full(n_problems, 1.0 / n_problems), size=n_boot) / n_problems
    total = np.zeros(n_boot)
    for sign, rate in arms:
        n_seeds = rate.shape[0]
        seed_w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot) / n_seeds
        total += sign * np.einsum("bs,sp,bp->b", seed_w, rate, problem_w)
    return total


def _seed_mean_squares(rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-way ANOVA mean squares (seeds, residual) of S x P tables (leading axes: a batch), S >= 2."""
    s, p = rate.shape[-2:]
    run, problem, grand = rate.mean(axis=-1), rate.mean(axis=-2), rate.mean(axis=(-2, -1))
    seed_dev = run - grand[..., None]
    resid = rate - run[..., None] - problem[..., None, :] + grand[..., None, None]
    return p * (seed_dev ** 2).sum(axis=-1) / (s - 1), (resid ** 2).sum(axis=(-2, -1)) / ((s - 1) * (p - 1))


@dataclass(frozen=True)
class Clustered:
    """The clustered variance of sum_k sign_k mean(rate_k) (arrays over a leading batch of studies)."""
    estimate: np.ndarray
    per_problem: np.ndarray   # d_p, the signed combination of seed-averaged rates per problem
    v_problem: np.ndarray     # Var_p(d_p) / P
    variance: np.ndarray      # v_problem + estimated seed terms + the prior's run variance
    df: np.ndarray            # Satterthwaite (the prior term known: no df of its own)


def clustered(arms: Sequence[tuple[float, np.ndarray]], prior_variance=0.0) -> Clustered:
    """The variance of module docstring for arms (sign, rate of shape (..., S_k, P)); ``prior_variance``:
    the run-to-run variance of the arms that have one seed, taken from the priors (the caller's)."""
    n_problems = arms[0][1].shape[-1]
    if any(rate.shape[-1] != n_problems for _, rate in arms):
        raise ValueError("arms must hold the same problems (a paired comparison)")
    if n_problems < 2:
        raise ValueError("one problem: its spread is unknown, no interval can be given; evaluate more problems")
    per_problem = sum(sign * rate.mean(axis=-2) for sign, rate in arms)
    v_problem = per_problem.var(axis=-1, ddof=1) / n_problems
    terms = [(v_problem, n_problems - 1)]
    for _, rate in arms:
        if rate.shape[-2] >= 2:
            ms_seed, ms_resid = _seed_mean_squares(rate)
            terms.append((ms_seed / (n_problems * rate.shape[-2]), rate.shape[-2] - 1))
    variance = sum(v for v, _ in terms) + np.asarray(prior_variance, float)
    denominator = sum(v ** 2 / d for v, d in terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denominator > 0, variance ** 2 / np.where(denominator > 0, denominator, 1.0), np.inf)
    seed_df = sum(d for _, d in terms[1:])
    if seed_df:  # never above twice the seed terms' own df (why: the comment on variance.satterthwaite);
        df = np.where(denominator > 0, np.minimum(df, 2 * seed_df), df)  # no spread at all: no df to cap
    return Clustered(per_problem.mean(axis=-1), per_problem, v_problem, variance, df)


def _quantile(df) -> np.ndarray:
    return student_t.ppf((1 + LEVEL) / 2, df)


def pass_at_1_interval(rate: np.ndarray, answers, prior_variance=0.0) -> tuple[np.ndarray, ...]:
    """(estimate, se, df, low, high) of a Pass@1 from (..., S, P) rates and the number of answers behind
    them: Wilson's interval at the effective sample size p(1 - p) / V with the t quantile of V's df, so it
    stays inside [0, 1] and matches the t interval where that is symmetric. The effective size is never
    above the answers (a mean of answers varies at least as a binomial under the model: problems and runs
    only add variance), so no spread observed gives the binomial interval, never a zero width; a Pass@1
    of 0 or 1 gives Wilson's interval over problems (each problem's answers agree)."""
    c = clustered([(1.0, rate)], prior_variance)
    pq = c.estimate * (1 - c.estimate)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(pq > 0, np.minimum(answers, pq / np.where(c.variance > 0, c.variance, 1e-300)),
                         rate.shape[-1])
    low, high = wilson_bounds(c.estimate, n_eff, _quantile(c.df))
    return c.estimate, np.sqrt(np.where(pq > 0, pq / n_eff, c.variance)), c.df, low, high


def difference_interval(arms: Sequence[tuple[float, np.ndarray]], x: np.ndarray, y: np.ndarray,
                        prior_variance=0.0) -> tuple[np.ndarray, ...]:
    """(estimate, se, df, low, high, p, degenerate) of a paired difference whose per-problem marginals are
    ``x`` and ``y`` (each arm's seed-averaged rate, (..., P)). The t interval on the clustered SE; where the
    per-problem differences have no spread at all (the t interval would have width 0 and p near 0), the
    Newcombe paired interval over problems (:func:`thinktune.analysis.stats.newcombe_paired`) widened by
    the prior's run variance, with the sign test over problems (McNemar's exact test on binary problems)."""
    c = clustered(arms, prior_variance)
    se = np.sqrt(c.variance)
    q = _quantile(c.df)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * student_t.sf(np.abs(c.estimate) / np.where(se > 0, se, 1.0), c.df), 1.0)
    degenerate = c.v_problem <= 1e-14
    low, high = c.estimate - q * se, c.estimate + q * se
    if np.any(degenerate):
        n_low, n_high = newcombe_paired(x, y)
        # No spread over problems says nothing of the runs: the estimated seed terms and the prior's run
        # variance (all of the variance but the problem term) widen Newcombe's bounds with their own
        # quantile (the normal's for the prior alone: its df is inf), and test the difference beside
        # the sign test. Dropping the seed terms here let two runs that disagree completely (one solves
        # every problem, the other none) declare a winner at p = 0.002.
        between_runs = np.maximum(c.variance - c.v_problem, 0.0)
        extra = _quantile(c.df) ** 2 * between_runs
        d_low = c.estimate - np.sqrt((c.estimate - n_low) ** 2 + extra)
        d_high = c.estimate + np.sqrt((n_high - c.estimate) ** 2 + extra)
        gains, losses = (c.per_problem > 1e-12).sum(axis=-1), (c.per_problem < -1e-12).sum(axis=-1)
        p_sign = np.vectorize(mcnemar_exact)(gains, losses)
        with np.errstate(divide="ignore", invalid="ignore"):
            run_sd = np.sqrt(between_runs)
            p_runs = np.where(run_sd > 0, 2 * student_t.sf(np.abs(c.estimate) / np.where(run_sd > 0, run_sd, 1),
                                                            c.df), 0.0)
        low, high = np.where(degenerate, d_low, low), np.where(degenerate, d_high, high)
        p = np.where(degenerate, np.maximum(p_sign, p_runs), p)
        se = np.where(degenerate, (d_high - d_low) / (2 * Z975), se)
    # a difference of two rates lies in [-1, 1]; only the Newcombe bounds widened by the prior can pass it
    return c.estimate, se, c.df, np.maximum(low, -1.0), np.minimum(high, 1.0), np.minimum(1.0, p), degenerate


def _scalar(x) -> float:
    return float(np.asarray(x))


def _bootstrap(arms, n_boot: int, seed: int) -> tuple[float, float]:
    boot = cluster_bootstrap(arms, n_boot, seed)
    low, high = (float(x) for x in np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    return low, high


def _seed_source(arms_trained: Sequence[tuple[np.ndarray, bool]]) -> str:
    trained = [rate for rate, is_trained in arms_trained if is_trained]
    if not trained:
        return "none"
    return "estimated" if all(rate.shape[0] >= 2 for rate in trained) else "prior"


def pass_at_1(checkpoint: Checkpoint, priors: Priors = DEFAULT_PRIORS, trained: bool = True,
              n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Pass@1 of one checkpoint averaged over its seeds and problems, with its Wilson-type interval
    (:func:`pass_at_1_interval`). One seed of a trained model: the run-to-run variance from ``priors``
    (an untrained model, ``trained=False``, has none)."""
    rate = checkpoint.rate
    one_run = trained and rate.shape[0] == 1
    prior = seed_variance(priors, rate.mean()) if one_run else 0.0
    est, se, df, low, high = (_scalar(v) for v in pass_at_1_interval(rate, int(checkpoint.n.sum()), prior))
    b_low, b_high = _bootstrap([(1.0, rate)], n_boot, seed)
    p_value = 1.0 if est == 0 else _scalar(2 * student_t.sf(est / se, df)) if se > 0 else 0.0
    return Estimate(est, se, df, low, high, min(1.0, p_value), float(minimum_detectable(se, df)), b_low, b_high,
                    rate.shape[1], (rate.shape[0],), _seed_source([(rate, trained)]), math.sqrt(prior),
                    "Wilson interval at the clustered effective sample size (problems x seeds), t quantile")


def _difference(arms, x, y, prior: float, source: str, n_boot: int, seed: int) -> Estimate:
    est, se, df, low, high, p, degenerate = (_scalar(v) for v in difference_interval(arms, x, y, prior))
    b_low, b_high = _bootstrap(arms, n_boot, seed)
    method = ("no spread over problems: Newcombe's paired interval over problems, sign test" if degenerate else
              "clustered SE (problems x seeds), Satterthwaite t")
    return Estimate(est, se, df, low, high, p, float(minimum_detectable(se, df)), b_low, b_high,
                    arms[0][1].shape[1], tuple(rate.shape[0] for _, rate in arms), source, math.sqrt(prior), method)


def difference(a: Checkpoint, b: Checkpoint, priors: Priors = DEFAULT_PRIORS, trained: tuple[bool, bool] = (True, True),
               n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Pass@1 of ``a`` minus ``b`` paired by problem; the two strategies' seeds are independent runs. A
    trained arm with one seed adds the priors' run-to-run variance at its own Pass@1."""
    if a.question_ids != b.question_ids:
        raise ValueError(f"{a.strategy}@{a.step} and {b.strategy}@{b.step} hold different problems")
    prior = sum(seed_variance(priors, cp.rate.mean()) for cp, is_trained in zip((a, b), trained)
                if is_trained and len(cp.seeds) == 1)
    arms = [(1.0, a.rate), (-1.0, b.rate)]
    return _difference(arms, a.rate.mean(axis=0), b.rate.mean(axis=0), prior,
                       _seed_source(list(zip((a.rate, b.rate), trained))), n_boot, seed)


def within_run_difference(a: Checkpoint, b: Checkpoint, priors: Priors = DEFAULT_PRIORS,
                          n_boot: int = 2000, seed: int = 0) -> Estimate:
    """``a`` minus ``b`` for two steps of the same runs: paired by seed and by problem. With one seed
    each checkpoint's own shift is unseen: the priors' run variance for both (as if the two checkpoints
    were independent runs, the bound the data cannot narrow)."""
    if a.seeds != b.seeds or a.question_ids != b.question_ids:
        raise ValueError("a within-run difference needs the same seeds and problems at both steps")
    one_run = len(a.seeds) == 1
    prior = (seed_variance(priors, a.rate.mean()) + seed_variance(priors, b.rate.mean())) if one_run else 0.0
    return _difference([(1.0, a.rate - b.rate)], a.rate.mean(axis=0), b.rate.mean(axis=0), prior,
                       "prior" if one_run else "estimated", n_boot, seed)


# ---- choosing a step without peeking

@dataclass(frozen=True)
class BestStep:
    strategy: str
    step: int
    rule: str                 # "validation-loss" or "final" (the pre-registered rule without one)
    pass_at_1: Estimate       # scored on every problem: neither rule looks at them


def best_step(checkpoints: Mapping[int, Checkpoint], validation_loss: Mapping[int, float] | None = None,
              priors: Priors = DEFAULT_PRIORS, n_boot: int = 2000, seed: int = 0) -> BestStep:
    """The step to report for one strategy, chosen without looking at the benchmark's problems.

    With ``validation_loss`` (step -> loss, averaged over seeds): the lowest loss, earliest on a tie.
    Otherwise the pre-registered rule: the final step. (Choosing the best Pass@1 on half of the problems
    and scoring it on the other half is biased when a whole checkpoint is lucky on every problem, which
    both halves share; so no step is ever chosen on benchmark results.)"""
    steps = sorted(checkpoints)
    strategy = checkpoints[steps[0]].strategy
    if validation_loss is not None:
        known = [s for s in steps if s in validation_loss]
        if not known:
            raise ValueError(f"{strategy}: no validation loss at any evaluated step {steps}")
        chosen, rule = min(known, key=lambda s: (validation_loss[s], s)), "validation-loss"
    else:
        chosen, rule = steps[-1], "final"
    return BestStep(strategy, chosen, rule, pass_at_1(checkpoints[chosen], priors, True, n_boot, seed))


@dataclass(frozen=True)
class Collapse:
    strategy: str
    peak_step: int
    final_step: int
    rule: str                 # "stated" (peak given beforehand) or "validation-loss"
    peak_minus_final: Estimate  # paired by seed and problem


def collapse(checkpoints: Mapping[int, Checkpoint], peak_step: int | None = None,
             validation_loss: Mapping[int, float] | None = None, priors: Priors = DEFAULT_PRIORS,
             n_boot: int = 2000, seed: int = 0) -> Collapse | None:
    """Peak minus final Pass@1 of one strategy's runs, with an interval across seeds and problems.
    The peak is ``peak_step`` if stated beforehand (e.g. the original study's step 400), else the step
    of lowest validation loss; with neither there is no pre-registered peak and no test (None): the
    best-looking step on the benchmark would find a collapse in noise. The final step is the last one."""
    final = max(checkpoints)
    if peak_step is not None:
        rule = "stated"
    elif validation_loss is not None:
        peak_step, rule = best_step(checkpoints, validation_loss, priors, 1).step, "validation-loss"
    else:
        return None
    est = within_run_difference(checkpoints[peak_step], checkpoints[final], priors, n_boot, seed)
    return Collapse(checkpoints[final].strategy, peak_step, final, rule, est)


# ---- variance components of a finished run, for the power planner

@dataclass(frozen=True)
class RunMoments:
    """What a run's A-B comparison tells about its variance components (probability scale, per strategy,
    averaged over the steps both strategies were evaluated at). None: not identified by this design."""
    mean_rate: float          # mean Pass@1 of the two strategies
    spread: float             # Var_p(d_p): = strategy_problem + sum_k (seed_problem + sampling / n) / S_k
    residual: float | None    # two-way residual mean square: seed_problem + sampling / n (needs 2+ seeds)
    seed: float | None        # variance of one run's Pass@1 about its strategy's mean (needs 2+ seeds)
    sampling: float | None    # E[p (1 - p)], one answer's Bernoulli variance (needs 2+ samples per cell)
    seeds: tuple[int, int]    # the run's design: seeds of A and of B, samples per cell, problems
    samples: float
    problems: int


def run_moments(a: Mapping[int, Checkpoint], b: Mapping[int, Checkpoint]) -> RunMoments:
    """Method-of-moments pieces of strategy ``a`` vs ``b`` (step -> Checkpoint each), averaged over common
    steps. sampling: c (n - c) / (n (n - 1)) is unbiased for p (1 - p) in each cell."""
    steps = sorted(set(a) & set(b))
    if not steps:
        raise ValueError("the two strategies share no evaluated step")
    mean_rate, spread, residual, seed, sampling = [], [], [], [], []
    for step in steps:
        arms = (a[step], b[step])
        if arms[0].question_ids != arms[1].question_ids or len(arms[0].question_ids) < 2:
            raise ValueError(f"step {step}: the strategies need the same two or more problems")
        mean_rate.append(np.mean([cp.rate.mean() for cp in arms]))
        spread.append(float((arms[0].rate.mean(axis=0) - arms[1].rate.mean(axis=0)).var(ddof=1)))
        if all(len(cp.seeds) >= 2 for cp in arms):
            squares = [_seed_mean_squares(cp.rate) for cp in arms]
            residual.append(np.mean([r for _, r in squares]))
            seed.append(np.mean([max(0.0, s - r) / len(cp.question_ids) for (s, r), cp in zip(squares, arms)]))
        if all((cp.n >= 2).all() for cp in arms):
            sampling.append(np.mean([(cp.c * (cp.n - cp.c) / (cp.n * (cp.n - 1))).mean() for cp in arms]))
    last = (a[steps[-1]], b[steps[-1]])
    return RunMoments(mean_rate=float(np.mean(mean_rate)), spread=float(np.mean(spread)),
                      residual=float(np.mean(residual)) if residual else None,
                      seed=float(np.mean(seed)) if seed else None,
                      sampling=float(np.mean(sampling)) if sampling else None,
                      seeds=(len(last[0].seeds), len(last[1].seeds)),
                      samples=float(1.0 / np.mean([(1.0 / cp.n).mean() for cp in last])),
                      problems=len(last[0].question_ids))

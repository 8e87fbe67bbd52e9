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
cells are differences within the same run) the variance is estimated by moments, unbiased for
a balanced design:

    V = Var_p(d_p) / P  +  sum_k max(0, MS_seed,k - MS_resid,k) / (P S_k)

where d_p is problem p's signed combination of seed-averaged rates (its spread carries problem,
seed x problem and sampling variance; the problem effect shared by paired arms cancels in it)
and MS_seed, MS_resid are the two-way ANOVA mean squares of arm k's S_k x P table (their
difference over P estimates the variance of one run's mean; not estimable with one seed). The
interval is D +- t(0.975, df) sqrt(V), df by Satterthwaite (P - 1 for problems, S_k - 1 for each
seed term), so three seeds give the wide t quantile they deserve. The p-value is the same t.

Beside it, a two-way cluster bootstrap (:func:`cluster_bootstrap`): problems resampled with
replacement, one draw shared by all arms (paired); seeds resampled with replacement
independently in each arm; samples not resampled (their noise rides in each problem's rate).
Crossed resampling counts the seed x problem and sampling variance more than once (Owen 2007,
"The pigeonhole bootstrap"), so it is conservative; reported as a check, not as the interval.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import t as student_t

from thinktune.analysis.stats import mcnemar_exact, wilson_interval

LEVEL = 0.95
ALPHA = 0.05
POWER = 0.80
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


# ---- power

def minimum_detectable(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true difference a two-sided level-``alpha`` t test with this standard error rejects
    with probability ``power``: (t(1 - alpha/2) + t(power)) x se."""
    return float(student_t.ppf(1.0 - alpha / 2.0, df) + student_t.ppf(power, df)) * se


# ---- the estimator

@dataclass(frozen=True)
class Estimate:
    """A Pass@1, or a difference of Pass@1s, in [0, 1] units (x100 for points)."""
    estimate: float          # mean over seeds and problems of the per-cell rates (signed for differences)
    se: float                # clustered standard error (module docstring)
    df: float                # Satterthwaite degrees of freedom of se
    low: float               # 95% interval: estimate +- t(0.975, df) se
    high: float
    p_value: float           # two-sided, H0: the true value is 0 (t test; meaningful for differences)
    mde: float               # smallest true difference this design detects with 80% power, alpha 0.05 two-sided
    bootstrap_low: float     # two-way cluster bootstrap percentile interval (conservative check)
    bootstrap_high: float
    n_problems: int
    n_seeds: tuple[int, ...]  # seeds per arm
    seed_variance: str       # "estimated", or "not estimated" when an arm has a single seed
    method: str              # how low/high/p_value were obtained (a fallback is named here)


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


def _seed_mean_squares(rate: np.ndarray) -> tuple[float, float]:
    """Two-way ANOVA mean squares (seeds, residual) of an S x P table, S >= 2."""
    s, p = rate.shape
    seed_dev = rate.mean(axis=1) - rate.mean()
    resid = rate - rate.mean(axis=1, keepdims=True) - rate.mean(axis=0, keepdims=True) + rate.mean()
    return p * float(seed_dev @ seed_dev) / (s - 1), float((resid ** 2).sum()) / ((s - 1) * (p - 1))


def combine(arms: Sequence[tuple[float, np.ndarray]], n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Estimate, clustered SE, t interval, p-value, MDE and bootstrap interval of sum_k sign_k mean(rate_k)
    for arms given as (sign, S_k x P rate table) over the same problems (module docstring)."""
    n_problems = arms[0][1].shape[1]
    if any(rate.shape[1] != n_problems for _, rate in arms):
        raise ValueError("arms must hold the same problems (a paired comparison)")
    if n_problems < 2:
        raise ValueError("one problem: its spread is unknown, no interval can be given; evaluate more problems")
    per_problem = sum(sign * rate.mean(axis=0) for sign, rate in arms)
    estimate = float(per_problem.mean())
    v_problem = float(per_problem.var(ddof=1)) / n_problems
    v_seed = []
    for _, rate in arms:
        if rate.shape[0] >= 2:
            ms_seed, ms_resid = _seed_mean_squares(rate)
            v_seed.append((max(0.0, ms_seed - ms_resid) / (n_problems * rate.shape[0]), rate.shape[0] - 1))
    variance = v_problem + sum(v for v, _ in v_seed)
    denominator = v_problem ** 2 / (n_problems - 1) + sum(v ** 2 / d for v, d in v_seed)
    df = variance ** 2 / denominator if denominator > 0 else math.inf
    boot = cluster_bootstrap(arms, n_boot, seed)
    b_low, b_high = (float(x) for x in np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    se = math.sqrt(variance)
    if se > 0:
        half = float(student_t.ppf((1 + LEVEL) / 2, df)) * se
        low, high = estimate - half, estimate + half
        p_value = 2 * float(student_t.sf(abs(estimate) / se, df))
        method = "clustered SE (problems x seeds), Satterthwaite t"
    elif len(arms) == 1 and arms[0][0] > 0 and ((arms[0][1] == 0) | (arms[0][1] == 1)).all():
        # Every run solved the same problems every time: the spread is unseen, so fall back to
        # Wilson's interval over problems (never a zero-width interval for, e.g., 0 of 41).
        low, high = wilson_interval(estimate * n_problems, n_problems)
        p_value, method = (1.0 if estimate == 0 else 0.0), "no spread in the data: Wilson interval over problems"
    else:
        # The same difference on every problem and run: McNemar's exact test over problems.
        gains = int((per_problem > 0).sum()), int((per_problem < 0).sum())
        low = high = estimate
        p_value, method = mcnemar_exact(*gains), "no spread in the data: McNemar's exact test over problems"
    return Estimate(estimate=estimate, se=se, df=df, low=low, high=high, p_value=min(1.0, p_value),
                    mde=minimum_detectable(se, df), bootstrap_low=b_low, bootstrap_high=b_high,
                    n_problems=n_problems, n_seeds=tuple(rate.shape[0] for _, rate in arms),
                    seed_variance="estimated" if all(r.shape[0] >= 2 for _, r in arms) else "not estimated",
                    method=method)


def pass_at_1(checkpoint: Checkpoint, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Pass@1 of one checkpoint averaged over its seeds and problems, with its interval (the t
    interval cut to [0, 1]: a rate cannot leave it, though mean +- t se can, e.g. 3/12 solved)."""
    est = combine([(1.0, checkpoint.rate)], n_boot, seed)
    return replace(est, low=max(0.0, est.low), high=min(1.0, est.high))


def difference(a: Checkpoint, b: Checkpoint, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Pass@1 of ``a`` minus ``b`` paired by problem; the two strategies' seeds are independent runs."""
    if a.question_ids != b.question_ids:
        raise ValueError(f"{a.strategy}@{a.step} and {b.strategy}@{b.step} hold different problems")
    return combine([(1.0, a.rate), (-1.0, b.rate)], n_boot, seed)


def within_run_difference(a: Checkpoint, b: Checkpoint, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """``a`` minus ``b`` for two steps of the same runs: paired by seed and by problem."""
    if a.seeds != b.seeds or a.question_ids != b.question_ids:
        raise ValueError("a within-run difference needs the same seeds and problems at both steps")
    return combine([(1.0, a.rate - b.rate)], n_boot, seed)


# ---- choosing a step without peeking

def split_half(question_ids: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(selection half, scoring half) by a fixed hash of each question_id: the same problem always lands
    in the same half, whatever else is in the set."""
    def selects(q: str) -> bool:
        return hashlib.sha256(f"thinktune-split:{q}".encode()).digest()[0] % 2 == 0
    return tuple(q for q in question_ids if selects(q)), tuple(q for q in question_ids if not selects(q))


@dataclass(frozen=True)
class BestStep:
    strategy: str
    step: int
    rule: str                 # "split-half" (chosen on one half of the problems) or "validation-loss"
    pass_at_1: Estimate       # scored on problems the choice did not see (all problems for validation loss)
    scored_on: tuple[str, ...]


def best_step(checkpoints: Mapping[int, Checkpoint], validation_loss: Mapping[int, float] | None = None,
              n_boot: int = 2000, seed: int = 0) -> BestStep:
    """The step to report for one strategy, chosen without looking at the problems it is scored on.

    With ``validation_loss`` (step -> loss, averaged over seeds): the lowest loss, earliest on a tie,
    scored on every problem. Otherwise split-half: the highest Pass@1 on the selection half, earliest on
    a tie, scored on the scoring half."""
    steps = sorted(checkpoints)
    strategy = checkpoints[steps[0]].strategy
    if validation_loss is not None:
        known = [s for s in steps if s in validation_loss]
        if not known:
            raise ValueError(f"{strategy}: no validation loss at any evaluated step {steps}")
        chosen = min(known, key=lambda s: (validation_loss[s], s))
        scored = checkpoints[chosen].question_ids
        return BestStep(strategy, chosen, "validation-loss", pass_at_1(checkpoints[chosen], n_boot, seed), scored)
    select, scored = split_half(checkpoints[steps[0]].question_ids)
    if len(select) < 1 or len(scored) < 2:
        raise ValueError(f"{strategy}: too few problems to split into a selection and a scoring half")
    chosen = max(steps, key=lambda s: (checkpoints[s].restrict(select).rate.mean(), -s))
    return BestStep(strategy, chosen, "split-half", pass_at_1(checkpoints[chosen].restrict(scored), n_boot, seed),
                    scored)


@dataclass(frozen=True)
class Collapse:
    strategy: str
    peak_step: int
    final_step: int
    rule: str                 # "split-half", "stated" (peak given beforehand) or "validation-loss"
    peak_minus_final: Estimate  # paired by seed and problem; scored on problems the choice did not see


def collapse(checkpoints: Mapping[int, Checkpoint], peak_step: int | None = None,
             validation_loss: Mapping[int, float] | None = None, n_boot: int = 2000, seed: int = 0) -> Collapse:
    """Peak minus final Pass@1 of one strategy's runs, with an interval across seeds and problems.
    The peak is ``peak_step`` if stated beforehand (e.g. the original study's step 400), else chosen by
    :func:`best_step`; the final step is the last one."""
    final = max(checkpoints)
    if peak_step is not None:
        rule, scored = "stated", checkpoints[final].question_ids
    else:
        chosen = best_step(checkpoints, validation_loss, n_boot, seed)
        peak_step, rule, scored = chosen.step, chosen.rule, chosen.scored_on
    est = within_run_difference(checkpoints[peak_step].restrict(scored), checkpoints[final].restrict(scored),
                                n_boot, seed)
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

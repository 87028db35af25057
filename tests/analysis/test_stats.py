"""Tests for epsd_tf.analysis.stats: t quantiles, the sign test, paired differences."""

import math

import pytest

from epsd_tf.analysis import stats

# No backend code runs here: the JAX suite runs it, the TF suite of `make test` skips it.
pytestmark = [pytest.mark.jax, pytest.mark.backend_free]


@pytest.mark.parametrize("df, quantile", [(1, 12.7062), (2, 4.3027), (4, 2.7764),
                                          (9, 2.2622), (30, 2.0423)])
def test_t_quantiles_match_the_tables(df, quantile):
    assert stats.t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-4)
    assert stats.t_quantile(0.025, df) == pytest.approx(-quantile, abs=1e-4)
    assert stats.t_cdf(quantile, df) == pytest.approx(0.975, abs=1e-5)  # 4-digit table


def test_t_quantile_rejects_bad_arguments():
    with pytest.raises(ValueError, match="0 < q < 1"):
        stats.t_quantile(1.0, 3)


def test_sign_test_is_the_exact_binomial():
    assert stats.sign_test(5, 0) == pytest.approx(2 / 32)
    assert stats.sign_test(4, 1) == pytest.approx(2 * 6 / 32)
    assert stats.sign_test(2, 2) == 1.0 and stats.sign_test(0, 0) == 1.0


def test_paired_difference_over_matched_seeds():
    a = {0: 0.90, 1: 0.92, 2: 0.94, 3: 0.50}   # seed 3 has no partner: left out
    b = {0: 0.89, 1: 0.905, 2: 0.92, 4: 0.99}
    result = stats.paired_difference(a, b)
    assert result["seeds"] == [0, 1, 2] and result["n"] == 3
    assert result["mean"] == pytest.approx(0.015)
    assert result["std"] == pytest.approx(0.005)
    half = 4.302653 * 0.005 / math.sqrt(3)
    assert (result["low"], result["high"]) == pytest.approx((0.015 - half, 0.015 + half))
    assert (result["wins"], result["losses"], result["sign_p"]) == (3, 0, 0.25)
    assert result["verdict"] == "real"
    noisy = stats.paired_difference({0: 1.0, 1: 0.0}, {0: 0.5, 1: 0.4})
    assert noisy["verdict"] == "noise" and noisy["low"] < 0 < noisy["high"]
    # Two seeds with the same difference (accuracy comes in 0.01-pt steps): the
    # interval has no width, it estimates no spread, so it proves nothing.
    same = stats.paired_difference({0: 94.40, 1: 94.52}, {0: 94.35, 1: 94.47})
    assert same["low"] == pytest.approx(same["high"]) == pytest.approx(0.05)
    assert same["verdict"] == "noise"
    single = stats.paired_difference({0: 1.0}, {0: 0.5})
    assert single["verdict"] == "too few seeds" and single["low"] is None


def test_a_collapse_on_some_seeds_reads_every_seed_one_way_not_noise():
    # EPSD at 98 % on ResNet-20: about 89 % or a collapse, behind SNIP on every seed.
    epsd = {0: 89.29, 1: 71.91, 2: 89.57, 3: 31.64, 4: 25.95}
    snip = {0: 90.86, 1: 90.19, 2: 90.38, 3: 90.45, 4: 90.73}
    result = stats.paired_difference(epsd, snip)
    assert result["low"] < 0 < result["high"]  # the t interval is no help here
    assert (result["losses"], result["sign_p"]) == (5, 0.0625)
    assert result["verdict"] == stats.ONE_WAY
    # One seed the other way: noise; three seeds one way (sign p = 0.25): noise too.
    epsd[0] = 91.0
    assert stats.paired_difference(epsd, snip)["verdict"] == "noise"
    three = stats.paired_difference({0: 89.0, 1: 30.0, 2: 89.5}, {0: 90.0, 1: 90.1, 2: 90.2})
    assert three["low"] < 0 < three["high"] and three["verdict"] == "noise"

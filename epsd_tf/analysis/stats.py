"""Paired comparisons over seeds: mean difference with a t confidence interval, sign test.

The EPSD paper (Chen et al., AAAI 2024) reports means over runs; whether a
difference between two pruning criteria is more than seed-to-seed noise needs
a paired test: both criteria are run with the same seeds (same initial
weights, data order and scoring batches), so the per-seed differences are
the observations. Two tests, both exact for what they assume:

* Student's t interval of the mean difference (normal per-seed differences),
  `mean ± t_{0.975, n-1} · std / sqrt(n)`; "real" when it excludes 0, unless
  every seed gave the same difference: accuracies on a fixed test set come
  in steps (0.01 pt on 10 000 images), so two seeds can match exactly, and
  their zero-width interval estimates no spread at all.
* The two-sided sign test (no distribution assumed; ties dropped). With 5
  seeds its smallest p-value is 2/32 = 0.0625, so it can never reach 0.05:
  it is reported, the verdict rests on the interval.

Pure Python and numpy (no scipy): the t quantile inverts the t CDF, which is
a regularized incomplete beta function (continued fraction, Numerical
Recipes §6.4), by bisection.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) +
                     a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(q: float, df: float) -> float:
    """The `q` quantile of Student's t (e.g. q=0.975, df=4 -> 2.776).

    Raises:
        ValueError: q outside (0, 1) or df < 1.
    """
    if not 0.0 < q < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0 < q < 1 and df >= 1, got q={q}, df={df}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < q:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if t_cdf(middle, df) < q else (low, middle)
    return 0.5 * (low + high)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value of `wins` against `losses` (ties excluded)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


# With 5 seeds all pointing one way the sign test's p is 0.0625 (3 seeds: 0.25).
ONE_WAY_SEEDS = 5
ONE_WAY = "every seed one way"


def excludes_zero(low: float, high: float) -> bool:
    """A confidence interval's "real": it lies on one side of 0 and has width (one
    of zero width, the same difference on every seed up to round-off, estimates
    no spread)."""
    width = high - low
    return width > 1e-9 * max(1.0, abs(low), abs(high)) and (low > 0 or high < 0)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float],
                      confidence: float = 0.95) -> dict:
    """Compares `a - b` over the seeds both have.

    Args:
        a, b: `{seed: value}` of the two groups (e.g. test accuracy of EPSD and
            of a baseline).
        confidence: of the t interval.

    Returns:
        `n`, `seeds` (matched), `mean`, `std` (sample, ddof=1), `low`, `high`
        (the t interval; None with fewer than 2 seeds), `wins`, `losses`,
        `ties` (seeds where a > b, a < b, a == b), `sign_p`, and `verdict`:
        "real" (interval excludes 0 and has width: identical differences on
        every seed estimate no spread), "every seed one way" (it includes 0, but
        with at least `ONE_WAY_SEEDS` seeds every difference has the same sign:
        an outcome that is either fine or a collapse widens a t interval, and
        the sign test, p = 2 / 2^n, is then the better reading), "noise" (it
        includes 0 otherwise, or has no width) or "too few seeds" (n < 2).
    """
    seeds = sorted(set(a) & set(b))
    differences = np.asarray([a[s] - b[s] for s in seeds], np.float64)
    n = len(seeds)
    result = {"n": n, "seeds": seeds, "mean": None, "std": None, "low": None, "high": None,
              "wins": int(np.sum(differences > 0)), "losses": int(np.sum(differences < 0)),
              "ties": int(np.sum(differences == 0)), "sign_p": None, "verdict": "too few seeds"}
    if n == 0:
        return result
    result["mean"] = float(np.mean(differences))
    result["sign_p"] = sign_test(result["wins"], result["losses"])
    if n >= 2:
        std = float(np.std(differences, ddof=1))
        half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
        result.update(std=std, low=result["mean"] - half, high=result["mean"] + half)
        if excludes_zero(result["low"], result["high"]):
            result["verdict"] = "real"
        elif n >= ONE_WAY_SEEDS and n in (result["wins"], result["losses"]):
            result["verdict"] = ONE_WAY
        else:
            result["verdict"] = "noise"
    return result

"""Paired differences and their bootstrap CI on examples worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pathda.benchmark.stats import bootstrap_means, difference_grid, paired_difference


def test_pairs_are_matched_by_seed_and_slide_not_by_order():
    a = {(0, "t0"): 0.7, (0, "t1"): 0.5, (1, "t0"): 0.9}
    b = {(1, "t0"): 0.6, (0, "t1"): 0.4, (0, "t0"): 0.6, (2, "t0"): 0.1}  # (2, t0) unpaired
    grid, seeds, slides = difference_grid(a, b)
    assert seeds == [0, 1]
    assert slides == ["t0", "t1"]
    np.testing.assert_allclose(grid, [[0.1, 0.1], [0.3, np.nan]], atol=1e-12)
    diff = paired_difference(a, b, n_boot=2000)
    assert diff.n == 3
    assert diff.n_seeds == 2
    assert diff.n_slides == 2
    assert diff.mean == pytest.approx((0.1 + 0.1 + 0.3) / 3)


def test_constant_difference_has_a_zero_width_interval():
    a = {(s, t): 0.5 + 0.01 * s + 0.1 * t for s in range(3) for t in range(4)}
    b = {k: v - 0.05 for k, v in a.items()}
    diff = paired_difference(a, b, n_boot=500)
    assert diff.mean == pytest.approx(0.05)
    assert diff.ci_low == pytest.approx(0.05)
    assert diff.ci_high == pytest.approx(0.05)
    assert diff.excludes_zero


def test_two_slides_one_seed_percentiles_are_the_extremes():
    # Resampling 2 slides: the mean is d1 (p = 1/4), (d1 + d2)/2 (1/2) or d2 (1/4), so the
    # 2.5 % and 97.5 % percentiles are d1 and d2 and the interval contains zero here.
    a = {(0, "x"): 0.2, (0, "y"): 0.9}
    b = {(0, "x"): 0.4, (0, "y"): 0.5}
    diff = paired_difference(a, b, n_boot=4000, seed=3)
    assert diff.mean == pytest.approx(0.1)
    assert diff.ci_low == pytest.approx(-0.2)
    assert diff.ci_high == pytest.approx(0.4)
    assert not diff.excludes_zero


def test_bootstrap_distribution_matches_exact_enumeration():
    # One seed, three slides: 27 equally likely resamples; the bootstrap means' mean is
    # the sample mean and their variance is the plug-in variance / n (hand: 2/3 / 3).
    grid = np.array([[1.0, 2.0, 3.0]])
    means = bootstrap_means(grid, n_boot=40_000, seed=0)
    assert means.mean() == pytest.approx(2.0, abs=0.02)
    assert means.var() == pytest.approx((2.0 / 3.0) / 3.0, rel=0.05)
    assert set(np.round(means * 3).astype(int)) <= set(range(3, 10))  # sums of 3 draws


def test_seeded_and_deterministic():
    rng = np.random.default_rng(1)
    a = {
        (s, t): float(v)
        for (s, t), v in zip(
            [(s, t) for s in range(5) for t in range(6)], rng.random(30), strict=True
        )
    }
    b = {k: v - 0.02 + 0.1 * rng.standard_normal() for k, v in a.items()}
    first = paired_difference(a, b, seed=7)
    assert first == paired_difference(a, b, seed=7)
    assert first.ci_low < first.mean < first.ci_high


def test_no_shared_pair_gives_nan_not_an_error():
    diff = paired_difference({(0, "a"): 1.0}, {(1, "a"): 1.0})
    assert diff.n == 0
    assert math.isnan(diff.mean)
    assert math.isnan(diff.ci_low)


def test_invalid_arguments_are_programming_errors():
    with pytest.raises(ValueError, match="level"):
        paired_difference({(0, "a"): 1.0}, {(0, "a"): 0.0}, level=1.5)
    with pytest.raises(ValueError, match="grid"):
        bootstrap_means(np.zeros((0, 3)))

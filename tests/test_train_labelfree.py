"""Label-free selection (density ratio, IWV, DEV) and alignment measures on toys."""

from __future__ import annotations

import numpy as np
import pytest

from pathda.train.labelfree import (
    density_ratio,
    dev_risk,
    iwv_risk,
    linear_mmd,
    proxy_a_distance,
)


def _shifted_gaussians(n=600, shift=1.5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, (n, 1)), rng.normal(shift, 1.0, (n, 1))


def test_density_ratio_follows_the_known_ratio():
    # N(0,1) vs N(1.5,1): log w(x) = 1.5 x - 1.125 exactly; the estimate is close to it.
    source, target = _shifted_gaussians()
    w = density_ratio(source, target)
    truth = 1.5 * source[:, 0] - 1.125
    assert np.corrcoef(np.log(w), truth)[0, 1] > 0.99
    assert np.median(np.abs(np.log(w) - truth)) < 0.3
    assert w.mean() == pytest.approx(1.0, abs=0.3)


def test_dev_picks_the_checkpoint_that_is_right_on_the_target():
    # Checkpoint A is good where the source lives (x < 0.75), B where the target lives.
    # Source validation prefers A; on target data B is better; DEV and IWV must pick B.
    source, target = _shifted_gaussians(seed=1)
    x_s, x_t = source[:, 0], target[:, 0]

    def loss_a(x):
        return np.where(x < 0.75, 0.1, 1.0)

    def loss_b(x):
        return np.where(x < 0.75, 0.6, 0.2)

    assert loss_a(x_s).mean() < loss_b(x_s).mean()  # source validation picks A
    assert loss_b(x_t).mean() < loss_a(x_t).mean()  # B is right for the target
    w = density_ratio(source, target)
    assert dev_risk(loss_b(x_s), w) < dev_risk(loss_a(x_s), w)
    assert iwv_risk(loss_b(x_s), w) < iwv_risk(loss_a(x_s), w)
    # and the DEV estimate is near the true target risk of each checkpoint
    assert dev_risk(loss_b(x_s), w) == pytest.approx(loss_b(x_t).mean(), abs=0.1)


def test_dev_equals_the_plain_mean_without_shift():
    losses = np.array([0.2, 0.4, 0.9])
    assert dev_risk(losses, np.ones(3)) == pytest.approx(0.5)
    assert iwv_risk(losses, np.array([1.0, 1.0, 2.0])) == pytest.approx((0.2 + 0.4 + 1.8) / 4)


def test_dev_control_variate_by_hand():
    # L = w l = [0, 2, 6], w = [1, 2, 3]: cov(L, w) = 3, var(w) = 1, eta = -3;
    # risk = mean(L) + eta mean(w) - eta = 8/3 - 6 + 3 = -1/3.
    assert dev_risk(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(-1 / 3)


def test_alignment_measures_separate_aligned_from_shifted_features():
    rng = np.random.default_rng(2)
    same_a, same_b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    shifted = rng.normal(size=(300, 8)) + 2.0
    assert proxy_a_distance(same_a, same_b) < 0.3
    assert proxy_a_distance(same_a, shifted) > 1.8
    assert linear_mmd(same_a, same_b) < 0.05 < 0.5 < linear_mmd(same_a, shifted)


def test_bad_inputs_are_programming_errors():
    with pytest.raises(ValueError, match="must match"):
        dev_risk(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="feature sizes"):
        density_ratio(np.ones((5, 2)), np.ones((5, 3)))

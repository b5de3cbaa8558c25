"""Pure stain maths: OD conversion, masked quantiles, the exact two-stain lasso, covariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathda.stain.optical_density import (
    hematoxylin_first,
    masked_quantile,
    normalise_rows,
    od_to_rgb,
    rgb_to_od,
    spans_plane,
    stain_concentrations,
    tissue_covariance,
)

H_E = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])


def test_od_follows_staintools_conventions():
    rgb = torch.tensor([[0, 1, 128, 255]], dtype=torch.uint8).repeat(3, 1).T  # (4, 3)
    od = rgb_to_od(rgb, torch.float64)
    expected = np.maximum(-np.log(np.array([1, 1, 128, 255]) / 255), 1e-6)  # 0 is read as 1
    np.testing.assert_allclose(od[:, 0].numpy(), expected)
    assert torch.isfinite(od).all()
    # Integers round-trip to within one level: 255 * exp(log(v / 255)) lands a rounding error
    # either side of v, so which side it truncates to depends on the CPU's exp.
    back = od_to_rgb(od.clone())[:, 0].numpy().astype(int)
    assert np.abs(back - [1, 1, 128, 255]).max() <= 1


def test_od_to_rgb_truncates_like_staintools():
    # 255 * exp(-OD) chosen well away from integers, so truncation is CPU-independent.
    values = np.array([0.4, 100.7, 127.5, 200.99])
    od = torch.from_numpy(-np.log(values / 255))
    assert od_to_rgb(od).tolist() == [0, 100, 127, 200]
    # White comes back as 254: the OD floor is 1e-6 and 255 * exp(-1e-6) = 254.99974.
    assert od_to_rgb(torch.tensor([1e-6], dtype=torch.float64)).tolist() == [254]


def test_od_to_rgb_clamps_negative_od():
    assert od_to_rgb(torch.tensor([-1.0, 0.0, 50.0])).tolist() == [255, 255, 0]


@pytest.mark.parametrize("q", [0.0, 0.01, 0.3, 0.5, 0.99, 1.0])
def test_masked_quantile_matches_numpy_percentile(q):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 500, 2))
    mask = rng.random((6, 500)) > 0.4
    mask[1] = True
    mask[2, :] = False
    mask[2, 17] = True  # a single valid entry
    got = masked_quantile(torch.from_numpy(values), torch.from_numpy(mask), q).numpy()
    for i in range(6):
        np.testing.assert_allclose(got[i], np.percentile(values[i][mask[i]], 100 * q, axis=0))
    unmasked = masked_quantile(torch.from_numpy(values), None, q).numpy()
    np.testing.assert_allclose(unmasked, np.percentile(values, 100 * q, axis=1))


def test_masked_quantile_of_empty_row_is_nan():
    values = torch.zeros(2, 10)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 3] = True
    assert masked_quantile(values, mask, 0.99).isnan().tolist() == [False, True]


def _lasso_by_enumeration(od: np.ndarray, stains: np.ndarray, lam: float) -> np.ndarray:
    """Brute force: best of the KKT candidates, checked independently of the fast path."""
    gram = stains @ stains.T
    best = np.zeros((len(od), 2))
    best_obj = np.full(len(od), np.inf)

    def objective(c):
        residual = od - c @ stains
        return 0.5 * (residual**2).sum(1) + lam * c.sum(1)

    both = np.linalg.solve(gram, (od @ stains.T - lam).T).T
    candidates = [np.zeros_like(best), both]
    for k in range(2):
        single = np.zeros_like(best)
        single[:, k] = np.maximum(0, (od @ stains[k] - lam) / gram[k, k])
        candidates.append(single)
    for c in candidates:
        feasible = (c >= 0).all(1)
        obj = np.where(feasible, objective(np.maximum(c, 0)), np.inf)
        better = obj < best_obj
        best[better], best_obj[better] = c[better], obj[better]
    return best


@pytest.mark.parametrize("scale", [1.0, 0.6])
def test_two_stain_lasso_is_exact(scale):
    rng = np.random.default_rng(1)
    stains = H_E / np.linalg.norm(H_E, axis=1, keepdims=True) * np.array([[1.0], [scale]])
    conc = rng.gamma(1.0, 0.5, (4000, 2)) * (rng.random((4000, 2)) > 0.3)
    od = conc @ stains + rng.normal(0, 0.05, (4000, 3))
    got = stain_concentrations(torch.from_numpy(od)[None], torch.from_numpy(stains), 0.01)
    np.testing.assert_allclose(got[0].numpy(), _lasso_by_enumeration(od, stains, 0.01), atol=1e-9)
    assert (got >= 0).all()


def test_two_stain_lasso_matches_spams():
    spams = pytest.importorskip("spams")
    rng = np.random.default_rng(2)
    stains = normalise_rows(torch.from_numpy(H_E)).numpy()
    od = np.abs(rng.normal(0.4, 0.4, (3000, 3)))
    expected = spams.lasso(
        X=np.asfortranarray(od.T), D=np.asfortranarray(stains.T), mode=2, lambda1=0.01, pos=True
    )
    got = stain_concentrations(torch.from_numpy(od)[None], torch.from_numpy(stains), 0.01)
    np.testing.assert_allclose(got[0].numpy(), expected.toarray().T, atol=1e-7)


def test_covariance_matches_numpy_on_masked_pixels():
    rng = np.random.default_rng(3)
    od = rng.random((2, 300, 3))
    mask = rng.random((2, 300)) > 0.5
    cov = tissue_covariance(torch.from_numpy(od), torch.from_numpy(mask)).numpy()
    for i in range(2):
        np.testing.assert_allclose(cov[i], np.cov(od[i][mask[i]], rowvar=False), atol=1e-12)


def test_spans_plane_separates_one_stain_from_two():
    rng = np.random.default_rng(4)
    two = rng.random((500, 2)) @ H_E
    one = rng.random((500, 1)) * H_E[1] + rng.normal(0, 1e-4, (500, 3))
    od = torch.from_numpy(np.stack([two, one, np.zeros((500, 3))]))
    cov = tissue_covariance(od, torch.ones(3, 500, dtype=torch.bool))
    assert spans_plane(torch.linalg.eigvalsh(cov)).tolist() == [True, False, False]


def test_hematoxylin_first_orders_by_red_od():
    stains = torch.from_numpy(H_E)
    assert torch.equal(hematoxylin_first(stains.flip(0)[None])[0], stains)
    assert torch.equal(hematoxylin_first(stains[None])[0], stains)

"""Paired comparison of two arms: differences paired by (seed, test slide), bootstrap CI.

Two arms of the benchmark are scored on the same test slides with the same seeds, so the
fair comparison is the difference on each (seed, slide) pair. Its uncertainty comes from
two sources: which slides were drawn and which seeds (initialisation, data order). The
bootstrap therefore resamples seeds and slides independently (a two-way cluster
bootstrap) and takes the mean over all pairs of the drawn seeds and slides; with a single
seed (or a single slide) it reduces to the ordinary bootstrap over the other factor.
The interval is the percentile interval of the bootstrap means.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

PairKey = tuple[Hashable, Hashable]
"""(seed, test slide)."""


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over the shared (seed, slide) pairs, with a bootstrap CI.

    Attributes:
        mean: mean paired difference (NaN when no pair is shared).
        ci_low, ci_high: percentile bootstrap interval of the mean at ``level``.
        n: number of (seed, slide) pairs both arms have.
        n_seeds, n_slides: distinct seeds and slides among those pairs.
        level: coverage of the interval (0.95).
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    n_seeds: int
    n_slides: int
    level: float = 0.95

    def to_dict(self) -> dict[str, float | int]:
        return {
            "mean": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n": self.n,
            "n_seeds": self.n_seeds,
            "n_slides": self.n_slides,
        }

    @property
    def excludes_zero(self) -> bool:
        """The interval lies entirely above or entirely below zero."""
        return self.ci_low > 0 or self.ci_high < 0


def difference_grid(
    a: Mapping[PairKey, float], b: Mapping[PairKey, float]
) -> tuple[np.ndarray, list[Hashable], list[Hashable]]:
    """``a - b`` on a seeds x slides grid (float64, NaN where a pair is missing in either).

    Returns:
        ``(grid, seeds, slides)``; rows follow ``seeds``, columns ``slides`` (both sorted).
    """
    shared = sorted(set(a) & set(b), key=repr)
    seeds = sorted({k[0] for k in shared}, key=repr)
    slides = sorted({k[1] for k in shared}, key=repr)
    grid = np.full((len(seeds), len(slides)), np.nan, dtype=np.float64)
    row = {s: i for i, s in enumerate(seeds)}
    col = {s: j for j, s in enumerate(slides)}
    for key in shared:
        grid[row[key[0]], col[key[1]]] = float(a[key]) - float(b[key])
    return grid, seeds, slides


def bootstrap_means(grid: np.ndarray, n_boot: int = 10_000, seed: int = 0) -> np.ndarray:
    """Means of ``n_boot`` two-way bootstrap resamples of a seeds x slides grid.

    Each resample draws rows (seeds) and columns (slides) with replacement, independently,
    and averages the finite cells of the drawn sub-grid (a resample with none is NaN).
    """
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"need a non-empty 2-D seeds x slides grid, got shape {grid.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n_rows, n_cols = grid.shape
    rows = rng.integers(0, n_rows, size=(n_boot, n_rows))
    cols = rng.integers(0, n_cols, size=(n_boot, n_cols))
    finite = np.isfinite(grid)
    values = np.where(finite, grid, 0.0)
    # Sum over the drawn sub-grid = r^T V c with r, c the draw counts per row / column.
    row_counts = np.zeros((n_boot, n_rows))
    col_counts = np.zeros((n_boot, n_cols))
    np.add.at(row_counts, (np.arange(n_boot)[:, None], rows), 1.0)
    np.add.at(col_counts, (np.arange(n_boot)[:, None], cols), 1.0)
    totals = np.einsum("bi,ij,bj->b", row_counts, values, col_counts)
    counts = np.einsum("bi,ij,bj->b", row_counts, finite.astype(np.float64), col_counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.where(counts > 0, counts, 1.0), np.nan)


def paired_difference(
    a: Mapping[PairKey, float],
    b: Mapping[PairKey, float],
    *,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Mean ``a - b`` over shared (seed, slide) pairs with a seeded percentile bootstrap CI.

    Args:
        a, b: score per (seed, test slide), e.g. BACH of each arm.
        n_boot: bootstrap resamples.
        level: interval coverage, e.g. 0.95 for the 2.5 % and 97.5 % percentiles.
        seed: seed of the resampling (the same inputs always give the same interval).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    grid, seeds, slides = difference_grid(a, b)
    n = int(np.isfinite(grid).sum())
    if n == 0:
        nan = float("nan")
        return PairedDifference(nan, nan, nan, 0, 0, 0, level)
    means = bootstrap_means(grid, n_boot=n_boot, seed=seed)
    means = means[np.isfinite(means)]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return PairedDifference(
        mean=float(np.nanmean(grid)),
        ci_low=float(low),
        ci_high=float(high),
        n=n,
        n_seeds=len(seeds),
        n_slides=len(slides),
        level=level,
    )

"""Pure grid geometry, tissue fractions and label rules."""

from __future__ import annotations

import numpy as np
import pytest

from pathda.errors import ConfigError
from pathda.tiling.grid import (
    REJECTED,
    block_cells_for,
    block_order,
    block_starts,
    centre_labels,
    majority_labels,
    make_grid,
    patch_labels,
    tissue_fractions,
)


def test_grid_in_level0_pixels_at_another_mpp():
    # 0.25 µm/px slide, patches of 64 px at 1.0 µm/px: 4 level-0 px per target px.
    grid = make_grid((1000, 600), slide_mpp=0.25, target_mpp=1.0, patch_size=64, stride=32)
    assert grid.downsample == 4.0
    assert grid.footprint == 256.0
    # Target size 250 x 150 px: columns at 0, 32, ..., 160 (+64 <= 250), rows 0, 32, 64.
    assert (grid.cols, grid.rows) == (6, 3)
    x, y = grid.origins(np.array([0, 2]), np.array([5, 1]))
    np.testing.assert_array_equal(x, [640, 128])
    np.testing.assert_array_equal(y, [0, 256])


def test_grid_rounds_non_integer_downsample_and_keeps_last_cell():
    grid = make_grid((1101, 1101), slide_mpp=0.2271, target_mpp=1.868, patch_size=32, stride=32)
    assert grid.downsample == pytest.approx(8.2254, rel=1e-4)
    assert grid.cols == 4  # 1101 / 8.2254 = 133.9 px -> 4 patches of 32
    x, _ = grid.origins(np.zeros(4), np.arange(4))
    np.testing.assert_array_equal(x, np.rint(np.arange(4) * 32 * grid.downsample))
    assert x[-1] + grid.footprint <= 1101
    exact = make_grid(
        (1868, 1868), slide_mpp=0.467, target_mpp=4 * 0.467, patch_size=467, stride=467
    )
    assert exact.cols == 1  # float noise in 4 * 0.467 / 0.467 must not lose the cell


def test_grid_too_small_and_bad_values():
    assert make_grid((100, 100), 1.0, 1.0, 128, 128).cols == 0
    with pytest.raises(ConfigError):
        make_grid((100, 100), 1.0, 1.0, 0, 1)
    with pytest.raises(ConfigError):
        make_grid((100, 100), 0.0, 1.0, 8, 8)


def test_tissue_fractions_from_mask():
    mask = np.zeros((10, 10), bool)
    mask[:, :5] = True  # left half tissue; mask pixel = 8 level-0 px
    x = np.array([0, 16, 24, 40])
    frac = tissue_fractions(mask, 8.0, x, np.zeros(4), footprint=32)
    np.testing.assert_allclose(frac, [1.0, 0.75, 0.5, 0.0])
    assert frac.dtype == np.float32


def test_centre_rule():
    labels = np.zeros((4, 4), np.uint8)
    labels[1, 2] = 3  # raster px 10 level-0 px
    out = centre_labels(labels, 10.0, np.array([0, 10, 20]), np.array([0, 0, 0]), footprint=30)
    # centres at x = 15, 25, 35 (y = 15): raster columns 1, 2, 3 of row 1
    np.testing.assert_array_equal(out, [0, 3, 0])


def test_majority_rule_and_min_fraction():
    labels = np.zeros((4, 8), np.uint8)
    labels[:, 4:7] = 2  # patch 2 (cols 4..7): 3/4 in situ
    labels[:2, 0:4] = 1  # patch 1 (cols 0..3): half benign, half normal: tie -> lower id
    x, y = np.array([0, 4]), np.array([0, 0])
    np.testing.assert_array_equal(majority_labels(labels, 1.0, x, y, 4, 4, 0.5), [0, 2])
    np.testing.assert_array_equal(majority_labels(labels, 1.0, x, y, 4, 4, 0.8), [REJECTED] * 2)
    np.testing.assert_array_equal(
        patch_labels(labels, 1.0, x, y, 4, "majority", 4, 0.7), [REJECTED, 2]
    )
    with pytest.raises(ConfigError, match="label rule"):
        patch_labels(labels, 1.0, x, y, 4, "mode", 4)


def test_block_order_groups_cells_into_blocks():
    rows, cols = (a.ravel() for a in np.mgrid[0:4, 0:4])
    order = block_order(rows, cols, 2)
    first = list(zip(rows[order][:4], cols[order][:4], strict=True))
    assert first == [(0, 0), (0, 1), (1, 0), (1, 1)]
    np.testing.assert_array_equal(block_starts(rows[order], cols[order], 2), [0, 4, 8, 12, 16])
    np.testing.assert_array_equal(block_starts(rows[:0], cols[:0], 2), [0])


def test_block_cells_bounded_by_size_and_memory():
    assert block_cells_for(64, 64, 2048, 32 * 2**20) == 32
    assert block_cells_for(256, 64, 2048, 32 * 2**20) == 13  # 169 patches of 192 KiB <= 32 MiB
    assert block_cells_for(4096, 4096, 2048, 1) == 1

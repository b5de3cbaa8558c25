"""Sliding-window geometry, blending windows and overlap averaging (pure, no slides)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr

from pathda.errors import ConfigError
from pathda.segment import grid
from pathda.segment.stitch import ProbabilityStitcher, ZarrProbabilityWriter


@pytest.mark.parametrize(
    ("size", "patch", "stride"),
    [((600, 500), 64.0, 32.0), ((97, 31), 37.36, 18.68), ((10, 10), 64.0, 64.0)],
)
def test_origins_cover_every_pixel_row_major(size, patch, stride):
    origins = grid.patch_origins(size, patch, stride)
    covered = np.zeros(size[::-1], bool)
    for x, y in origins:
        covered[y : math.ceil(y + patch), x : math.ceil(x + patch)] = True
    assert covered.all()
    order = np.lexsort((origins[:, 0], origins[:, 1]))
    assert np.array_equal(order, np.arange(len(origins)))
    # no patch starts beyond the slide, and steps never exceed the stride (+ rounding)
    assert (origins < np.array(size)).all()
    xs = np.unique(origins[:, 0])
    assert np.all(np.diff(xs) <= math.ceil(stride))


def test_stride_larger_than_patch_is_rejected():
    with pytest.raises(ConfigError, match="stride"):
        grid.patch_origins((100, 100), 32, 33)


def test_windows_positive_symmetric_peaked():
    u = (np.arange(16) + 0.5) / 16
    gauss = grid.get_window("gaussian")(u)
    assert (gauss > 0).all()
    np.testing.assert_allclose(gauss, gauss[::-1])
    assert gauss.argmax() in (7, 8)
    assert gauss[0] == pytest.approx(math.exp(-0.5 * (0.5 - 1 / 32) ** 2 / 0.25**2))
    np.testing.assert_array_equal(grid.get_window("uniform")(u), 1.0)
    with pytest.raises(ConfigError, match="gaussian, uniform"):
        grid.get_window("hann")


def test_footprint_weights_pick_cells_whose_centres_are_inside():
    uniform = grid.get_window("uniform")
    # cells of 10 px: centres 5, 15, 25, ...; a patch over [12, 40) holds centres 15, 25, 35
    first, w = grid.footprint_weights(12, 28, 10, 100, uniform)
    assert (first, len(w)) == (1, 3)
    # cut at the end of the axis
    first, w = grid.footprint_weights(12, 28, 10, 3, uniform)
    assert (first, len(w)) == (1, 2)
    first, w = grid.footprint_weights(12, 2, 10, 100, uniform)  # no centre inside
    assert len(w) == 0


def test_default_mask_downsample_and_shape():
    assert grid.default_mask_downsample(448.0) == 112
    assert grid.default_mask_downsample(2.0) == 1
    assert grid.mask_shape((1000, 801), 16) == (51, 63)


def test_resample_nearest_samples_cell_centres():
    src = np.arange(16).reshape(4, 4)
    out = grid.resample_nearest(src, 10.0, (2, 2), 20.0)  # centres at 10, 30 -> src 1, 3
    np.testing.assert_array_equal(out, src[np.ix_([1, 3], [1, 3])])


def _run_stitcher(shape, ds, patch, stride, probs_of, window="gaussian", tissue=None):
    size = (shape[1] * ds, shape[0] * ds)
    origins = grid.patch_origins(size, patch, stride)
    probs = np.stack([probs_of(i, o) for i, o in enumerate(origins)]).astype(np.float32)
    tissue = np.ones(shape, bool) if tissue is None else tissue
    rows = {}
    stitcher = ProbabilityStitcher(
        shape,
        probs.shape[1],
        ds,
        patch,
        grid.get_window(window),
        tissue,
        sink=lambda r, m: rows.update({r + i: m[:, i].copy() for i in range(m.shape[1])}),
    )
    for start in range(0, len(origins), 7):  # uneven batches
        stitcher.add(origins[start : start + 7], probs[start : start + 7])
    labels = stitcher.finish()
    mean = np.stack([rows[r] for r in range(shape[0])], axis=1)
    return origins, probs, labels, mean, stitcher


@pytest.mark.parametrize("window", ["gaussian", "uniform"])
def test_overlap_averaging_of_constant_patches_gives_the_constant(window):
    p = np.array([0.1, 0.2, 0.3, 0.4])
    _, _, labels, mean, stitcher = _run_stitcher(
        (23, 31), 7, 37.4, 18.7, lambda i, o: p, window=window
    )
    assert stitcher.covered.all()
    np.testing.assert_allclose(mean, np.broadcast_to(p[:, None, None], mean.shape), rtol=1e-5)
    assert (labels == 3).all()


def test_band_stitching_equals_full_grid_accumulation():
    rng = np.random.default_rng(0)
    shape, ds, patch, stride = (41, 13), 5, 33.3, 11.1
    raw = rng.dirichlet(np.ones(4), size=1000)
    origins, probs, labels, mean, _ = _run_stitcher(
        shape, ds, patch, stride, lambda i, o: raw[i], window="gaussian"
    )
    # reference: the whole accumulator in memory at once
    win = grid.get_window("gaussian")
    sums = np.zeros((4, *shape))
    weights = np.zeros(shape)
    for (x, y), p in zip(origins, probs, strict=True):
        r0, wy = grid.footprint_weights(y, patch, ds, shape[0], win)
        c0, wx = grid.footprint_weights(x, patch, ds, shape[1], win)
        w2 = np.outer(wy, wx)
        weights[r0 : r0 + len(wy), c0 : c0 + len(wx)] += w2
        sums[:, r0 : r0 + len(wy), c0 : c0 + len(wx)] += p[:, None, None] * w2
    expected = sums / weights
    np.testing.assert_allclose(mean, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(labels, expected.argmax(0))


def test_non_tissue_and_uncovered_cells_are_normal():
    tissue = np.ones((20, 20), bool)
    tissue[:, :5] = False
    shape, ds = (20, 20), 4
    # only patches in the lower half exist (as if the upper half had no tissue)
    stitcher = ProbabilityStitcher(shape, 4, ds, 16, grid.get_window("uniform"), tissue)
    origins = grid.patch_origins((80, 80), 16, 8)
    lower = origins[origins[:, 1] >= 40]
    stitcher.add(lower, np.tile([0, 0, 1.0, 0], (len(lower), 1)))
    labels = stitcher.finish()
    assert (labels[:10] == 0).all()
    assert not stitcher.covered[:10].any()
    assert (labels[10:, :5] == 0).all()
    assert (labels[10:, 5:] == 2).all()


def test_zarr_writer_stores_each_row_once(tmp_path):
    shape = (300, 20)
    writer = ZarrProbabilityWriter(tmp_path / "p.zarr", 2, shape, {"k": 1})
    rng = np.random.default_rng(1)
    full = rng.random((2, *shape)).astype(np.float32)
    for r in range(0, 280, 3):  # leave the last rows unwritten (uncovered)
        writer(r, full[:, r : r + 3])
    writer.flush()
    stored = zarr.open_array(tmp_path / "p.zarr", mode="r")
    assert stored.dtype == np.float16
    assert stored.attrs["k"] == 1
    np.testing.assert_allclose(stored[:, :282], full[:, :282], atol=1e-3)
    assert (stored[:, 282:] == 0).all()

"""Pure parts of pathda.synth: layout geometry, deterministic noise, pyramid writer."""

from __future__ import annotations

import numpy as np
import openslide
import pytest
import tifffile
from shapely.geometry import Polygon

from pathda.errors import ConfigError
from pathda.synth import make_layout
from pathda.synth.layout import VERTEX_GRID, blob_ring
from pathda.synth.noise import cell_distances, hash_uniform, noise_grid, noise_points, pixel_noise
from pathda.synth.writer import block_mean, pyramid_dimensions, write_pyramid_tiff


@pytest.mark.parametrize(
    ("size", "seed"), [((1024, 1024), 0), ((2048, 1536), 1), ((4000, 2000), 2)]
)
def test_layout_geometry(size, seed) -> None:
    layout = make_layout(size, 0.467, seed)
    w, h = size
    tissue = [Polygon(a.exterior, a.holes) for a in layout.tissue]
    area = sum(p.area for p in tissue)
    assert 0.55 < area / (w * h) < 0.85
    lesions = [Polygon(a.exterior) for a in layout.lesions]
    assert {a.label for a in layout.lesions} == {
        "Benign",
        "Carcinoma in situ",
        "Carcinoma invasive",
    }
    for i, p in enumerate(lesions):
        assert p.is_valid
        assert any(t.contains(p) for t in tissue)
        assert all(not p.intersects(q) for q in lesions[i + 1 :])
    for a in (*layout.tissue, *layout.lesions):
        assert np.all(np.mod(a.exterior, VERTEX_GRID) == 0)
        assert a.exterior.min() >= 0
        assert a.exterior[:, 0].max() <= w
        assert a.exterior[:, 1].max() <= h


def test_layout_is_deterministic() -> None:
    a, b = make_layout((1500, 1200), 0.5, 7), make_layout((1500, 1200), 0.5, 7)
    assert all(x.same_geometry(y) for x, y in zip(a.lesions, b.lesions, strict=True))
    c = make_layout((1500, 1200), 0.5, 8)
    assert [x.exterior.tolist() for x in a.lesions] != [x.exterior.tolist() for x in c.lesions]


def test_lesion_sizes_follow_mpp() -> None:
    # Same pixel size at double the µm/px: lesions (set in µm) shrink in pixels.
    fine = make_layout((8000, 8000), 0.25, 3)
    coarse = make_layout((8000, 8000), 1.0, 3)
    med = [np.median([Polygon(a.exterior).area for a in lay.lesions]) for lay in (fine, coarse)]
    assert med[0] > 2 * med[1]


def test_blob_ring_without_harmonics_is_ellipse() -> None:
    ring = blob_ring((10.0, 20.0), (5.0, 2.0), 0.0, np.zeros(0), np.zeros(0), 64)
    assert np.allclose(((ring[:, 0] - 10) / 5) ** 2 + ((ring[:, 1] - 20) / 2) ** 2, 1.0)


def test_hash_uniform_is_deterministic_and_uniform() -> None:
    keys = np.arange(100_000)
    u = hash_uniform(1, 2, keys)
    np.testing.assert_array_equal(u, hash_uniform(1, 2, keys))
    assert u.min() >= 0
    assert u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01
    assert not np.array_equal(u, hash_uniform(1, 3, keys))


def test_noise_is_a_function_of_global_coordinates() -> None:
    big = noise_grid(100, 200, 300, 250, 17.0, 4, 9)
    small = noise_grid(150, 260, 40, 30, 17.0, 4, 9)
    np.testing.assert_array_equal(big[60:90, 50:90], small)
    assert big.min() >= 0
    assert big.max() <= 1
    ys, xs = np.mgrid[0:250, 0:300]
    np.testing.assert_allclose(noise_points(xs + 100, ys + 200, 17.0, 4, 9), big, atol=1e-5)
    n1 = pixel_noise(0, 0, 64, 64, 1, 2, channels=3)
    np.testing.assert_array_equal(n1[:, 10:20, 5:9], pixel_noise(5, 10, 4, 10, 1, 2, channels=3))
    assert abs(n1.std() - 1) < 0.1


def test_cell_distances_are_seamless() -> None:
    f1, f2, _, _ = cell_distances(0, 0, 200, 160, 40.0, 3, 1)
    g1, g2, _, _ = cell_distances(70, 30, 50, 60, 40.0, 3, 1)
    np.testing.assert_array_equal(f1[30:90, 70:120], g1)
    np.testing.assert_array_equal(f2[30:90, 70:120], g2)
    assert np.all(f2 >= f1)
    assert f1.max() < 2 * 40.0


def test_pyramid_dimensions() -> None:
    assert pyramid_dimensions((1024, 800)) == [(1024, 800)]
    assert pyramid_dimensions((2048, 2048)) == [(2048, 2048), (512, 512)]
    assert pyramid_dimensions((50000, 50000))[-1] == (782, 782)


def test_block_mean() -> None:
    img = np.arange(4 * 8 * 3, dtype=np.uint8).reshape(4, 8, 3)
    expected = img.reshape(1, 4, 2, 4, 3).astype(float).mean((1, 3))
    np.testing.assert_array_equal(block_mean(img, 4), np.floor(expected + 0.5).astype(np.uint8))


def test_writer_levels_and_pixels(tmp_path) -> None:
    def render(x0, y0, w, h):
        ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w]
        r = 128 + 100 * np.sin(xs / 40.0)
        g = 128 + 100 * np.cos(ys / 55.0)
        return np.stack([r, g, np.full_like(r, 180)], -1).astype(np.uint8)

    path = tmp_path / "p.tiff"
    dims = write_pyramid_tiff(path, (1100, 1300), render, 0.25, tile_size=256, quality=95)
    assert dims == [(1100, 1300), (275, 325)]
    with openslide.OpenSlide(str(path)) as osr:
        assert osr.level_dimensions == tuple(dims)
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.25, abs=1e-3)
    level0 = tifffile.imread(path)
    assert np.abs(level0.astype(int) - render(0, 0, 1100, 1300)).mean() < 3
    with tifffile.TiffFile(path) as tif:
        low = tif.series[0].levels[1].asarray()
    ref = block_mean(render(0, 0, 1104, 1300), 4)[:, :275]
    assert np.abs(low.astype(int) - ref).mean() < 3


def test_writer_rejects_bad_tile_size(tmp_path) -> None:
    with pytest.raises(ConfigError):
        write_pyramid_tiff(tmp_path / "x.tiff", (64, 64), lambda *a: None, 0.5, tile_size=100)

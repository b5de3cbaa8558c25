"""ArraySlide and the shared pixel helpers: exact pixels, pyramids, resampling, padding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pathda.errors import MppUnknownError
from pathda.slide import ArraySlide
from pathda.slide.array_backend import composite_over_white, crop_padded


def _random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_levels_are_box_reductions_with_ceil_sizes():
    array = _random_rgb(50, 70)
    slide = ArraySlide(array, mpp=0.5, downsamples=(1, 2, 4))
    assert slide.level_count == 3
    assert slide.level_dimensions == ((70, 50), (35, 25), (18, 13))
    assert slide.level_downsamples == (1.0, 2.0, 4.0)
    expected = np.asarray(Image.fromarray(array).reduce(4))
    np.testing.assert_array_equal(slide.read_region((0, 0), 2, (18, 13)), expected)


def test_read_region_level0_is_exact_crop():
    array = _random_rgb(40, 60)
    slide = ArraySlide(array)
    np.testing.assert_array_equal(slide.read_region((7, 11), 0, (20, 15)), array[11:26, 7:27])


def test_read_region_location_is_level0_pixels():
    array = _random_rgb(64, 64)
    slide = ArraySlide(array, downsamples=(1, 2))
    level1 = np.asarray(Image.fromarray(array).reduce(2))
    # Level-0 (20, 10) is level-1 (10, 5).
    np.testing.assert_array_equal(slide.read_region((20, 10), 1, (8, 6)), level1[5:11, 10:18])


def test_out_of_bounds_reads_are_white():
    array = np.zeros((20, 30, 3), np.uint8)
    slide = ArraySlide(array)
    region = slide.read_region((-5, -4), 0, (40, 30))
    assert region.shape == (30, 40, 3)
    assert (region[:4] == 255).all()
    assert (region[:, :5] == 255).all()
    assert (region[4:24, 5:35] == 0).all()
    assert (region[24:] == 255).all()
    assert (region[:, 35:] == 255).all()
    assert (slide.read_region((100, 100), 0, (5, 5)) == 255).all()


def test_read_at_mpp_averages_a_gradient():
    # Red = x: a 4x coarser read must return the mean of each 4-pixel run.
    x = np.arange(256, dtype=np.uint8)
    array = np.zeros((32, 256, 3), np.uint8)
    array[..., 0] = x[None, :]
    expected = np.arange(64) * 4 + 1.5
    for downsamples in ((1,), (1, 2, 4)):  # resized from level 0, or read from level 2
        slide = ArraySlide(array, mpp=0.5, downsamples=downsamples)
        out = slide.read_at_mpp((0, 0), (64, 8), mpp=2.0)
        assert out.shape == (8, 64, 3)
        assert np.abs(out[0, :, 0] - expected).max() <= 1.0


def test_read_at_mpp_area_averages_a_checkerboard():
    yy, xx = np.mgrid[:64, :64]
    board = np.where((yy + xx) % 2 == 0, 255, 0).astype(np.uint8)
    slide = ArraySlide(np.repeat(board[..., None], 3, axis=2), mpp=0.25)
    out = slide.read_at_mpp((0, 0), (32, 32), mpp=0.5)
    # Nearest-neighbour would give pure 0 or 255; area averaging gives mid grey.
    assert np.abs(out.astype(int) - 127).max() <= 1


def test_read_at_mpp_upsamples_when_finer_than_level0():
    array = _random_rgb(16, 16)
    slide = ArraySlide(array, mpp=1.0)
    out = slide.read_at_mpp((0, 0), (32, 32), mpp=0.5)
    assert out.shape == (32, 32, 3)
    assert abs(float(out.mean()) - float(array.mean())) < 3


def test_thumbnail_sizes():
    slide = ArraySlide(_random_rgb(100, 200), mpp=0.5, downsamples=(1, 2, 4))
    assert slide.thumbnail(mpp=2.0).shape == (25, 50, 3)
    assert slide.thumbnail(max_size=40).shape == (20, 40, 3)
    with pytest.raises(ValueError, match="exactly one"):
        slide.thumbnail()


def test_mpp_unknown_and_override():
    slide = ArraySlide(_random_rgb(8, 8))
    assert slide.mpp is None
    with pytest.raises(MppUnknownError, match="`slide_mpp`"):
        slide.read_at_mpp((0, 0), (4, 4), mpp=1.0)
    slide.set_mpp(0.25)
    assert slide.require_mpp() == 0.25


def test_rgba_input_is_composited_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2, :, 3] = 255  # top half opaque black, bottom half transparent
    region = ArraySlide(rgba).read_region((0, 0), 0, (4, 4))
    assert (region[:2] == 0).all()
    assert (region[2:] == 255).all()


@pytest.mark.parametrize(
    ("array", "downsamples", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), (1,), "uint8"),
        (np.zeros((4, 4), np.uint8), (1,), "uint8"),
        (np.zeros((4, 4, 3), np.uint8), (2, 4), "start at 1"),
        (np.zeros((4, 4, 3), np.uint8), (1, 4, 2), "increase"),
    ],
)
def test_rejects_bad_input(array, downsamples, message):
    with pytest.raises(ValueError, match=message):
        ArraySlide(array, downsamples=downsamples)


def test_composite_straight_and_premultiplied_alpha():
    pixel = np.array([[[200, 100, 0, 128]]], np.uint8)
    straight = composite_over_white(pixel)[0, 0]
    # 200*128/255 + 255*127/255 = 227.4; 100 -> 177.2; 0 -> 127
    np.testing.assert_array_equal(straight, [227, 177, 127])
    premultiplied = composite_over_white(np.array([[[100, 50, 0, 128]]], np.uint8), True)[0, 0]
    np.testing.assert_array_equal(premultiplied, [227, 177, 127])


def test_crop_padded_handles_every_side():
    image = np.arange(3 * 3 * 3, dtype=np.uint8).reshape(3, 3, 3)
    out = crop_padded(image, -1, 1, 5, 3)
    assert out.shape == (3, 5, 3)
    np.testing.assert_array_equal(out[:2, 1:4], image[1:3])
    assert (out[:, 0] == 255).all()
    assert (out[:, 4] == 255).all()
    assert (out[2] == 255).all()

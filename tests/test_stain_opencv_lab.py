"""The torch 8-bit LAB conversions are bit-exact with OpenCV's (which staintools uses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathda.stain.opencv_lab import (
    lab_u8_to_rgb,
    lightness_below,
    lightness_u8,
    rgb_to_lab_u8,
    tissue_mask,
)

cv2 = pytest.importorskip("cv2")


def _colours(n: int, seed: int) -> np.ndarray:
    """``n`` random uint8 triples plus the grey ramp and the cube's corners, as an image."""
    rng = np.random.default_rng(seed)
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    corners = np.array(np.meshgrid([0, 255], [0, 255], [0, 255])).reshape(3, -1).T
    colours = np.concatenate([rng.integers(0, 256, (n, 3)), grey, corners]).astype(np.uint8)
    return colours[None]  # (1, M, 3) image for cv2


def _all_colours() -> np.ndarray:
    code = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(code >> 16) & 255, (code >> 8) & 255, code & 255], axis=-1)
    return rgb.astype(np.uint8).reshape(4096, 4096, 3)


def test_rgb_to_lab_matches_opencv():
    rgb = _colours(200_000, seed=0)
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    np.testing.assert_array_equal(rgb_to_lab_u8(torch.from_numpy(rgb)).numpy(), expected)
    np.testing.assert_array_equal(lightness_u8(torch.from_numpy(rgb)).numpy(), expected[..., 0])


def test_lab_to_rgb_matches_opencv():
    lab = _colours(200_000, seed=1)  # any uint8 triple is a valid 8-bit LAB input
    expected = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    np.testing.assert_array_equal(lab_u8_to_rgb(torch.from_numpy(lab)).numpy(), expected)


@pytest.mark.parametrize("threshold", [0.8, 0.5, 0.95, 1.0, 0.0])
def test_tissue_mask_is_staintools_luminosity_rule(threshold):
    rgb = _colours(100_000, seed=2)
    lightness = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0]
    expected = lightness / 255.0 < threshold
    np.testing.assert_array_equal(tissue_mask(torch.from_numpy(rgb), threshold).numpy(), expected)
    got = lightness_below(torch.from_numpy(lightness.astype(np.int32)), threshold).numpy()
    np.testing.assert_array_equal(got, expected)


def test_conversions_keep_leading_shape():
    rgb = torch.from_numpy(_colours(60, seed=3)[0, :60].reshape(2, 5, 2, 3, 3))
    assert rgb_to_lab_u8(rgb).shape == rgb.shape
    assert lab_u8_to_rgb(rgb).shape == rgb.shape
    assert tissue_mask(rgb, 0.8).shape == rgb.shape[:-1]


@pytest.mark.slow
def test_every_colour_matches_opencv():
    rgb = _all_colours()
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    assert torch.equal(rgb_to_lab_u8(torch.from_numpy(rgb)), torch.from_numpy(lab))
    back = cv2.cvtColor(rgb, cv2.COLOR_LAB2RGB)
    assert torch.equal(lab_u8_to_rgb(torch.from_numpy(rgb)), torch.from_numpy(back))

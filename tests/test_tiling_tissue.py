"""Tissue detection on synthetic thumbnails and a real H&E crop."""

from __future__ import annotations

import numpy as np
import pytest

from pathda.errors import ConfigError
from pathda.tissue import TissueParams, detect_tissue


def _thumbnail(seed=0):
    """200 x 300 px at 8 µm/px: glass, a big pink blob, a 2 px speck and a hole in the blob."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(238, 4, (200, 300, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:200, 0:300]
    blob = (xx - 120) ** 2 + (yy - 100) ** 2 < 60**2
    pale_hole = (xx - 120) ** 2 + (yy - 100) ** 2 < 4**2
    img[blob & ~pale_hole] = np.clip(rng.normal((205, 120, 175), 15, (3,)), 0, 255)
    img[20:22, 260:262] = (150, 60, 130)  # dust-sized stained speck
    return img, blob


@pytest.mark.parametrize("method", ["otsu-saturation", "otsu-od"])
def test_detects_blob_fills_hole_drops_speck(method):
    img, blob = _thumbnail()
    mask = detect_tissue(img, TissueParams(method=method), mpp=8.0)
    assert mask.dtype == bool
    assert mask[100, 120]  # hole of 4 px radius (~3200 µm²) filled
    assert not mask[21, 261]  # speck of 4 px = 256 µm² removed
    agreement = (mask == blob).mean()
    assert agreement > 0.99


def test_blank_glass_gives_empty_mask():
    rng = np.random.default_rng(1)
    glass = np.clip(rng.normal(240, 3, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert not detect_tissue(glass, mpp=8.0).any()
    assert not detect_tissue(np.full((8, 8, 3), 255, np.uint8)).any()


def test_mostly_tissue_is_not_split_by_otsu(fixtures_dir):
    from pathda.slide import open_slide

    with open_slide(fixtures_dir / "he" / "OS-1-detail.ome.tif") as slide:
        thumb = slide.thumbnail(mpp=2.0)
    mask = detect_tissue(thumb, TissueParams(), mpp=2.0)
    assert mask.mean() > 0.95  # dense tumour crop: nearly all tissue


def test_params_validated():
    with pytest.raises(ConfigError, match=r"unknown `tissue.method` .magic."):
        TissueParams(method="magic")
    with pytest.raises(ValueError, match="RGB"):
        detect_tissue(np.zeros((4, 4), np.uint8))

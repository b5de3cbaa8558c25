"""Quick-look PNG: the slide thumbnail with predicted classes blended in their colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pathda.annotations import ClassMap
from pathda.segment.grid import resample_nearest

OVERLAY_MAX_SIDE = 2048
"""Pixels on the long side of the overlay PNG (less for slides smaller than that)."""

OVERLAY_ALPHA = 0.45
"""Weight of the class colour over the tissue where a non-normal class is predicted."""


def blend_labels(
    thumbnail: np.ndarray,
    labels: np.ndarray,
    class_map: ClassMap,
    *,
    alpha: float = OVERLAY_ALPHA,
    include_normal: bool = False,
) -> np.ndarray:
    """Blend class colours into a thumbnail of the same field of view.

    Args:
        thumbnail: (h, w, 3) uint8 RGB covering the whole slide.
        labels: (H, W) uint8 class ids covering the same slide, any resolution.
        class_map: colours per class id.
        alpha: colour weight in [0, 1].
        include_normal: also tint class 0.

    Returns:
        (h, w, 3) uint8 RGB.
    """
    h, w = thumbnail.shape[:2]
    # Both grids span the whole slide: sample labels at thumbnail pixel centres.
    sampled = resample_nearest(labels, 1.0, (h, w), labels.shape[1] / w)
    colors = np.asarray(class_map.colors, dtype=np.float32)[sampled]
    tint = sampled > (-1 if include_normal else 0)
    out = thumbnail.astype(np.float32)
    out[tint] = (1 - alpha) * out[tint] + alpha * colors[tint]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def write_overlay_png(path: str | Path, image: np.ndarray) -> Path:
    """Save an RGB uint8 image as PNG."""
    Image.fromarray(image).save(path, format="PNG", optimize=False)
    return Path(path)

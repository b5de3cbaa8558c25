"""Preview image of a slide's tile grid: tiles coloured by label over the thumbnail."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathda.tiling.plan import SlidePlan

UNLABELLED_GREY = np.array([128, 128, 128], np.uint8)
_FILL_OPACITY = 0.45
_OUTLINE_OPACITY = 0.9
_MAX_PREVIEW_PX = 2048


def render_preview(
    thumbnail: np.ndarray, downsample: float, plan: SlidePlan, class_colours: np.ndarray
) -> np.ndarray:
    """(h, w, 3) uint8 thumbnail with each planned tile tinted by its class colour.

    Unlabelled tiles get a grey outline instead of a fill, so they stay distinct from
    classes drawn in grey (BACH "normal").

    Args:
        thumbnail: (h, w, 3) uint8 RGB of the whole slide.
        downsample: level-0 pixels per thumbnail pixel.
        plan: the slide's tiles (level-0 positions and labels).
        class_colours: (n_classes, 3) uint8.
    """
    image = thumbnail
    scale = max(1, int(np.ceil(max(image.shape[:2]) / _MAX_PREVIEW_PX)))
    if scale > 1:
        image = image[::scale, ::scale]
        downsample *= scale
    h, w = image.shape[:2]
    tint = np.zeros((h, w, 3), np.float32)
    opacity = np.zeros((h, w, 1), np.float32)
    palette = np.vstack([class_colours, UNLABELLED_GREY[None]]).astype(np.float32)
    size = plan.grid.footprint / downsample
    # A visible gap between neighbouring tiles only when tiles are a few pixels wide.
    inset = 1 if size >= 4 and plan.grid.stride >= plan.grid.patch_size else 0
    line = max(1, round(size / 16))
    for x, y, label in zip(plan.x / downsample, plan.y / downsample, plan.labels, strict=True):
        c0, r0 = int(x) + inset, int(y) + inset
        c1, r1 = max(c0 + 1, int(x + size) - inset), max(r0 + 1, int(y + size) - inset)
        if label >= 0:
            tint[r0:r1, c0:c1] = palette[label]
            opacity[r0:r1, c0:c1] = _FILL_OPACITY
            continue
        tint[r0:r1, c0:c1] = palette[-1]
        opacity[r0:r1, c0:c1] = _OUTLINE_OPACITY
        if r1 - r0 > 2 * line and c1 - c0 > 2 * line:
            opacity[r0 + line : r1 - line, c0 + line : c1 - line] = 0
    out = (1 - opacity) * image.astype(np.float32) + opacity * tint
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)

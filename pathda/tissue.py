"""Tissue detection on a low-resolution thumbnail (pure: arrays in, mask out).

Two measures separate stained tissue from bright glass: HSV saturation
("otsu-saturation", robust to grey dust and shadows) and mean optical density
("otsu-od", better for pale, weakly stained tissue). The Otsu threshold of the measure
is clamped to a range because Otsu splits *any* histogram in two: on a slide that is
nearly all tissue it would cut pale stroma off from nuclei, and on blank glass it would
cut noise in two. Then small gaps are closed, holes filled and specks removed, with
sizes in µm so the result does not depend on the thumbnail's resolution.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
from skimage import morphology
from skimage.filters import threshold_otsu

from pathda.errors import ConfigError

TissueMethod = Literal["otsu-saturation", "otsu-od"]

# Allowed threshold range per method: (lowest, highest).
_THRESHOLD_BOUNDS: dict[str, tuple[float, float]] = {
    "otsu-saturation": (0.05, 0.10),  # glass < 0.05; H&E tissue mostly > 0.1
    "otsu-od": (0.08, 0.18),  # mean OD: glass (~230 grey) ~0.1; tissue mostly > 0.2
}


@dataclasses.dataclass(frozen=True)
class TissueParams:
    """Settings of ``detect_tissue``.

    Attributes:
        method: "otsu-saturation" or "otsu-od".
        mpp: µm/px of the thumbnail the mask is computed on (coarser is faster; small
            slides use a finer thumbnail so it has at least ~512 px on its long side).
        threshold_bounds: (low, high) clamp of the Otsu threshold; None = method default.
        closing_um: radius of the morphological closing that bridges small gaps, µm.
        min_object_um2: tissue pieces smaller than this are dropped, µm².
        max_hole_um2: holes smaller than this are filled, µm².
    """

    method: TissueMethod = "otsu-saturation"
    mpp: float = 8.0
    threshold_bounds: tuple[float, float] | None = None
    closing_um: float = 16.0
    min_object_um2: float = 20_000.0
    max_hole_um2: float = 20_000.0

    def __post_init__(self) -> None:
        if self.method not in _THRESHOLD_BOUNDS:
            raise ConfigError(
                f"unknown `tissue.method` {self.method!r}; choose {', '.join(_THRESHOLD_BOUNDS)}"
            )
        if not self.mpp > 0:
            raise ConfigError(f"`tissue.mpp` must be > 0 µm/px, got {self.mpp}")


def tissue_measure(rgb: np.ndarray, method: TissueMethod) -> np.ndarray:
    """(h, w) float measure that is high on tissue (saturation 0..1 or mean OD)."""
    if method == "otsu-saturation":
        # HSV saturation (max - min) / max, in float32: rgb2hsv's float64 copies of a
        # large thumbnail would cost several times the thumbnail's memory.
        high = rgb.max(axis=-1)
        spread = (high - rgb.min(axis=-1)).astype(np.float32)
        return np.divide(spread, high, out=spread, where=high > 0)
    od = -np.log((rgb.astype(np.float32) + 1.0) / 256.0)
    return od.mean(axis=-1)


def detect_tissue(
    thumbnail_rgb: np.ndarray, params: TissueParams = TissueParams(), mpp: float | None = None
) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail.

    Args:
        thumbnail_rgb: (h, w, 3) uint8 RGB.
        params: detection settings.
        mpp: µm/px of the thumbnail (for the µm sizes); defaults to ``params.mpp``.

    Returns:
        (h, w) bool, True on tissue. All False for blank glass.
    """
    if thumbnail_rgb.ndim != 3 or thumbnail_rgb.shape[-1] != 3 or thumbnail_rgb.size == 0:
        raise ValueError(f"expected a non-empty (h, w, 3) RGB image, got {thumbnail_rgb.shape}")
    um_per_px = float(mpp if mpp is not None else params.mpp)
    measure = tissue_measure(thumbnail_rgb, params.method)
    low, high = params.threshold_bounds or _THRESHOLD_BOUNDS[params.method]
    threshold = low
    if float(measure.max()) > float(measure.min()):
        threshold = float(np.clip(threshold_otsu(measure), low, high))
    mask = measure > threshold
    if not mask.any():
        return mask
    radius = round(params.closing_um / um_per_px)
    if radius >= 1:
        # Pad so closing does not erode tissue touching the image border.
        padded = np.pad(mask, radius, mode="edge")
        mask = morphology.closing(padded, morphology.disk(radius))[radius:-radius, radius:-radius]
    px_area = um_per_px * um_per_px
    hole_px = math.floor(params.max_hole_um2 / px_area)
    if hole_px >= 1:
        mask = morphology.remove_small_holes(mask, max_size=hole_px)
    object_px = math.ceil(params.min_object_um2 / px_area)
    if object_px > 1:
        mask = morphology.remove_small_objects(mask, max_size=object_px - 1)
    return mask

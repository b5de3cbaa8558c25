"""An in-memory slide built from a numpy array, plus the pixel helpers backends share.

``ArraySlide`` makes reader, tiler and segmentation tests tiny: no file, exact
pixels, any pyramid you ask for.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pathda._types import IntPair
from pathda.slide.base import Slide

WHITE = 255


def composite_over_white(rgba: np.ndarray, premultiplied: bool = False) -> np.ndarray:
    """Flatten (h, w, 4) uint8 RGBA onto a white background; returns (h, w, 3) uint8.

    Args:
        rgba: RGBA pixels; alpha 0 means "no tissue scanned here" (outside the slide).
        premultiplied: True when colour is already multiplied by alpha (TIFF associated
            alpha, OpenSlide's C API); False for straight alpha (openslide-python, PNG).
    """
    alpha = rgba[..., 3:4]
    if alpha.min() == WHITE:  # fully opaque: the usual case inside a slide, skip the maths
        return np.ascontiguousarray(rgba[..., :3])
    rgb = rgba[..., :3].astype(np.uint16)
    background = (WHITE - alpha).astype(np.uint16)
    # Premultiplied: rgb + white*(1-a); straight alpha: rgb*a + white*(1-a), rounded.
    if premultiplied:
        return np.minimum(rgb + background, WHITE).astype(np.uint8)
    out = (rgb * alpha + WHITE * background + 127) // WHITE
    return np.minimum(out, WHITE).astype(np.uint8)


def as_rgb(pixels: np.ndarray, premultiplied: bool = False) -> np.ndarray:
    """Turn (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) uint8 pixels into (h, w, 3) RGB."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    channels = pixels.shape[-1]
    if channels == 1:
        return np.repeat(pixels, 3, axis=-1)
    if channels == 3:
        return pixels
    if channels == 4:
        return composite_over_white(pixels, premultiplied=premultiplied)
    raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")


def crop_padded(image: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """Crop ``width`` x ``height`` pixels at (x, y) of an (H, W, 3) image; outside is white.

    Pure: ``x``/``y`` may be negative and the box may extend past the image.
    """
    out = np.full((height, width, 3), WHITE, dtype=np.uint8)
    img_h, img_w = image.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, img_w), min(y + height, img_h)
    if x1 > x0 and y1 > y0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = image[y0:y1, x0:x1]
    return out


class ArraySlide(Slide):
    """A slide held in memory, with a pyramid made by area-averaging.

    Level ``i`` is level 0 reduced by the integer factor ``downsamples[i]``
    (box filter); its size is ``ceil(W / f) x ceil(H / f)`` pixels.

    Args:
        array: (H, W, 3) RGB or (H, W, 4) RGBA (straight alpha, composited over
            white) uint8 level-0 pixels.
        mpp: level-0 µm/px, or None for "unknown".
        downsamples: integer level factors, starting at 1 and strictly increasing.
        name: a label used as ``path`` in messages and ``repr``.

    Examples:
        >>> slide = ArraySlide(np.zeros((64, 96, 3), np.uint8), mpp=0.5, downsamples=(1, 4))
        >>> slide.level_dimensions
        ((96, 64), (24, 16))
    """

    def __init__(
        self,
        array: np.ndarray,
        mpp: float | None = None,
        downsamples: Sequence[int] = (1,),
        name: str = "array",
    ) -> None:
        array = np.asarray(array)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"expected (H, W, 3|4) uint8, got {array.shape} {array.dtype}")
        factors = [int(f) for f in downsamples]
        if not factors or factors[0] != 1 or any(b <= a for a, b in itertools.pairwise(factors)):
            raise ValueError(f"downsamples must start at 1 and increase, got {tuple(downsamples)}")
        base = as_rgb(array)
        self._levels = [base] + [np.asarray(Image.fromarray(base).reduce(f)) for f in factors[1:]]
        self.path = Path(name)
        self.backend = "array"
        self.format = "array"
        self.vendor = None
        self.properties = {}
        self.level_dimensions = tuple((lvl.shape[1], lvl.shape[0]) for lvl in self._levels)
        # The exact factors, not size ratios: ceil-rounded sizes would skew them.
        self.level_downsamples = tuple(float(f) for f in factors)
        self._mpp = None
        if mpp is not None:
            self.set_mpp(mpp)

    def _read_level(self, location: IntPair, level: int, size: IntPair) -> np.ndarray:
        downsample = self.level_downsamples[level]
        # Nearest level pixel, as in the tifffile backend.
        x = math.floor(location[0] / downsample + 0.5)
        y = math.floor(location[1] / downsample + 0.5)
        return crop_padded(self._levels[level], x, y, size[0], size[1])

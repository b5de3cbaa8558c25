"""Geometry of the scoring grid: its size and nearest-neighbour lookups onto it (pure functions).

The grid at downsample D has pixel (row r, col c) covering level-0 pixels
``[c*D, (c+1)*D) x [r*D, (r+1)*D)``; a source image is sampled at each grid
pixel's centre.
"""

from __future__ import annotations

import math
import re

import numpy as np

from pathda._types import IntPair
from pathda.errors import ScoreInputError

ASPECT_TOLERANCE = 0.01
"""Largest relative difference of width/height ratios for two images to show one slide."""

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×,]\s*(\d+)\s*$")


def parse_size(text: str) -> IntPair:
    """Parse ``"WxH"`` (e.g. ``"40000x30000"``) into (width, height) in pixels.

    Raises:
        ScoreInputError: not two positive integers separated by ``x``.
    """
    match = _SIZE.match(text)
    if not match or min(int(match[1]), int(match[2])) <= 0:
        raise ScoreInputError(f"size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 40000x30000")
    return int(match[1]), int(match[2])


def grid_shape(level0_size: IntPair, downsample: float) -> tuple[int, int]:
    """(rows, cols) of the grid covering a level-0 image of (width, height) at ``downsample``.

    Partial pixels at the right and bottom edges count, so the grid covers every level-0 pixel.
    """
    width, height = level0_size
    return max(1, math.ceil(height / downsample)), max(1, math.ceil(width / downsample))


def nearest_indices(n_out: int, step: float, n_in: int) -> np.ndarray:
    """Source indices sampled at the centres of ``n_out`` output pixels.

    Args:
        n_out: output pixels along one axis.
        step: source pixels per output pixel (> 1 shrinks, < 1 enlarges).
        n_in: source pixels along that axis; indices are clipped into ``[0, n_in)``
            so a source a rounding pixel short still covers the grid.

    Returns:
        int64 array of length ``n_out``, non-decreasing.
    """
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * step
    return np.clip(np.floor(centres).astype(np.int64), 0, n_in - 1)


def aspect_difference(size_a: IntPair, size_b: IntPair) -> float:
    """Relative difference of the width/height ratios of two (width, height) sizes."""
    ratio_a = size_a[0] / size_a[1]
    ratio_b = size_b[0] / size_b[1]
    return abs(ratio_a / ratio_b - 1.0)


def size_matches(actual: IntPair, expected: tuple[float, float], tolerance: float) -> bool:
    """True if each side of ``actual`` is within ``max(1 px, tolerance * expected)`` of it."""
    return all(abs(a - e) <= max(1.0, tolerance * e) for a, e in zip(actual, expected, strict=True))

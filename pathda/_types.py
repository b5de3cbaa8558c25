"""Shared type aliases. Coordinates are (x, y) and sizes (width, height) unless named otherwise."""

from __future__ import annotations

from typing import Literal

IntPair = tuple[int, int]
"""(x, y) or (width, height) in pixels; the docstring using it says at which level."""

FloatPair = tuple[float, float]
"""(x, y) pair of floats, e.g. microns per pixel."""

Bounds = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in level-0 pixels, half-open."""

Units = Literal["level", "mpp", "downsample"]
